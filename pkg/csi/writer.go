package csi

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Reserved names inside a volume. Every name starting with ".." belongs to the writer.
const (
	// DataLink is the symlink to the current data directory; visible files link through it.
	DataLink = "..data"
	// dataLinkTmp is the new DataLink before the rename that swaps it in.
	dataLinkTmp = "..data_tmp"
	// linkTmp is a visible link before the rename that puts it in place.
	linkTmp = "..link_tmp"
	// genPrefix starts every data directory name: ..2006_01_02_15_04_05.<random>.
	genPrefix = ".."
	genLayout = "2006_01_02_15_04_05"
)

// ErrUnsafePath is wrapped by every refusal of a file name or directory that could lead
// a write outside the volume.
var ErrUnsafePath = errors.New("unsafe path")

// Payload is one file to write: name inside the volume, content and permission bits.
type Payload struct {
	Name string
	Data []byte
	Mode os.FileMode
}

// Writer writes a set of files into a volume directory atomically, in the layout of the
// Secrets Store CSI driver: every visible name is a symlink "NAME -> ..data/NAME",
// "..data" is a symlink to a timestamped data directory, and an update writes a new
// data directory and swaps "..data" with one rename. A reader that resolves "..data"
// once sees one complete set; a reader of visible names never finds one missing.
//
// Writer never follows a symlink it did not create, never writes a name outside the
// directory, and never removes anything but its own links and data directories.
// A Writer is stateless; callers serialize writes to one directory.
type Writer struct {
	// Now stamps data directories (nil = time.Now).
	Now func() time.Time
	// Retain is how long a replaced data directory is kept, so that a reader that
	// resolved ..data just before a swap can finish reading it (0 = DefaultRetain).
	Retain time.Duration
}

// DefaultRetain is how long a replaced data directory stays readable after a swap.
const DefaultRetain = 5 * time.Second

func (w Writer) now() time.Time {
	if w.Now != nil {
		return w.Now()
	}
	return time.Now()
}

// WriteOptions are the per-volume settings of a write.
type WriteOptions struct {
	// GID, when >= 0, is the group of the data directory and every file (the pod's fsGroup).
	GID int
}

// ValidateFileName checks a name the writer would create in a volume: one path
// element, not empty, no "/" or "\", no NUL, not starting with '.' (which rules out
// ".", "..", "..data" and every reserved name), at most 255 bytes.
func ValidateFileName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("%w: empty file name", ErrUnsafePath)
	case len(name) > 255:
		return fmt.Errorf("%w: file name longer than 255 bytes", ErrUnsafePath)
	case strings.ContainsAny(name, "/\\\x00"):
		return fmt.Errorf("%w: file name %q holds a path separator", ErrUnsafePath, name)
	case name[0] == '.':
		return fmt.Errorf("%w: file name %q starts with '.', which is reserved", ErrUnsafePath, name)
	}
	return nil
}

// Write makes dir show exactly files. It returns changed=false, and writes nothing,
// when the current data already has the same names, contents, modes and group. On
// error before the swap the previous set stays as it was and the new data directory is
// removed; dir is never left torn or empty by a failed write.
func (w Writer) Write(dir string, files []Payload, opts WriteOptions) (changed bool, err error) {
	names := make(map[string]bool, len(files))
	for _, f := range files {
		if err := ValidateFileName(f.Name); err != nil {
			return false, err
		}
		if names[f.Name] {
			return false, fmt.Errorf("%w: file name %q appears twice", ErrUnsafePath, f.Name)
		}
		names[f.Name] = true
	}
	if err := checkRealDir(dir); err != nil {
		return false, err
	}
	curGen, cur := readGeneration(dir)
	if cur != nil && sameContent(cur, files, opts.GID) {
		return false, w.linkAll(dir, files)
	}

	genDir, err := os.MkdirTemp(dir, genPrefix+w.now().UTC().Format(genLayout)+".")
	if err != nil {
		return false, fmt.Errorf("create data directory: %w", err)
	}
	gen := filepath.Base(genDir)
	swapped := false
	defer func() {
		if err != nil && !swapped {
			_ = os.RemoveAll(genDir)
		}
	}()
	if err := os.Chmod(genDir, 0o755); err != nil {
		return false, fmt.Errorf("chmod data directory: %w", err)
	}
	if opts.GID >= 0 {
		if err := os.Lchown(genDir, -1, opts.GID); err != nil {
			return false, fmt.Errorf("chown data directory: %w", err)
		}
	}
	for _, f := range files {
		if err := writeFile(filepath.Join(genDir, f.Name), f.Data, f.Mode, opts.GID); err != nil {
			return false, fmt.Errorf("write %q: %w", f.Name, err)
		}
	}

	// Swap: one rename replaces the ..data link (rename never follows the link it replaces).
	tmp := filepath.Join(dir, dataLinkTmp)
	if err := os.Remove(tmp); err != nil && !errors.Is(err, os.ErrNotExist) {
		return false, fmt.Errorf("remove stale %s: %w", dataLinkTmp, err)
	}
	if err := os.Symlink(gen, tmp); err != nil {
		return false, fmt.Errorf("create %s: %w", dataLinkTmp, err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, DataLink)); err != nil {
		_ = os.Remove(tmp)
		return false, fmt.Errorf("swap %s: %w", DataLink, err)
	}
	swapped = true

	if err := w.linkAll(dir, files); err != nil {
		return true, err
	}
	if curGen != "" {
		// Mark when the old set stopped being current; it is removed Retain later.
		now := w.now()
		_ = os.Chtimes(filepath.Join(dir, curGen), now, now)
	}
	if err := w.removeStale(dir, names, gen); err != nil {
		return true, err
	}
	return true, nil
}

// checkRealDir refuses a dir that is not a directory or is a symlink.
func checkRealDir(dir string) error {
	fi, err := os.Lstat(dir)
	if err != nil {
		return fmt.Errorf("volume directory: %w", err)
	}
	if fi.Mode()&os.ModeSymlink != 0 || !fi.IsDir() {
		return fmt.Errorf("%w: %s is not a plain directory", ErrUnsafePath, dir)
	}
	return nil
}

func writeFile(path string, data []byte, mode os.FileMode, gid int) (err error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, mode.Perm())
	if err != nil {
		return err
	}
	defer func() {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}()
	if _, err := f.Write(data); err != nil {
		return err
	}
	if err := f.Chmod(mode.Perm()); err != nil { // not subject to the umask
		return err
	}
	if gid >= 0 {
		if err := f.Chown(-1, gid); err != nil {
			return err
		}
	}
	return nil
}

// isGeneration reports whether name is one of the writer's data directory names.
func isGeneration(name string) bool {
	if !strings.HasPrefix(name, genPrefix) || len(name) < len(genPrefix)+len(genLayout)+2 {
		return false
	}
	if _, err := time.Parse(genLayout, name[len(genPrefix):len(genPrefix)+len(genLayout)]); err != nil {
		return false
	}
	return name[len(genPrefix)+len(genLayout)] == '.' && !strings.ContainsAny(name, "/\\")
}

// fileState is a file of the current data directory.
type fileState struct {
	data []byte
	mode os.FileMode
	gid  int
}

// readGeneration returns the data directory ..data points to and its files, or "" and
// nil when there is no valid current set (no link, a link that is not one of the
// writer's directories, or an unreadable entry).
func readGeneration(dir string) (string, map[string]fileState) {
	gen, err := os.Readlink(filepath.Join(dir, DataLink))
	if err != nil || !isGeneration(gen) {
		return "", nil
	}
	genDir := filepath.Join(dir, gen)
	if checkRealDir(genDir) != nil {
		return "", nil
	}
	entries, err := os.ReadDir(genDir)
	if err != nil {
		return "", nil
	}
	out := make(map[string]fileState, len(entries))
	for _, e := range entries {
		if ValidateFileName(e.Name()) != nil || !e.Type().IsRegular() {
			return "", nil
		}
		data, st, err := readNoFollow(filepath.Join(genDir, e.Name()))
		if err != nil {
			return "", nil
		}
		out[e.Name()] = fileState{data: data, mode: os.FileMode(st.Mode).Perm(), gid: int(st.Gid)}
	}
	return gen, out
}

func readNoFollow(path string) ([]byte, unix.Stat_t, error) {
	var st unix.Stat_t
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return nil, st, err
	}
	defer f.Close()
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return nil, st, err
	}
	data, err := io.ReadAll(f)
	return data, st, err
}

func sameContent(cur map[string]fileState, files []Payload, gid int) bool {
	if len(cur) != len(files) {
		return false
	}
	for _, f := range files {
		c, ok := cur[f.Name]
		if !ok || c.mode != f.Mode.Perm() || !bytes.Equal(c.data, f.Data) || gid >= 0 && c.gid != gid {
			return false
		}
	}
	return true
}

// linkAll makes every visible name a symlink to ..data/NAME, replacing anything that is
// not a directory by one rename.
func (w Writer) linkAll(dir string, files []Payload) error {
	for _, f := range files {
		path := filepath.Join(dir, f.Name)
		want := filepath.Join(DataLink, f.Name)
		if got, err := os.Readlink(path); err == nil && got == want {
			continue
		}
		tmp := filepath.Join(dir, linkTmp)
		if err := os.Remove(tmp); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("remove stale %s: %w", linkTmp, err)
		}
		if err := os.Symlink(want, tmp); err != nil {
			return fmt.Errorf("link %q: %w", f.Name, err)
		}
		if err := os.Rename(tmp, path); err != nil {
			_ = os.Remove(tmp)
			return fmt.Errorf("%w: cannot replace %q with a link (%w)", ErrUnsafePath, f.Name, err)
		}
	}
	return nil
}

// removeStale removes visible links that are no longer in names, and data directories
// other than keep (the current one) that were replaced more than Retain ago (a reader
// that resolved ..data before a swap may still be reading the old one).
func (w Writer) removeStale(dir string, names map[string]bool, keep string) error {
	retain := w.Retain
	if retain <= 0 {
		retain = DefaultRetain
	}
	cutoff := w.now().Add(-retain)
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("list volume: %w", err)
	}
	var errs []error
	for _, e := range entries {
		name := e.Name()
		path := filepath.Join(dir, name)
		switch {
		case isGeneration(name):
			if name == keep || !e.IsDir() {
				continue
			}
			if fi, err := e.Info(); err != nil || fi.ModTime().After(cutoff) {
				continue
			}
			if err := os.RemoveAll(path); err != nil {
				errs = append(errs, err)
			}
		case name[0] != '.' && !names[name] && e.Type()&os.ModeSymlink != 0:
			if target, err := os.Readlink(path); err == nil && target == filepath.Join(DataLink, name) {
				if err := os.Remove(path); err != nil {
					errs = append(errs, err)
				}
			}
		}
	}
	return errors.Join(errs...)
}

// Complete reports whether dir holds a valid current set with every name in names,
// each visible through its link: the condition for keeping old files when a refresh
// fails.
func (w Writer) Complete(dir string, names []string) bool {
	if checkRealDir(dir) != nil {
		return false
	}
	_, cur := readGeneration(dir)
	if cur == nil {
		return false
	}
	for _, n := range names {
		if _, ok := cur[n]; !ok {
			return false
		}
		if got, err := os.Readlink(filepath.Join(dir, n)); err != nil || got != filepath.Join(DataLink, n) {
			return false
		}
	}
	return true
}
