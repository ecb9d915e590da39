package csi

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	csiapi "github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kvinject/kvinject/internal/testkit"
	"github.com/kvinject/kvinject/pkg/contract"
	"github.com/kvinject/kvinject/pkg/csi"
	"github.com/kvinject/kvinject/test/emulator"
)

// TestHandWrittenVolumeTooLarge: a hand-written inline volume listing 10,000 objects (one
// 25,000-byte secret under 10,000 aliases: the attack that OOM-killed the plugin) is
// refused with InvalidArgument before any token or Key Vault request, 300 times over,
// and the csi-node binary's memory does not grow with it: decoding the first
// half-megabyte requests takes the Go heap's headroom once (about 6 MiB, logged), and
// the next 250 keep nothing (RSS moves by under 4 MiB).
func TestHandWrittenVolumeTooLarge(t *testing.T) {
	testkit.RequireRoot(t)
	w := startWorld(t)
	if _, err := w.emu.SetSecret(vault, "big", strings.Repeat("x", 25000), emulator.SecretOptions{}); err != nil {
		t.Fatal(err)
	}
	bin := testkit.Binary(t, "./cmd/csi-node")
	root := t.TempDir()
	socket := filepath.Join(root, "csi.sock")
	var logs lockedBuffer
	cmd := runBinary(t, bin, socket, &logs, w.env(), "--kubelet-root", root, "--endpoint", socket, "--node-id", "node-1", "--register=false",
		"--metrics-bind-address", "0", "--health-probe-bind-address", "0", "--nmi-endpoint", "http://"+w.emu.NMIAddr())
	node := nodeClient(t, socket)
	var objs []contract.Object
	for i := range 10000 {
		objs = append(objs, contract.Object{Name: "big", Alias: fmt.Sprintf("copy-%05d", i)})
	}
	w.emu.ResetCounters()
	before, _, _, _ := procMemory(t, cmd.Process.Pid)
	var warm float64
	for i := range 300 {
		if i == 50 {
			warm, _, _, _ = procMemory(t, cmd.Process.Pid)
		}
		req := volume{objects: objs, podUID: fmt.Sprintf("attack-%02d", i)}.request(t, root)
		_, err := node.NodePublishVolume(t.Context(), req)
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "at most 65600 are allowed for 64 objects") ||
			!strings.Contains(err.Error(), "--max-objects-per-volume") {
			t.Fatalf("publish %d: %v", i, err)
		}
		if _, err := os.Lstat(req.TargetPath); !os.IsNotExist(err) {
			t.Fatal("a refused volume created its target")
		}
	}
	after, _, _, _ := procMemory(t, cmd.Process.Pid)
	reads, challenges := w.kvRequests()
	if reads+challenges != 0 || w.emu.NMIRequests("default", podName) != 0 {
		t.Fatalf("the refusal cost %d Key Vault and %d NMI requests", reads+challenges, w.emu.NMIRequests("default", podName))
	}
	t.Logf("VmRSS %.1f MiB before, %.1f MiB after 50 volumes of 10,000 objects, %.1f MiB after 300", before, warm, after)
	// A refusal that kept its request (about 600 KB decoded) would add 150 MiB over
	// 250 refusals, and one that kept 16 KB 4 MiB. Below that is the heap's own
	// breathing between collections (0.5 MiB flaked at 1.0 MiB on a busy CI machine).
	if after-warm > 4 {
		t.Fatalf("VmRSS grew by %.1f MiB over the last 250 refusals: something per refusal is kept", after-warm)
	}
}

// TestVolumeOverItsTmpfs: 200 secrets of 25,000 bytes on a 4 MiB tmpfs are refused with
// the sizes named and the flag to change, nothing is written, and the fetch stops at the
// first object that does not fit.
func TestVolumeOverItsTmpfs(t *testing.T) {
	testkit.RequireRoot(t)
	w := startWorld(t)
	a := w.addApps(t, 1, 200, 25000)[0]
	root := t.TempDir()
	p := newPlugin(t, w, root, csi.PluginOptions{}, func(o *csi.Options) { o.MaxObjectsPerVolume = 200 })
	w.emu.ResetCounters()
	req := w.volumeOf(t, a, 0).request(t, root)
	_, err := p.NodePublishVolume(t.Context(), req)
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("publish: %v", err)
	}
	// 25,000 bytes take 7 pages; the budget of a 4 MiB tmpfs is 2 MiB less 64 KiB.
	for _, want := range []string{"the files take at least 20", "bytes in 4096-byte pages, more than the volume's 2031616",
		"half of its tmpfs (--tmpfs-size, 4194304 bytes)", "Raise --tmpfs-size (the chart's csi.tmpfsSize) or mount fewer objects"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	if _, err := os.Lstat(req.TargetPath); !os.IsNotExist(err) {
		t.Fatalf("the refused volume left its target: %v", err)
	}
	if reads, _ := w.kvRequests(); reads >= 200 {
		t.Fatalf("%d reads: the fetch did not stop at the first object that did not fit", reads)
	}
}

// TestLargeVolumeRotates: a 1.9 MiB volume on a 4 MiB tmpfs rotates 100 times with no
// ENOSPC, and after every rotation no file anywhere under the target holds an older
// value.
func TestLargeVolumeRotates(t *testing.T) {
	testkit.RequireRoot(t)
	w := startWorld(t)
	// 81 secrets of 24,576 bytes (6 pages each): 1,990,656 bytes, 1.9 MiB.
	const n, size = 81, 24576
	a := w.addApps(t, 1, n, size)[0]
	set := func(gen int) {
		for j, o := range a.objects {
			v := fmt.Sprintf("gen-%03d-obj-%02d-", gen, j)
			if _, err := w.emu.SetSecret(a.vault, o.Name, v+strings.Repeat("x", size-len(v)), emulator.SecretOptions{}); err != nil {
				t.Fatal(err)
			}
		}
	}
	set(0)
	root := t.TempDir()
	p := newPlugin(t, w, root, csi.PluginOptions{}, func(o *csi.Options) { o.MaxObjectsPerVolume = 100 })
	req := w.volumeOf(t, a, 0).request(t, root)
	if _, err := p.NodePublishVolume(t.Context(), req); err != nil {
		t.Fatal(err)
	}
	unpublishAtEnd(t, p, req)
	for gen := 1; gen <= 100; gen++ {
		set(gen)
		p.advance()
		if _, err := p.NodePublishVolume(t.Context(), req); err != nil {
			t.Fatalf("rotation %d: %v", gen, err)
		}
		want := fmt.Sprintf("gen-%03d-", gen)
		files := 0
		err := filepath.WalkDir(req.TargetPath, func(path string, d os.DirEntry, err error) error {
			if err != nil || !d.Type().IsRegular() {
				return err
			}
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			if !strings.HasPrefix(string(b), want) {
				return fmt.Errorf("%s holds %.8q after rotation %d", path, b, gen)
			}
			files++
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if files != n {
			t.Fatalf("rotation %d: %d files under the target, want %d", gen, files, n)
		}
	}
}

// TestCredentialsAndClientsReused: twenty volumes of two workload identities cost one
// token and one challenge per identity, however many volumes and rotation rounds; after
// the first round no TLS connection is opened, and each round reads each object once.
func TestCredentialsAndClientsReused(t *testing.T) {
	testkit.RequireRoot(t)
	w := startWorld(t)
	apps := w.addApps(t, 2, 3, 0)
	root := t.TempDir()
	p := newPlugin(t, w, root, csi.PluginOptions{})
	var reqs []*csiapi.NodePublishVolumeRequest
	for i := range 20 {
		reqs = append(reqs, w.volumeOf(t, apps[i%2], i).request(t, root))
	}
	w.emu.ResetCounters()
	w.emu.ResetConnections()
	if err := publishAll(t, p, reqs, 10); err != nil {
		t.Fatal(err)
	}
	for _, r := range reqs {
		unpublishAtEnd(t, p, r)
	}
	if got := w.tokenRequests(apps); got != 2 {
		t.Fatalf("%d token requests for 2 identities", got)
	}
	if _, challenges := w.kvRequests(); challenges != 2 {
		t.Fatalf("%d challenges for 2 (vault, identity) clients", challenges)
	}
	first := w.emu.Connections().TLSHandshakes
	tokens := w.tokenRequests(apps)
	for round := 1; round <= 3; round++ {
		w.emu.ResetCounters()
		p.advance()
		if err := publishAll(t, p, reqs, 10); err != nil {
			t.Fatal(err)
		}
		reads, challenges := w.kvRequests()
		if reads != 6 || challenges != 0 {
			t.Fatalf("round %d: %d reads and %d challenges; want each of the 6 objects read once", round, reads, challenges)
		}
	}
	if got := w.tokenRequests(apps) - tokens; got != 0 {
		t.Fatalf("%d token requests in the rounds, want none before expiry", got)
	}
	if got := w.emu.Connections().TLSHandshakes; got != first {
		t.Fatalf("%d new TLS connections after the first publish (%d then)", got-first, first)
	}
}

// TestIdentitiesNeverShare: identities A and B ask for the same object, in A's vault,
// at the same moment, twenty volumes each, in two rounds. Only A may read it: every one
// of B's volumes is refused by Key Vault for B's own token, and none ever receives A's
// content.
func TestIdentitiesNeverShare(t *testing.T) {
	testkit.RequireRoot(t)
	w := startWorld(t)
	apps := w.addApps(t, 2, 1, 0)
	a, b := apps[0], apps[1] // b may read its own vault only, and asks for a's secret in a's
	b.vault, b.objects = a.vault, a.objects
	root := t.TempDir()
	p := newPlugin(t, w, root, csi.PluginOptions{})
	type result struct {
		who string
		err error
		req *csiapi.NodePublishVolumeRequest
	}
	for round := range 2 {
		results := make(chan result, 40)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range 20 {
			for _, x := range []app{a, b} {
				req := w.volumeOf(t, x, round*100+i).request(t, root)
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-start
					_, err := p.NodePublishVolume(context.Background(), req)
					results <- result{x.name, err, req}
				}()
			}
		}
		close(start)
		wg.Wait()
		close(results)
		for r := range results {
			switch r.who {
			case a.name:
				if r.err != nil {
					t.Fatalf("A: %v", r.err)
				}
				unpublishAtEnd(t, p, r.req)
			case b.name:
				if status.Code(r.err) != codes.PermissionDenied || !strings.Contains(r.err.Error(), "ForbiddenByPolicy") {
					t.Fatalf("B got %v, want Key Vault's 403 for B's own token", r.err)
				}
				if _, err := os.Lstat(r.req.TargetPath); !os.IsNotExist(err) {
					t.Fatal("a volume of B was published")
				}
			}
		}
		p.advance()
	}
	if got := w.emu.Requests(emulator.Key{Vault: vault, Object: a.objects[0].Name, Caller: b.clientID}); got < 1 {
		t.Fatalf("B's reads reached Key Vault %d times with B's token", got)
	}
}

// TestThrottleStorm: a vault answers 429 with Retry-After 30 s. The node sends at most
// one request per window to it, however many volumes republish; the volumes keep their
// files; after the storm every volume converges to the latest version.
func TestThrottleStorm(t *testing.T) {
	testkit.RequireRoot(t)
	w := startWorld(t)
	apps := w.addApps(t, 2, 2, 0)
	root := t.TempDir()
	p := newPlugin(t, w, root, csi.PluginOptions{})
	var reqs []*csiapi.NodePublishVolumeRequest
	for i := range 20 {
		reqs = append(reqs, w.volumeOf(t, apps[i%2], i).request(t, root))
	}
	if err := publishAll(t, p, reqs, 10); err != nil {
		t.Fatal(err)
	}
	for _, r := range reqs {
		unpublishAtEnd(t, p, r)
	}
	stormy := apps[0].vault
	w.emu.SetFault(emulator.FaultTarget{Vault: stormy}, emulator.Fault{Status: 429, RetryAfter: 30 * time.Second})
	// The storm begins: the requests already in flight when the first 429 comes back
	// are answered 429 too; from then on the vault is held.
	p.advance()
	if err := publishAll(t, p, reqs, 10); err != nil {
		t.Fatal(err)
	}
	w.emu.ResetCounters()
	const windows = 5
	for range windows {
		p.advance()   // past the interval and the 30 s window
		for range 3 { // the kubelet republishes several times a window
			if err := publishAll(t, p, reqs, 10); err != nil {
				t.Fatalf("republish during the storm: %v (the volumes keep their files)", err)
			}
		}
		for _, r := range reqs {
			if got := readVolume(t, r.TargetPath); len(got) != 2 {
				t.Fatalf("%s lost files during the storm: %v", r.TargetPath, got)
			}
		}
	}
	sent := 0
	for k, n := range w.emu.Counters() {
		if k.Vault == stormy {
			sent += n
		}
	}
	if sent != windows {
		t.Fatalf("%d requests reached the throttled vault in %d windows, want one per window", sent, windows)
	}
	w.emu.ClearFaults()
	for _, a := range apps {
		if _, err := w.emu.SetSecret(a.vault, a.objects[0].Name, "after-the-storm", emulator.SecretOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	// Within two intervals: the first one's probe resets the vault while the volumes
	// refreshing alongside it keep their files; the second one reads.
	for range 2 {
		p.advance()
		if err := publishAll(t, p, reqs, 10); err != nil {
			t.Fatal(err)
		}
	}
	for i, r := range reqs {
		if got := readVolume(t, r.TargetPath)[apps[i%2].objects[0].Name]; got != "after-the-storm" {
			t.Fatalf("%s did not converge: %q", r.TargetPath, got)
		}
	}
}
