// Package images builds kvinject's container images with go-containerregistry, the
// library behind ko and crane: each program is a static Go binary on an empty base,
// one image per platform, gathered into an OCI image index and written as an OCI
// image layout (and an OCI archive that containerd imports). make images, make
// release, make demo and the end-to-end tests all build through this package.
//
// Builds are reproducible: the binaries are built with -trimpath and a fixed version,
// every file in a layer has the same modification time (the commit's), and the image
// configs carry that time as their creation time, so the same commit gives the same
// digests.
package images

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Entry is one file system entry of a layer.
type Entry struct {
	// Path is the absolute path in the image ("/bin/sh").
	Path string
	// Mode is the permission bits (0o755 for a program).
	Mode int64
	// Data is a regular file's content; Source, when set, is a host file read instead.
	Data   []byte
	Source string
	// Link makes the entry a symbolic link to Link.
	Link string
	// Dir makes the entry a directory.
	Dir bool
	// UID and GID own the entry (0, root, unless set).
	UID, GID int
}

// Layer returns entries as one OCI layer (gzip). Entries are sorted by path and
// missing parent directories are added, so the same entries and modTime give the same
// digest.
func Layer(entries []Entry, modTime time.Time) (v1.Layer, error) {
	data, err := layerTar(entries, modTime)
	if err != nil {
		return nil, err
	}
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(data)), nil
	}, tarball.WithMediaType(types.OCILayer))
}

func layerTar(entries []Entry, modTime time.Time) ([]byte, error) {
	byPath := map[string]Entry{}
	for _, e := range entries {
		p := path.Clean("/" + e.Path)
		if p == "/" {
			return nil, fmt.Errorf("entry %q: not a file", e.Path)
		}
		e.Path = p
		byPath[p] = e
		for d := path.Dir(p); d != "/"; d = path.Dir(d) {
			if _, ok := byPath[d]; !ok {
				byPath[d] = Entry{Path: d, Dir: true, Mode: 0o755}
			}
		}
	}
	paths := make([]string, 0, len(byPath))
	for p := range byPath {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, p := range paths {
		e := byPath[p]
		name := strings.TrimPrefix(p, "/")
		hdr := &tar.Header{Name: name, Mode: e.Mode, ModTime: modTime, Uid: e.UID, Gid: e.GID, Format: tar.FormatPAX}
		var data []byte
		switch {
		case e.Dir:
			hdr.Typeflag, hdr.Name = tar.TypeDir, name+"/"
		case e.Link != "":
			hdr.Typeflag, hdr.Linkname = tar.TypeSymlink, e.Link
			if hdr.Mode == 0 {
				hdr.Mode = 0o777
			}
		default:
			data = e.Data
			if e.Source != "" {
				var err error
				if data, err = os.ReadFile(e.Source); err != nil {
					return nil, err
				}
			}
			hdr.Typeflag, hdr.Size = tar.TypeReg, int64(len(data))
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, err
		}
		if _, err := tw.Write(data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
