package csi

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kvinject/kvinject/pkg/keyvault"
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
// Every write, changed or not, removes the data directories ..data no longer points to
// (as the kubelet's atomic writer does), Grace after a swap: no rotated-out value stays
// readable in the volume once Write returns, and a write killed half-way leaves nothing
// behind after the next one. A reader with a file open keeps reading it; an open in
// progress during the swap completes within Grace; a new open resolves the new set.
//
// Writer never follows a symlink it did not create, never writes a name outside the
// directory, and never removes anything but its own links and data directories.
// A Writer is stateless; callers serialize writes to one directory.
type Writer struct {
	// Now stamps data directories (nil = time.Now).
	Now func() time.Time
	// Grace is how long a replaced data directory stays after the swap, for the
	// reads that resolved ..data just before it (0 = DefaultGrace).
	Grace time.Duration
}

// DefaultGrace is how long a replaced data directory outlives the swap. A path lookup
// takes microseconds; the grace is far longer so that a reader on a loaded node never
// sees a name vanish, and short enough that Write still returns at once.
const DefaultGrace = 100 * time.Millisecond

// ErrNoSpace is wrapped by the error of a write that would not fit the volume.
var ErrNoSpace = errors.New("the volume is too small")

// WriteResult says what a write changed.
type WriteResult struct {
	// Changed are the visible names whose content, mode or group changed, or that
	// appeared or went; empty when the write changed nothing.
	Changed []string
}

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

// Write makes dir show exactly files. When the current data already has the same
// names, contents, modes and group it writes nothing (Changed is empty). Before the
// first byte it checks that the new files, counted in pages as a tmpfs counts them, fit
// the room the volume has left next to the current ones (ErrNoSpace). On error before
// the swap the previous set stays as it was and the new data directory is removed; dir
// is never left torn or empty by a failed write.
func (w Writer) Write(dir string, files []Payload, opts WriteOptions) (res WriteResult, err error) {
	names := make(map[string]bool, len(files))
	for _, f := range files {
		if err := ValidateFileName(f.Name); err != nil {
			return res, err
		}
		if names[f.Name] {
			return res, fmt.Errorf("%w: file name %q appears twice", ErrUnsafePath, f.Name)
		}
		names[f.Name] = true
	}
	if err := checkRealDir(dir); err != nil {
		return res, err
	}
	curGen, cur := readGeneration(dir)
	res.Changed = changedNames(cur, files, opts.GID)
	if cur != nil && len(res.Changed) == 0 {
		if err := w.linkAll(dir, files); err != nil {
			return res, err
		}
		return res, w.removeStale(dir, names, curGen)
	}
	if err := checkRoom(dir, files); err != nil {
		return WriteResult{}, err
	}

	genDir, err := os.MkdirTemp(dir, genPrefix+w.now().UTC().Format(genLayout)+".")
	if err != nil {
		return WriteResult{}, fmt.Errorf("create data directory: %w", err)
	}
	gen := filepath.Base(genDir)
	swapped := false
	defer func() {
		if err != nil && !swapped {
			_ = os.RemoveAll(genDir)
		}
	}()
	fail := func(err error) (WriteResult, error) { return WriteResult{}, err }
	if err := os.Chmod(genDir, 0o755); err != nil {
		return fail(fmt.Errorf("chmod data directory: %w", err))
	}
	if opts.GID >= 0 {
		if err := os.Lchown(genDir, -1, opts.GID); err != nil {
			return fail(fmt.Errorf("chown data directory: %w", err))
		}
	}
	for _, f := range files {
		if err := writeFile(filepath.Join(genDir, f.Name), f.Data, f.Mode, opts.GID); err != nil {
			return fail(fmt.Errorf("write %q: %w", f.Name, err))
		}
	}

	// Swap: one rename replaces the ..data link (rename never follows the link it replaces).
	tmp := filepath.Join(dir, dataLinkTmp)
	if err := os.Remove(tmp); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fail(fmt.Errorf("remove stale %s: %w", dataLinkTmp, err))
	}
	if err := os.Symlink(gen, tmp); err != nil {
		return fail(fmt.Errorf("create %s: %w", dataLinkTmp, err))
	}
	if err := os.Rename(tmp, filepath.Join(dir, DataLink)); err != nil {
		_ = os.Remove(tmp)
		return fail(fmt.Errorf("swap %s: %w", DataLink, err))
	}
	swapped = true

	if err := w.linkAll(dir, files); err != nil {
		return res, err
	}
	if curGen != "" {
		grace := w.Grace
		if grace <= 0 {
			grace = DefaultGrace
		}
		time.Sleep(grace)
	}
	return res, w.removeStale(dir, names, gen)
}

// Tidy removes what an interrupted write left in dir (data directories ..data does not
// point to, temporary links) and visible links to names the current set lacks, and
// changes nothing else.
func (w Writer) Tidy(dir string) error {
	if err := checkRealDir(dir); err != nil {
		return err
	}
	cur, _ := os.Readlink(filepath.Join(dir, DataLink))
	if !isGeneration(cur) {
		cur = ""
	}
	names := map[string]bool{}
	if cur != "" {
		entries, err := os.ReadDir(filepath.Join(dir, cur))
		if err != nil {
			return err
		}
		for _, e := range entries {
			names[e.Name()] = true
		}
	}
	return w.removeStale(dir, names, cur)
}

// checkRoom fails with ErrNoSpace unless files fit the room dir's file system has left
// (the current set stays until the swap, so both must fit).
func checkRoom(dir string, files []Payload) error {
	var need int64
	for _, f := range files {
		need += keyvault.Pages(len(f.Data))
	}
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return fmt.Errorf("statfs: %w", err)
	}
	free, size := int64(st.Bavail)*st.Bsize, int64(st.Blocks)*st.Bsize
	if need > free {
		return fmt.Errorf("%w: the new files need %d bytes in %d-byte pages next to the current ones, and the volume has %d of %d bytes free; raise --tmpfs-size (the chart's csi.tmpfsSize)",
			ErrNoSpace, need, keyvault.PageSize, free, size)
	}
	return nil
}

// changedNames lists the names that differ between the current set and files (all of
// them when there is no current set).
func changedNames(cur map[string]fileState, files []Payload, gid int) []string {
	var out []string
	seen := make(map[string]bool, len(files))
	for _, f := range files {
		seen[f.Name] = true
		c, ok := cur[f.Name]
		if !ok || c.mode != f.Mode.Perm() || !bytes.Equal(c.data, f.Data) || gid >= 0 && c.gid != gid {
			out = append(out, f.Name)
		}
	}
	for name := range cur {
		if !seen[name] {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
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

// removeStale removes visible links that are no longer in names, every data directory
// other than keep (the current one: rotated-out values must not stay readable, and a
// write killed half-way leaves one behind) and a leftover ..data_tmp link.
func (w Writer) removeStale(dir string, names map[string]bool, keep string) error {
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
			if err := os.RemoveAll(path); err != nil {
				errs = append(errs, err)
			}
		case name == dataLinkTmp || name == linkTmp:
			if e.Type()&os.ModeSymlink != 0 {
				if err := os.Remove(path); err != nil {
					errs = append(errs, err)
				}
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
// each a regular file visible through its link: the condition for keeping old files
// when a refresh fails, and for a republish to skip Key Vault. It reads no content.
func (w Writer) Complete(dir string, names []string) bool {
	if checkRealDir(dir) != nil {
		return false
	}
	gen, err := os.Readlink(filepath.Join(dir, DataLink))
	if err != nil || !isGeneration(gen) || checkRealDir(filepath.Join(dir, gen)) != nil {
		return false
	}
	for _, n := range names {
		if ValidateFileName(n) != nil {
			return false
		}
		if fi, err := os.Lstat(filepath.Join(dir, gen, n)); err != nil || !fi.Mode().IsRegular() {
			return false
		}
		if got, err := os.Readlink(filepath.Join(dir, n)); err != nil || got != filepath.Join(DataLink, n) {
			return false
		}
	}
	return true
}
