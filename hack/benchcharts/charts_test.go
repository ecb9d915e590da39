package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCharts draws the three charts from benchmark output recorded by make charts
// (testdata/) and checks each SVG carries its title, its series and its figures.
func TestCharts(t *testing.T) {
	out := t.TempDir()
	if err := run("testdata/publish.txt", "testdata/rotation.txt", "testdata/load.txt", out); err != nil {
		t.Fatal(err)
	}
	for file, want := range map[string][]string{
		"mount-latency.svg":   {"First mount of a volume", "kvinject (measured)", "Azure provider (n+4 requests in sequence)", "objects in the volume"},
		"rotation-calls.svg":  {"Azure requests per rotation interval", "kvinject", "Azure provider", ">1400<"},
		"webhook-reviews.svg": {"admission reviews per second", "concurrent clients"},
	} {
		b, err := os.ReadFile(filepath.Join(out, file))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(string(b), "<?xml") || !strings.Contains(string(b), "<svg") {
			t.Errorf("%s is not an SVG", file)
		}
		for _, w := range want {
			if !strings.Contains(string(b), w) {
				t.Errorf("%s lacks %q", file, w)
			}
		}
	}
}

// TestChartsRefuseEmptyInput: output without the expected benchmarks is an error that
// names what is missing, not an empty chart.
func TestChartsRefuseEmptyInput(t *testing.T) {
	empty := filepath.Join(t.TempDir(), "empty.txt")
	if err := os.WriteFile(empty, []byte("goos: linux\nPASS\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		publish, rotation, load, want string
	}{
		{empty, "testdata/rotation.txt", "testdata/load.txt", "no benchmark results"},
		{"testdata/rotation.txt", "testdata/rotation.txt", "testdata/load.txt", "BenchmarkPublishByObjects/objects=N"},
		{"testdata/publish.txt", "testdata/publish.txt", "testdata/load.txt", "no BenchmarkRotationRound/http1 result"},
		{"testdata/publish.txt", "testdata/rotation.txt", empty, "no rows under the load tool's header"},
	} {
		err := run(tc.publish, tc.rotation, tc.load, t.TempDir())
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("run(%s, %s, %s) = %v, want an error saying %q", tc.publish, tc.rotation, tc.load, err, tc.want)
		}
	}
}
