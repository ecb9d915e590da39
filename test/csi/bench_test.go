package csi

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	csiapi "github.com/container-storage-interface/spec/lib/go/csi"

	"github.com/kvinject/kvinject/internal/testkit"
	"github.com/kvinject/kvinject/pkg/contract"
	"github.com/kvinject/kvinject/pkg/csi"
	"github.com/kvinject/kvinject/test/emulator"
)

// BenchmarkPublish50Secrets publishes a volume of 50 secrets while the emulator adds
// 20 ms to every authenticated Key Vault request, with the default concurrency bound
// and sequentially (bound 1) for comparison. It reports wall time per publish.
func BenchmarkPublish50Secrets(b *testing.B) {
	testkit.RequireRoot(b)
	w := startWorld(b)
	var objs []contract.Object
	for i := 0; i < 50; i++ {
		name := fmt.Sprintf("bench-%02d", i)
		if _, err := w.emu.SetSecret(vault, name, "value-"+name, emulator.SecretOptions{}); err != nil {
			b.Fatal(err)
		}
		objs = append(objs, contract.Object{Name: name})
	}
	w.emu.SetFault(emulator.FaultTarget{Vault: vault}, emulator.Fault{Latency: 20 * time.Millisecond})
	for _, bc := range []struct {
		name        string
		concurrency int
	}{{"bound-default", csi.DefaultMaxConcurrentFetches}, {"sequential", 1}} {
		b.Run(bc.name, func(b *testing.B) {
			root := b.TempDir()
			p := newPlugin(b, w, root, csi.PluginOptions{}, func(c *csi.Options) { c.MaxConcurrentFetches = bc.concurrency })
			var reqs []*csiapi.NodePublishVolumeRequest
			i := 0
			start := time.Now()
			for b.Loop() {
				req := volume{objects: objs, podUID: "bench-" + strconv.Itoa(i)}.request(b, root)
				i++
				if _, err := p.NodePublishVolume(b.Context(), req); err != nil {
					b.Fatal(err)
				}
				reqs = append(reqs, req)
			}
			b.ReportMetric(float64(time.Since(start).Microseconds())/1000/float64(i), "ms/publish")
			b.StopTimer()
			for _, req := range reqs {
				if got := readVolume(b, req.TargetPath); len(got) != 50 || got["bench-07"] != "value-bench-07" {
					b.Fatalf("published %d files", len(got))
				}
				if _, err := p.NodeUnpublishVolume(b.Context(), &csiapi.NodeUnpublishVolumeRequest{VolumeId: req.VolumeId, TargetPath: req.TargetPath}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// procMemory returns VmRSS, VmHWM, RssAnon and RssFile of pid in MiB.
func procMemory(t testing.TB, pid int) (rss, hwm, anon, file float64) {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		kb, _ := strconv.ParseFloat(f[1], 64)
		switch f[0] {
		case "VmRSS:":
			rss = kb / 1024
		case "VmHWM:":
			hwm = kb / 1024
		case "RssAnon:":
			anon = kb / 1024
		case "RssFile:":
			file = kb / 1024
		}
	}
	return rss, hwm, anon, file
}
