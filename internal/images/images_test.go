package images

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"debug/elf"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/kvinject/kvinject/internal/testkit"
)

// TestBuildIsReproducible builds the release images twice, into two directories, and
// checks that the digests and the archives are the same, and that each index holds
// what a release promises: both platforms, the OCI annotations, the binary alone on
// an empty base, the webhook as non-root.
func TestBuildIsReproducible(t *testing.T) {
	root, err := testkit.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	opts := func(out string) Options {
		return Options{RepoRoot: root, OutDir: out, Version: "v0.0.0-test", Revision: "0123456789abcdef",
			Source: Source, Created: time.Unix(1700000000, 0).UTC()}
	}
	first, err := Build(t.Context(), opts(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	second, err := Build(t.Context(), opts(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	if len(first) != len(Programs) || len(second) != len(Programs) {
		t.Fatalf("built %d and %d images, want %d", len(first), len(second), len(Programs))
	}
	for i, b := range first {
		if b.Digest != second[i].Digest || !cmp.Equal(b.Manifests, second[i].Manifests) {
			t.Errorf("%s: digests differ between two builds: %s %v vs %s %v", b.Ref, b.Digest, b.Manifests, second[i].Digest, second[i].Manifests)
		}
		if sum(t, b.Archive) != sum(t, second[i].Archive) {
			t.Errorf("%s: the archives differ between two builds", b.Ref)
		}
		t.Logf("%s@%s", b.Ref, b.Digest)
		checkIndex(t, b)
	}
}

func checkIndex(t *testing.T, b Built) {
	t.Helper()
	p, err := layout.FromPath(b.Layout)
	if err != nil {
		t.Fatal(err)
	}
	top, err := p.ImageIndex()
	if err != nil {
		t.Fatal(err)
	}
	tm, err := top.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(tm.Manifests) != 1 || tm.Manifests[0].Digest != b.Digest ||
		tm.Manifests[0].Annotations[AnnotationContainerdName] != b.Ref || tm.Manifests[0].Annotations[AnnotationRefName] != "v0.0.0-test" {
		t.Fatalf("%s: index.json = %+v", b.Ref, tm.Manifests)
	}
	idx, err := top.ImageIndex(b.Digest)
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	wantAnn := map[string]string{AnnotationVersion: "v0.0.0-test", AnnotationRevision: "0123456789abcdef",
		AnnotationSource: Source, AnnotationCreated: "2023-11-14T22:13:20Z", AnnotationTitle: b.Program.Name}
	if im.MediaType != types.OCIImageIndex || !cmp.Equal(im.Annotations, wantAnn) {
		t.Errorf("%s: index media type %s, annotations %v; want %s, %v", b.Ref, im.MediaType, im.Annotations, types.OCIImageIndex, wantAnn)
	}
	var platforms []string
	for _, d := range im.Manifests {
		platforms = append(platforms, d.Platform.OS+"/"+d.Platform.Architecture)
		img, err := idx.Image(d.Digest)
		if err != nil {
			t.Fatal(err)
		}
		checkImage(t, b, d.Platform, img, wantAnn)
	}
	if !cmp.Equal(platforms, DefaultPlatforms) {
		t.Errorf("%s: platforms %v, want %v", b.Ref, platforms, DefaultPlatforms)
	}
}

func checkImage(t *testing.T, b Built, plat *v1.Platform, img v1.Image, wantAnn map[string]string) {
	t.Helper()
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if m.MediaType != types.OCIManifestSchema1 || !cmp.Equal(m.Annotations, wantAnn) || len(m.Layers) != 1 {
		t.Errorf("%s %s: manifest %s, annotations %v, %d layers", b.Ref, plat.Architecture, m.MediaType, m.Annotations, len(m.Layers))
	}
	if cfg.Architecture != plat.Architecture || cfg.OS != "linux" || cfg.Config.User != b.Program.User ||
		!cmp.Equal(cfg.Config.Entrypoint, []string{b.Program.Path}) || !cfg.Created.Equal(time.Unix(1700000000, 0)) {
		t.Errorf("%s %s: config %+v", b.Ref, plat.Architecture, cfg)
	}
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	var names []string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, h.Name)
		if h.Name != b.Program.Path[1:] {
			continue
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		f, err := elf.NewFile(bytes.NewReader(data))
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}[plat.Architecture]
		if f.Machine != want || f.FileHeader.Type != elf.ET_EXEC {
			t.Errorf("%s %s: binary is %v %v, want a static %v executable", b.Ref, plat.Architecture, f.Machine, f.FileHeader.Type, want)
		}
		if interp := f.Section(".interp"); interp != nil {
			t.Errorf("%s %s: binary is dynamic (has .interp)", b.Ref, plat.Architecture)
		}
	}
	if !cmp.Equal(names, []string{b.Program.Path[1:]}) {
		t.Errorf("%s %s: layer holds %v, want only the binary", b.Ref, plat.Architecture, names)
	}
}

func sum(t *testing.T, file string) [32]byte {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(data)
}

func TestLayerIsDeterministicAndComplete(t *testing.T) {
	src := filepath.Join(t.TempDir(), "prog")
	if err := os.WriteFile(src, []byte("program"), 0o600); err != nil {
		t.Fatal(err)
	}
	entries := []Entry{{Path: "/bin/y", Link: "x"}, {Path: "/bin/x", Mode: 0o755, Source: src}, {Path: "/tmp", Dir: true, Mode: 0o1777}}
	at := time.Unix(1, 0)
	a, err := layerTar(entries, at)
	if err != nil {
		t.Fatal(err)
	}
	b, err := layerTar([]Entry{entries[2], entries[1], entries[0]}, at)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a, b) {
		t.Fatal("the same entries in another order gave another layer")
	}
	tr := tar.NewReader(bytes.NewReader(a))
	var got []string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, h.Name+" "+h.Linkname+" "+h.ModTime.UTC().Format(time.RFC3339)+" "+strconv.FormatInt(h.Mode, 8))
	}
	want := []string{"bin/  1970-01-01T00:00:01Z 755", "bin/x  1970-01-01T00:00:01Z 755",
		"bin/y x 1970-01-01T00:00:01Z 777", "tmp/  1970-01-01T00:00:01Z 1777"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("layer (-want +got):\n%s", diff)
	}
	if _, err := layerTar([]Entry{{Path: "/"}}, at); err == nil {
		t.Error("an entry for / was accepted")
	}
}
