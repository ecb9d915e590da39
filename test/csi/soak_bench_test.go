package csi

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	csiapi "github.com/container-storage-interface/spec/lib/go/csi"

	"github.com/kvinject/kvinject/internal/testkit"
	"github.com/kvinject/kvinject/test/emulator"
)

// soakDuration is how long BenchmarkSoak runs its faults (KVINJECT_SOAK_DURATION, a Go
// duration; 5 minutes by default).
func soakDuration(b *testing.B) time.Duration {
	if v := os.Getenv("KVINJECT_SOAK_DURATION"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			b.Fatal(err)
		}
		return d
	}
	return 5 * time.Minute
}

// soakValue is what a secret holds in the soak: its name, its generation, and a
// filler whose length the generation fixes, so that a torn or mixed file is seen.
func soakValue(name string, gen int) string {
	head := fmt.Sprintf("%s|gen-%06d|", name, gen)
	return head + strings.Repeat(strconv.Itoa(gen%10), 200+gen%50)
}

// parseSoakValue returns the generation of a whole value of name, or an error.
func parseSoakValue(name, v string) (int, error) {
	parts := strings.SplitN(v, "|", 3)
	if len(parts) != 3 || parts[0] != name || !strings.HasPrefix(parts[1], "gen-") {
		return 0, fmt.Errorf("not a value of %s: %.40q", name, v)
	}
	gen, err := strconv.Atoi(strings.TrimPrefix(parts[1], "gen-"))
	if err != nil || v != soakValue(name, gen) {
		return 0, fmt.Errorf("torn value of %s: %.40q (%d bytes)", name, v, len(v))
	}
	return gen, nil
}

// BenchmarkSoak is make soak (item 8 of the node-scale issue): the csi-node binary with
// 100 volumes (5 workload identities, 2 vaults, 4 objects each) and a 1 s rotation
// interval, republished as the kubelet does, for KVINJECT_SOAK_DURATION, while the
// emulator answers 5% of Key Vault requests 429, 2% 500 and resets 1%, and a secret
// changes every 10 s; readers read every volume the whole time. Then the faults stop.
// It fails if a reader ever sees a torn or missing file, if a volume has not converged
// to the latest versions within 2 intervals, or if goroutines and file descriptors do
// not return to their baseline after unpublish; it reports the figures.
func BenchmarkSoak(b *testing.B) {
	testkit.RequireRoot(b)
	const interval = time.Second
	duration := soakDuration(b)
	w := startWorld(b)
	apps := w.addApps(b, 5, 4, 0)
	latest := map[string]int{} // object -> generation
	var latestMu sync.Mutex
	setGen := func(a app, name string, gen int) {
		if _, err := w.emu.SetSecret(a.vault, name, soakValue(name, gen), emulator.SecretOptions{}); err != nil {
			b.Fatal(err)
		}
		latestMu.Lock()
		latest[name] = gen
		latestMu.Unlock()
	}
	for _, a := range apps {
		for _, o := range a.objects {
			setGen(a, o.Name, 0)
		}
	}
	bin := testkit.Binary(b, "./cmd/csi-node")
	root := b.TempDir()
	socket := filepath.Join(root, "csi.sock")
	metricsAddr := testkit.FreeAddr(b)
	var logs lockedBuffer
	cmd := runBinary(b, bin, socket, &logs, w.env(), "--kubelet-root", root, "--endpoint", socket, "--node-id", "node-1", "--register=false",
		"--metrics-bind-address", metricsAddr, "--health-probe-bind-address", "0", "--nmi-endpoint", "http://"+w.emu.NMIAddr(),
		"--rotation-poll-interval", interval.String())
	node := nodeClient(b, socket)
	pid := cmd.Process.Pid
	// The baseline: the plugin serving, with the kubelet's connection (the first call
	// opens it) and the metrics scraper's.
	if _, err := node.NodeGetInfo(b.Context(), &csiapi.NodeGetInfoRequest{}); err != nil {
		b.Fatal(err)
	}
	baseGoroutines, baseFDs := goroutines(b, metricsAddr), fds(b, pid)

	type vol struct {
		app app
		req *csiapi.NodePublishVolumeRequest
	}
	var vols []vol
	for i := range 100 {
		a := apps[i%5]
		req := w.volumeOf(b, a, i).request(b, root)
		if _, err := node.NodePublishVolume(b.Context(), req); err != nil {
			b.Fatal(err)
		}
		vols = append(vols, vol{a, req})
	}
	for b.Loop() {
		w.emu.ResetCounters()
		w.emu.SetFault(emulator.FaultTarget{}, emulator.Fault{Chaos: &emulator.Chaos{Throttle: 0.05, ServerError: 0.02, Reset: 0.01}, RetryAfterMsHeader: 500 * time.Millisecond})
		ctx, stop := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		var publishes, publishErrors, reads atomic.Int64
		var readErr atomic.Value
		// The kubelet: every volume republished every 300-500 ms.
		for _, v := range vols {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for ctx.Err() == nil {
					time.Sleep(300*time.Millisecond + rand.N(200*time.Millisecond))
					publishes.Add(1)
					if _, err := node.NodePublishVolume(context.Background(), v.req); err != nil {
						publishErrors.Add(1) // a republish keeps the files; nothing fails here
					}
				}
			}()
		}
		// Readers: every file of random volumes, through the visible names.
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for ctx.Err() == nil {
					v := vols[rand.N(len(vols))]
					for _, o := range v.app.objects {
						b, err := os.ReadFile(filepath.Join(v.req.TargetPath, o.Name))
						if err == nil {
							_, err = parseSoakValue(o.Name, string(b))
						}
						reads.Add(1)
						if err != nil {
							readErr.CompareAndSwap(nil, err.Error())
						}
					}
				}
			}()
		}
		// A secret changes every 10 s.
		gen := 0
		changes := time.NewTicker(10 * time.Second)
		end := time.After(duration)
	soak:
		for {
			select {
			case <-changes.C:
				gen++
				a := apps[gen%len(apps)]
				setGen(a, a.objects[gen%len(a.objects)].Name, gen)
			case <-end:
				break soak
			}
		}
		changes.Stop()
		// The faults stop: every volume must show the latest versions within 2
		// intervals (the kubelet keeps republishing).
		w.emu.ClearFaults()
		stoppedAt := time.Now()
		var converged time.Duration
		err := testkit.Poll(context.Background(), 50*time.Millisecond, 30*time.Second, "every volume at the latest versions", func(context.Context) error {
			latestMu.Lock()
			defer latestMu.Unlock()
			for _, v := range vols {
				for _, o := range v.app.objects {
					b, err := os.ReadFile(filepath.Join(v.req.TargetPath, o.Name))
					if err != nil {
						return err
					}
					if g, err := parseSoakValue(o.Name, string(b)); err != nil || g != latest[o.Name] {
						return fmt.Errorf("%s: %s at gen %d, want %d (%v)", v.req.TargetPath, o.Name, g, latest[o.Name], err)
					}
				}
			}
			return nil
		})
		converged = time.Since(stoppedAt)
		stop()
		wg.Wait()
		b.ReportMetric(converged.Seconds(), "s-to-converge")
		b.ReportMetric(float64(publishes.Load())/duration.Seconds(), "publishes/s")
		b.ReportMetric(float64(reads.Load()), "file-reads")
		reads2, challenges := w.kvRequests()
		b.ReportMetric(float64(reads2+challenges)/duration.Seconds()*interval.Seconds(), "kv-requests/interval")
		b.Logf("%d republishes (%d answered with an error), %d secret changes, %d reads of files", publishes.Load(), publishErrors.Load(), gen, reads.Load())
		b.Logf("converged %.2fs after the faults stopped (%.1f intervals)", converged.Seconds(), converged.Seconds()/interval.Seconds())
		if err != nil {
			b.Fatal(err)
		}
		if e := readErr.Load(); e != nil {
			b.Fatalf("a reader saw a torn or missing file: %v", e)
		}
		if converged > 2*interval {
			b.Errorf("converged after %v, want within 2 intervals (%v)", converged, 2*interval)
		}
	}
	b.StopTimer()
	b.Log(soakMetrics(b, metricsAddr))
	for _, v := range vols {
		if _, err := node.NodeUnpublishVolume(b.Context(), &csiapi.NodeUnpublishVolumeRequest{VolumeId: v.req.VolumeId, TargetPath: v.req.TargetPath}); err != nil {
			b.Fatal(err)
		}
	}
	// Goroutines and descriptors come back once the idle connections time out.
	err := testkit.Poll(context.Background(), time.Second, 3*time.Minute, "goroutines and file descriptors back to their baseline", func(context.Context) error {
		g, f := goroutines(b, metricsAddr), fds(b, pid)
		if g > baseGoroutines || f > baseFDs {
			return fmt.Errorf("goroutines %d (baseline %d), descriptors %d (baseline %d)", g, baseGoroutines, f, baseFDs)
		}
		return nil
	})
	b.Logf("baseline: %d goroutines, %d descriptors; after unpublish: %d, %d", baseGoroutines, baseFDs, goroutines(b, metricsAddr), fds(b, pid))
	if err != nil {
		b.Fatal(err)
	}
	rss, hwm, _, _ := procMemory(b, pid)
	b.ReportMetric(hwm, "MiB-VmHWM")
	b.ReportMetric(rss, "MiB-VmRSS-end")
}

func goroutines(b *testing.B, metricsAddr string) int {
	b.Helper()
	for _, l := range strings.Split(metricsText(b, metricsAddr), "\n") {
		if v, ok := strings.CutPrefix(l, "go_goroutines "); ok {
			n, _ := strconv.ParseFloat(v, 64)
			return int(n)
		}
	}
	b.Fatal("no go_goroutines")
	return 0
}

func fds(b *testing.B, pid int) int {
	b.Helper()
	entries, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		b.Fatal(err)
	}
	return len(entries)
}

func metricsText(b *testing.B, addr string) string {
	b.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return string(body)
}

// soakMetrics picks the plugin's own counters of the run.
func soakMetrics(b *testing.B, addr string) string {
	var out []string
	for _, l := range strings.Split(metricsText(b, addr), "\n") {
		if strings.HasPrefix(l, "kvinject_csi_node_publish_total") || strings.HasPrefix(l, "kvinject_keyvault_requests_total") ||
			strings.HasPrefix(l, "kvinject_keyvault_requests_not_sent_total") {
			out = append(out, l)
		}
	}
	return "plugin counters:\n" + strings.Join(out, "\n")
}
