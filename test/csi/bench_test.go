package csi

import (
	"github.com/kvinject/kvinject/internal/testkit"
	"github.com/kvinject/kvinject/pkg/contract"

	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	csiapi "github.com/container-storage-interface/spec/lib/go/csi"

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

// TestResidentMemory100Volumes runs the csi-node binary, publishes 100 volumes of the
// tutorial's two secrets through its socket (pod identity via the emulator), and
// reports its resident memory (VmRSS, split into anonymous and file-backed, and
// VmHWM). It fails above the 25 MiB target (measured: about 23 MiB, 7.5 anonymous and
// 15.5 the binary's own code and read-only data).
func TestResidentMemory100Volumes(t *testing.T) {
	testkit.RequireRoot(t)
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	w := startWorld(t)
	bin := testkit.Binary(t, "./cmd/csi-node")
	root := t.TempDir()
	socket := filepath.Join(root, "csi.sock")
	var logs lockedBuffer
	metricsAddr := testkit.FreeAddr(t)
	cmd := runBinary(t, bin, socket, &logs, w.env(), "--kubelet-root", root, "--endpoint", socket, "--node-id", "node-1", "--register=false",
		"--metrics-bind-address", metricsAddr, "--health-probe-bind-address", "0", "--nmi-endpoint", "http://"+w.emu.NMIAddr())
	node := nodeClient(t, socket)
	objs := []contract.Object{{Name: "DatabaseLogin", Alias: "DATABASE_LOGIN"}, {Name: "DatabasePassword", Alias: "DATABASE_PASSWORD"}}
	var reqs []*csiapi.NodePublishVolumeRequest
	for i := 0; i < 100; i++ {
		req := volume{objects: objs, podUID: fmt.Sprintf("mem-%03d", i)}.request(t, root)
		if _, err := node.NodePublishVolume(t.Context(), req); err != nil {
			t.Fatalf("publish %d: %v", i, err)
		}
		reqs = append(reqs, req)
	}
	// Republish all once (a rotation round) before measuring.
	for _, req := range reqs {
		if _, err := node.NodePublishVolume(t.Context(), req); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(500 * time.Millisecond)
	rss, hwm, anon, file := procMemory(t, cmd.Process.Pid)
	t.Logf("csi-node holding %d volumes: VmRSS %.1f MiB (anonymous %.1f, file-backed %.1f), VmHWM %.1f MiB", len(reqs), rss, anon, file, hwm)
	if resp, err := http.Get("http://" + metricsAddr + "/metrics"); err == nil {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "go_memstats_heap_inuse_bytes") || strings.HasPrefix(l, "go_memstats_heap_sys_bytes") || strings.HasPrefix(l, "go_memstats_heap_released_bytes") || strings.HasPrefix(l, "go_memstats_stack_inuse_bytes") || strings.HasPrefix(l, "go_goroutines") {
				t.Log(l)
			}
		}
	}
	for _, req := range reqs {
		if _, err := node.NodeUnpublishVolume(t.Context(), &csiapi.NodeUnpublishVolumeRequest{VolumeId: req.VolumeId, TargetPath: req.TargetPath}); err != nil {
			t.Fatal(err)
		}
	}
	if rss > maxRSSMiB {
		t.Errorf("VmRSS %.1f MiB, want at most %d MiB", rss, maxRSSMiB)
	}
}

// maxRSSMiB is the regression guard of TestResidentMemory100Volumes.
const maxRSSMiB = 25

// procMemory returns VmRSS, VmHWM, RssAnon and RssFile of pid in MiB.
func procMemory(t *testing.T, pid int) (rss, hwm, anon, file float64) {
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
