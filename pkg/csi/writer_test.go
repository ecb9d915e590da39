package csi

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// listVolume returns the visible files of dir (name -> content), read through their links.
func listVolume(t *testing.T, dir string) map[string]string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, e := range entries {
		if e.Name()[0] == '.' {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatalf("read %s: %v", e.Name(), err)
		}
		out[e.Name()] = string(b)
	}
	return out
}

// snapshotTree records every path under root with its type and content, to prove that
// nothing outside a volume changed.
func snapshotTree(t *testing.T, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		switch {
		case fi.Mode()&os.ModeSymlink != 0:
			l, _ := os.Readlink(p)
			out[p] = "link:" + l
		case fi.IsDir():
			out[p] = "dir"
		default:
			b, _ := os.ReadFile(p)
			out[p] = "file:" + string(b) + ":" + fi.Mode().String()
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestWriterWrite(t *testing.T) {
	t.Parallel()
	clock := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	w := Writer{Now: func() time.Time { return clock }}
	dir := t.TempDir()
	files := []Payload{{Name: "DATABASE_LOGIN", Data: []byte("MyDBLoginName"), Mode: 0o644}, {Name: "DATABASE_PASSWORD", Data: []byte("MyP@ssword123456"), Mode: 0o400}}
	res, err := w.Write(dir, files, WriteOptions{GID: testGID})
	if err != nil || strings.Join(res.Changed, ",") != "DATABASE_LOGIN,DATABASE_PASSWORD" {
		t.Fatalf("first write: changed=%v err=%v", res.Changed, err)
	}
	want := map[string]string{"DATABASE_LOGIN": "MyDBLoginName", "DATABASE_PASSWORD": "MyP@ssword123456"}
	if got := listVolume(t, dir); !equalMaps(got, want) {
		t.Fatalf("files = %v, want %v", got, want)
	}
	for _, f := range files {
		link, err := os.Readlink(filepath.Join(dir, f.Name))
		if err != nil || link != "..data/"+f.Name {
			t.Errorf("%s: link %q, %v; want ..data/%s", f.Name, link, err, f.Name)
		}
		fi, err := os.Stat(filepath.Join(dir, f.Name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != f.Mode {
			t.Errorf("%s: mode %v, want %v", f.Name, fi.Mode().Perm(), f.Mode)
		}
		if gid := statGID(t, filepath.Join(dir, f.Name)); gid != testGID {
			t.Errorf("%s: gid %d, want %d", f.Name, gid, testGID)
		}
	}
	gen, _ := os.Readlink(filepath.Join(dir, DataLink))
	if !isGeneration(gen) {
		t.Fatalf("..data -> %q is not a data directory", gen)
	}

	// Same content again: nothing is written, the data directory stays.
	res, err = w.Write(dir, files, WriteOptions{GID: testGID})
	if err != nil || len(res.Changed) != 0 {
		t.Fatalf("unchanged write: changed=%v err=%v", res.Changed, err)
	}
	if gen2, _ := os.Readlink(filepath.Join(dir, DataLink)); gen2 != gen {
		t.Fatalf("unchanged write swapped ..data: %q -> %q", gen, gen2)
	}

	// New content and one file fewer: swapped, stale link and the old data directory
	// removed at once (no rotated-out value stays readable).
	res, err = w.Write(dir, []Payload{{Name: "DATABASE_LOGIN", Data: []byte("new"), Mode: 0o644}}, WriteOptions{GID: -1})
	if err != nil || strings.Join(res.Changed, ",") != "DATABASE_LOGIN,DATABASE_PASSWORD" {
		t.Fatalf("update: changed=%v err=%v", res.Changed, err)
	}
	if got := listVolume(t, dir); !equalMaps(got, map[string]string{"DATABASE_LOGIN": "new"}) {
		t.Fatalf("after update files = %v", got)
	}
	if _, err := os.Lstat(filepath.Join(dir, gen)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("replaced data directory %s still exists: %v", gen, err)
	}
	if n := countGenerations(t, dir); n != 1 {
		t.Fatalf("%d data directories, want only the current one", n)
	}
	// What a write killed half-way leaves (a data directory ..data does not point to, a
	// ..data_tmp link) goes with the next write, even an unchanged one.
	if err := os.Mkdir(filepath.Join(dir, "..2026_01_02_03_04_05.half"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "..2026_01_02_03_04_05.half", "DATABASE_LOGIN"), []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("..2026_01_02_03_04_05.half", filepath.Join(dir, dataLinkTmp)); err != nil {
		t.Fatal(err)
	}
	if res, err := w.Write(dir, []Payload{{Name: "DATABASE_LOGIN", Data: []byte("new"), Mode: 0o644}}, WriteOptions{GID: -1}); err != nil || len(res.Changed) != 0 {
		t.Fatalf("unchanged write: %v %v", res.Changed, err)
	}
	if n := countGenerations(t, dir); n != 1 {
		t.Fatalf("%d data directories after an unchanged write, want 1", n)
	}
	if _, err := os.Lstat(filepath.Join(dir, dataLinkTmp)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("%s left behind: %v", dataLinkTmp, err)
	}
}

func countGenerations(t *testing.T, dir string) int {
	t.Helper()
	entries, _ := os.ReadDir(dir)
	n := 0
	for _, e := range entries {
		if isGeneration(e.Name()) {
			n++
		}
	}
	return n
}

func equalMaps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if bv, ok := b[k]; !ok || bv != v {
			return false
		}
	}
	return true
}

func TestValidateFileNameAttacks(t *testing.T) {
	t.Parallel()
	for _, name := range []string{
		"", ".", "..", "...", "....", "../x", "/etc/x", "a/../../b", `..\x`, `a\b`, "..data", "..data_tmp",
		"..2026_01_01_00_00_00.1", ".hidden", "x/y", "x\x00y", string(bytes.Repeat([]byte("a"), 256)),
	} {
		if err := ValidateFileName(name); !errors.Is(err, ErrUnsafePath) {
			t.Errorf("ValidateFileName(%q) = %v, want ErrUnsafePath", name, err)
		}
	}
	for _, name := range []string{"a", "DATABASE_LOGIN", "tls.crt", "a..b", "x-y_z.1"} {
		if err := ValidateFileName(name); err != nil {
			t.Errorf("ValidateFileName(%q) = %v, want nil", name, err)
		}
	}
}

// TestWriterContainsAttacks writes attack names into a volume inside a sandbox and
// proves that nothing outside the volume changed.
func TestWriterContainsAttacks(t *testing.T) {
	t.Parallel()
	attacks := []string{"../x", "/etc/x", "a/../../b", `..\..\x`, `a\b`, "..data", ".", "..", "...", "..data_tmp", "../../../../../../tmp/pwned"}
	for _, name := range attacks {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			sandbox := t.TempDir()
			vol := filepath.Join(sandbox, "vol")
			if err := os.Mkdir(vol, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(sandbox, "x"), []byte("outside"), 0o644); err != nil {
				t.Fatal(err)
			}
			before := snapshotTree(t, sandbox)
			_, err := Writer{}.Write(vol, []Payload{{Name: "ok", Data: []byte("v"), Mode: 0o644}, {Name: name, Data: []byte("evil"), Mode: 0o644}}, WriteOptions{GID: -1})
			if !errors.Is(err, ErrUnsafePath) {
				t.Fatalf("Write(%q) = %v, want ErrUnsafePath", name, err)
			}
			if after := snapshotTree(t, sandbox); !equalMaps(before, after) {
				t.Fatalf("the sandbox changed:\nbefore %v\nafter  %v", before, after)
			}
		})
	}
}

// TestWriterPlantedSymlinks plants links in the volume before a write: they are replaced
// (visible names, ..data) or refused, and their targets outside are never written.
func TestWriterPlantedSymlinks(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		plant   func(t *testing.T, vol, outside string)
		wantErr bool
	}{
		{"visible name links outside", func(t *testing.T, vol, outside string) {
			mustSymlink(t, filepath.Join(outside, "target"), filepath.Join(vol, "secret"))
		}, false},
		{"..data links to an outside directory", func(t *testing.T, vol, outside string) {
			mustSymlink(t, outside, filepath.Join(vol, DataLink))
		}, false},
		{"..data links to a relative escape", func(t *testing.T, vol, outside string) {
			mustSymlink(t, "../outside", filepath.Join(vol, DataLink))
		}, false},
		{"..data_tmp links outside", func(t *testing.T, vol, outside string) {
			mustSymlink(t, outside, filepath.Join(vol, dataLinkTmp))
		}, false},
		{"generation-named link outside", func(t *testing.T, vol, outside string) {
			mustSymlink(t, outside, filepath.Join(vol, "..2020_01_01_00_00_00.1"))
		}, false},
		{"visible name is a directory", func(t *testing.T, vol, outside string) {
			if err := os.MkdirAll(filepath.Join(vol, "secret", "sub"), 0o755); err != nil {
				t.Fatal(err)
			}
		}, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			sandbox := t.TempDir()
			vol := filepath.Join(sandbox, "vol")
			outside := filepath.Join(sandbox, "outside")
			for _, d := range []string{vol, outside} {
				if err := os.Mkdir(d, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			if err := os.WriteFile(filepath.Join(outside, "target"), []byte("untouched"), 0o644); err != nil {
				t.Fatal(err)
			}
			tc.plant(t, vol, outside)
			before := snapshotTree(t, outside)
			_, err := Writer{}.Write(vol, []Payload{{Name: "secret", Data: []byte("value"), Mode: 0o644}}, WriteOptions{GID: -1})
			if tc.wantErr != (err != nil) {
				t.Fatalf("Write = %v, wantErr %v", err, tc.wantErr)
			}
			if after := snapshotTree(t, outside); !equalMaps(before, after) {
				t.Fatalf("outside changed:\nbefore %v\nafter  %v", before, after)
			}
			if !tc.wantErr {
				if got := listVolume(t, vol); got["secret"] != "value" {
					t.Fatalf("secret = %q, want value", got["secret"])
				}
			}
		})
	}
}

func mustSymlink(t *testing.T, target, link string) {
	t.Helper()
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
}

func TestWriterRefusesSymlinkDir(t *testing.T) {
	t.Parallel()
	sandbox := t.TempDir()
	real := filepath.Join(sandbox, "real")
	if err := os.Mkdir(real, 0o755); err != nil {
		t.Fatal(err)
	}
	mustSymlink(t, real, filepath.Join(sandbox, "vol"))
	_, err := Writer{}.Write(filepath.Join(sandbox, "vol"), []Payload{{Name: "a", Data: []byte("b"), Mode: 0o644}}, WriteOptions{GID: -1})
	if !errors.Is(err, ErrUnsafePath) {
		t.Fatalf("Write into a symlinked directory = %v, want ErrUnsafePath", err)
	}
	if entries, _ := os.ReadDir(real); len(entries) != 0 {
		t.Fatalf("the link's target was written: %v", entries)
	}
}

func TestWriterComplete(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if (Writer{}).Complete(dir, []string{"a"}) {
		t.Fatal("empty directory is complete")
	}
	if _, err := (Writer{}).Write(dir, []Payload{{Name: "a", Data: []byte("1"), Mode: 0o644}}, WriteOptions{GID: -1}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		names []string
		want  bool
	}{{[]string{"a"}, true}, {nil, true}, {[]string{"a", "b"}, false}} {
		if got := (Writer{}).Complete(dir, tc.names); got != tc.want {
			t.Errorf("Complete(%v) = %v, want %v", tc.names, got, tc.want)
		}
	}
}

// TestWriterConcurrentReader swaps 200 generations of a three-file set while readers
// read it: through a resolved ..data (read within the grace), all three files always
// come from one generation; through the visible names, no file is ever missing; and
// after each write only the current generation is left.
func TestWriterConcurrentReader(t *testing.T) {
	dir := t.TempDir()
	// DefaultGrace, as in production: a reader that resolved ..data may be descheduled
	// that long (20 ms flaked under -race on two busy cores).
	w := Writer{Grace: DefaultGrace}
	names := []string{"a", "b", "c"}
	gen := func(i int) []Payload {
		var out []Payload
		for _, n := range names {
			out = append(out, Payload{Name: n, Data: []byte(n + "-" + strconv.Itoa(i)), Mode: 0o644})
		}
		return out
	}
	if _, err := w.Write(dir, gen(0), WriteOptions{GID: -1}); err != nil {
		t.Fatal(err)
	}
	var stop atomic.Bool
	var reads atomic.Int64
	var wg sync.WaitGroup
	errc := make(chan error, 4)
	for r := 0; r < 2; r++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				if err := readConsistent(dir, names); err != nil {
					errc <- err
					return
				}
				reads.Add(1)
			}
		}()
	}
	for i := 1; i <= 50; i++ {
		if _, err := w.Write(dir, gen(i), WriteOptions{GID: -1}); err != nil {
			t.Fatal(err)
		}
		if n := countGenerations(t, dir); n != 1 {
			t.Fatalf("after write %d: %d data directories", i, n)
		}
	}
	stop.Store(true)
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}
	if reads.Load() == 0 {
		t.Fatal("the readers read nothing")
	}
	if got := listVolume(t, dir); got["a"] != "a-50" {
		t.Fatalf("final a = %q", got["a"])
	}
}

// readConsistent reads names once through a resolved ..data (all from one generation)
// and once through the visible links (none missing).
func readConsistent(dir string, names []string) error {
	gen, err := os.Readlink(filepath.Join(dir, DataLink))
	if err != nil {
		return err
	}
	var suffixes []string
	for _, n := range names {
		b, err := os.ReadFile(filepath.Join(dir, gen, n))
		if err != nil {
			return errors.New("missing file in generation: " + err.Error())
		}
		suffixes = append(suffixes, string(b[len(n):]))
	}
	sort.Strings(suffixes)
	if suffixes[0] != suffixes[len(suffixes)-1] {
		return errors.New("mixed generations: " + suffixes[0] + " and " + suffixes[len(suffixes)-1])
	}
	for _, n := range names {
		if _, err := os.ReadFile(filepath.Join(dir, n)); err != nil {
			return errors.New("missing visible file: " + err.Error())
		}
	}
	return nil
}

func TestIsGeneration(t *testing.T) {
	t.Parallel()
	w := Writer{Now: func() time.Time { return time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC) }}
	dir := t.TempDir()
	if _, err := w.Write(dir, []Payload{{Name: "a", Data: []byte("1"), Mode: 0o644}}, WriteOptions{GID: -1}); err != nil {
		t.Fatal(err)
	}
	gen, _ := os.Readlink(filepath.Join(dir, DataLink))
	if len(gen) < 22 || gen[:22] != "..2026_01_02_03_04_05." {
		t.Fatalf("generation %q does not carry the clock's time", gen)
	}
	for name, want := range map[string]bool{gen: true, "..data": false, "..2026_01_02_03_04_05": false, "..2026_13_02_03_04_05.1": false, "x": false} {
		if got := isGeneration(name); got != want {
			t.Errorf("isGeneration(%q) = %v, want %v", name, got, want)
		}
	}
}
