package csi

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	csiapi "github.com/container-storage-interface/spec/lib/go/csi"

	"github.com/kvinject/kvinject/internal/testkit"
	"github.com/kvinject/kvinject/pkg/contract"
	"github.com/kvinject/kvinject/test/emulator"
)

// kubeletRecords writes the vol_data.json the kubelet keeps next to a CSI volume's
// mount directory before it calls NodePublishVolume.
func kubeletRecords(t testing.TB, req *csiapi.NodePublishVolumeRequest) {
	t.Helper()
	dir := filepath.Dir(req.TargetPath)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		t.Fatal(err)
	}
	data := fmt.Sprintf(`{"driverName":%q,"volumeHandle":%q,"volumeLifecycleMode":"Ephemeral"}`, contract.DefaultDriverName, req.VolumeId)
	if err := os.WriteFile(filepath.Join(dir, "vol_data.json"), []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

// checkVolume checks that a target holds exactly one complete set, all of one
// generation (every value carries the same generation marker), and nothing an
// interrupted write leaves; it returns that marker.
func checkVolume(t testing.TB, target string, names []string) string {
	t.Helper()
	entries, err := os.ReadDir(target)
	if err != nil {
		t.Fatal(err)
	}
	gens := 0
	for _, e := range entries {
		switch n := e.Name(); {
		case n == "..data_tmp" || n == "..link_tmp":
			t.Fatalf("%s: %s left behind", target, n)
		case strings.HasPrefix(n, "..") && n != "..data":
			gens++
		}
	}
	if gens != 1 {
		t.Fatalf("%s: %d data directories, want exactly the current one", target, gens)
	}
	files := readVolume(t, target)
	marker := ""
	for _, n := range names {
		v, ok := files[n]
		if !ok {
			t.Fatalf("%s: %s missing (files %v)", target, n, files)
		}
		m, _, _ := strings.Cut(v, ":")
		if marker == "" {
			marker = m
		} else if m != marker {
			t.Fatalf("%s: a mix of two sets: %v", target, files)
		}
	}
	return marker
}

// TestRestartDuringPublishAndRotation kills the csi-node binary with SIGKILL while 20
// volumes are being published, and again while they are being refreshed. After each
// restart (as the DaemonSet restarts it) every volume holds one complete set, old or
// new; nothing a killed write leaves stays behind; the kubelet's retries succeed; and
// an unpublish leaves no tmpfs mounted.
func TestRestartDuringPublishAndRotation(t *testing.T) {
	testkit.RequireRoot(t)
	w := startWorld(t)
	a := w.addApps(t, 1, 2, 0)[0]
	names := []string{a.objects[0].Name, a.objects[1].Name}
	setGen := func(gen string) {
		for _, o := range a.objects {
			if _, err := w.emu.SetSecret(a.vault, o.Name, gen+":"+o.Name, emulator.SecretOptions{}); err != nil {
				t.Fatal(err)
			}
		}
	}
	setGen("old")
	bin := testkit.Binary(t, "./cmd/csi-node")
	root := t.TempDir()
	socket := filepath.Join(root, "csi.sock")
	var logs lockedBuffer
	args := []string{"--kubelet-root", root, "--endpoint", socket, "--node-id", "node-1", "--register=false",
		"--metrics-bind-address", "0", "--health-probe-bind-address", "0", "--nmi-endpoint", "http://" + w.emu.NMIAddr(),
		"--rotation-poll-interval", "1s"}
	var reqs []*csiapi.NodePublishVolumeRequest
	for i := range 20 {
		r := w.volumeOf(t, a, i).request(t, root)
		kubeletRecords(t, r)
		reqs = append(reqs, r)
	}
	// killDuring starts the 20 calls and kills the binary once some have finished and
	// some not.
	killDuring := func(cmd *exec.Cmd, node csiapi.NodeClient) {
		w.emu.SetFault(emulator.FaultTarget{Vault: a.vault}, emulator.Fault{Latency: 30 * time.Millisecond})
		var wg sync.WaitGroup
		var done sync.Map
		for i, r := range reqs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				time.Sleep(time.Duration(i) * 5 * time.Millisecond)
				if _, err := node.NodePublishVolume(context.Background(), r); err == nil {
					done.Store(i, true)
				}
			}()
		}
		time.Sleep(70 * time.Millisecond)
		_ = cmd.Process.Signal(os.Kill)
		wg.Wait()
		_ = cmd.Wait()
		w.emu.ClearFaults()
		n := 0
		done.Range(func(any, any) bool { n++; return true })
		t.Logf("SIGKILL after %d of %d calls had finished", n, len(reqs))
	}

	t.Run("killed during the first publishes", func(t *testing.T) {
		cmd := runBinary(t, bin, socket, &logs, w.env(), args...)
		killDuring(cmd, nodeClient(t, socket))
	})
	cmd := runBinary(t, bin, socket, &logs, w.env(), args...)
	node := nodeClient(t, socket)
	t.Run("the kubelet's retries succeed", func(t *testing.T) {
		for _, r := range reqs {
			if _, err := node.NodePublishVolume(t.Context(), r); err != nil {
				t.Fatalf("retry: %v", err)
			}
			if got := checkVolume(t, r.TargetPath, names); got != "old" {
				t.Fatalf("%s: %q", r.TargetPath, got)
			}
		}
	})

	setGen("new")
	time.Sleep(1200 * time.Millisecond) // every refresh due
	t.Run("killed during a rotation", func(t *testing.T) {
		killDuring(cmd, node)
	})
	cmd = runBinary(t, bin, socket, &logs, w.env(), args...)
	node = nodeClient(t, socket)
	t.Run("after the restart every volume holds one set, old or new", func(t *testing.T) {
		counts := map[string]int{}
		for _, r := range reqs {
			counts[checkVolume(t, r.TargetPath, names)]++
		}
		t.Logf("sets after the restart: %v", counts)
		if counts["old"]+counts["new"] != len(reqs) {
			t.Fatalf("sets %v", counts)
		}
	})
	t.Run("rotation resumes", func(t *testing.T) {
		for _, r := range reqs {
			if _, err := node.NodePublishVolume(t.Context(), r); err != nil {
				t.Fatal(err)
			}
			if got := checkVolume(t, r.TargetPath, names); got != "new" {
				t.Fatalf("%s: %q after the restart's first refresh", r.TargetPath, got)
			}
		}
	})
	t.Run("unpublish leaves nothing mounted", func(t *testing.T) {
		for _, r := range reqs {
			if _, err := node.NodeUnpublishVolume(t.Context(), &csiapi.NodeUnpublishVolumeRequest{VolumeId: r.VolumeId, TargetPath: r.TargetPath}); err != nil {
				t.Fatal(err)
			}
		}
		mounts, err := os.ReadFile("/proc/self/mountinfo")
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(mounts, []byte(root)) {
			t.Fatalf("a tmpfs is still mounted under %s", root)
		}
	})
	if !strings.Contains(logs.String(), "Tidied the volumes of the previous process") {
		t.Logf("no volume needed tidying after the restarts (the kills fell between writes)")
	}
}
