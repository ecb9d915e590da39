package csi

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzWriterNames writes a file under an arbitrary name into a volume inside a sandbox:
// either the writer refuses the name with ErrUnsafePath, or the file appears exactly
// at <volume>/<name> and nothing outside the volume changes. Seeds are in
// testdata/fuzz/FuzzWriterNames.
func FuzzWriterNames(f *testing.F) {
	for _, s := range []string{"DATABASE_LOGIN", "../x", "/etc/x", "a/../../b", `..\x`, "..data", "...", "x\x00y"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		sandbox := t.TempDir()
		vol := filepath.Join(sandbox, "vol")
		if err := os.Mkdir(vol, 0o755); err != nil {
			t.Fatal(err)
		}
		_, err := Writer{}.Write(vol, []Payload{{Name: name, Data: []byte("v"), Mode: 0o644}}, WriteOptions{GID: -1})
		entries, _ := os.ReadDir(sandbox)
		if len(entries) != 1 || entries[0].Name() != "vol" {
			t.Fatalf("name %q wrote outside the volume: %v", name, entries)
		}
		if err != nil {
			if ValidateFileName(name) == nil {
				t.Fatalf("valid name %q refused: %v", name, err)
			}
			return
		}
		b, rerr := os.ReadFile(filepath.Join(vol, name))
		if rerr != nil || string(b) != "v" || filepath.Dir(filepath.Join(vol, name)) != vol {
			t.Fatalf("name %q: read back %q, %v", name, b, rerr)
		}
	})
}
