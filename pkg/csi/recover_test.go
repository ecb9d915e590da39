package csi

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"k8s.io/klog/v2"
)

// TestRecoverVolumes: after a restart, what a killed write left in this driver's
// volumes goes; another driver's volume in the same layout is not touched, nor is a
// volume that is not mounted.
func TestRecoverVolumes(t *testing.T) {
	t.Parallel()
	f := newNodeFixture(t, valuesFetcher(map[string]string{"DatabaseLogin": "MyDBLoginName", "DatabasePassword": "MyP@ssword123456"}))
	f.node.opts.DriverName = "secrets-store.kvinject.io"
	type vol struct {
		driver  string
		mounted bool
		tidied  bool
	}
	vols := map[string]vol{
		"ours":      {"secrets-store.kvinject.io", true, true},
		"theirs":    {"secrets-store.csi.k8s.io", true, false},
		"unmounted": {"secrets-store.kvinject.io", false, false},
	}
	for name, v := range vols {
		target := KubeletTargetPath(f.root, "uid-"+name, name)
		if err := os.MkdirAll(target, 0o750); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(filepath.Dir(target), volDataFile), []byte(`{"driverName":"`+v.driver+`","specVolID":"`+name+`"}`), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := (Writer{}).Write(target, []Payload{{Name: "a", Data: []byte("current"), Mode: 0o644}}, WriteOptions{GID: -1}); err != nil {
			t.Fatal(err)
		}
		// A killed write: a full new data directory not swapped in, and its link.
		stray := filepath.Join(target, "..2026_01_02_03_04_05.killed")
		if err := os.Mkdir(stray, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(stray, "a"), []byte("half-written"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink("..2026_01_02_03_04_05.killed", filepath.Join(target, dataLinkTmp)); err != nil {
			t.Fatal(err)
		}
		if v.mounted {
			f.mounter.mounted[target] = 1 << 20
		}
	}
	if n := f.node.recoverVolumes(klog.Background()); n != 1 {
		t.Fatalf("tidied %d volumes, want 1", n)
	}
	for name, v := range vols {
		target := KubeletTargetPath(f.root, "uid-"+name, name)
		_, err := os.Lstat(filepath.Join(target, "..2026_01_02_03_04_05.killed"))
		if gone := errors.Is(err, os.ErrNotExist); gone != v.tidied {
			t.Errorf("%s: stray data directory gone=%v, want %v", name, gone, v.tidied)
		}
		if got := listVolume(t, target); got["a"] != "current" || len(got) != 1 {
			t.Errorf("%s: files %v", name, got)
		}
	}
}
