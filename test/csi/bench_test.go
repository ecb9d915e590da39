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

// BenchmarkPublishByObjects publishes a first volume of n secrets (n = 1 ... 64, the
// most a volume may list)
// while the emulator adds 20 ms to every authenticated Key Vault request, as a pod's
// first mount does (a new identity each time: no credential, client or object is
// warm). It reports wall time per publish, and the anchor's for the same volume: the
// Secrets Store CSI driver's Azure provider makes its n+4 requests one after another
// (anchorPerVolume; measured side by side at 50 objects: 1,076 ms). make charts plots
// both against n.
func BenchmarkPublishByObjects(b *testing.B) {
	testkit.RequireRoot(b)
	const latency = 20 * time.Millisecond
	w := startWorld(b)
	for i := 0; i < 100; i++ {
		name := fmt.Sprintf("bench-%03d", i)
		if _, err := w.emu.SetSecret(vault, name, "value-"+name, emulator.SecretOptions{}); err != nil {
			b.Fatal(err)
		}
	}
	w.emu.SetFault(emulator.FaultTarget{Vault: vault}, emulator.Fault{Latency: latency})
	for _, n := range []int{1, 10, 25, 50, contract.DefaultMaxObjects} {
		b.Run(fmt.Sprintf("objects=%d", n), func(b *testing.B) {
			var objs []contract.Object
			for i := 0; i < n; i++ {
				objs = append(objs, contract.Object{Name: fmt.Sprintf("bench-%03d", i)})
			}
			i := 0
			var took time.Duration
			for b.Loop() {
				// A new plugin per publish: nothing cached from the one before.
				b.StopTimer()
				root := b.TempDir()
				p := newPlugin(b, w, root, csi.PluginOptions{})
				req := volume{objects: objs, podUID: "bench-" + strconv.Itoa(n) + "-" + strconv.Itoa(i)}.request(b, root)
				i++
				b.StartTimer()
				start := time.Now()
				if _, err := p.NodePublishVolume(b.Context(), req); err != nil {
					b.Fatal(err)
				}
				took += time.Since(start)
				b.StopTimer()
				if got := readVolume(b, req.TargetPath); len(got) != n {
					b.Fatalf("published %d files, want %d", len(got), n)
				}
				if _, err := p.NodeUnpublishVolume(b.Context(), &csiapi.NodeUnpublishVolumeRequest{VolumeId: req.VolumeId, TargetPath: req.TargetPath}); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
			b.ReportMetric(float64(took.Microseconds())/1000/float64(i), "ms/publish")
			b.ReportMetric(float64(anchorPerVolume(n))*float64(latency.Milliseconds()), "anchor-ms/publish")
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
