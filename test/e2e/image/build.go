package image

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"

	"github.com/kvinject/kvinject/internal/chartrender"
	"github.com/kvinject/kvinject/internal/images"
	"github.com/kvinject/kvinject/internal/release"
	"github.com/kvinject/kvinject/internal/testkit"
)

// Names of the images the end-to-end cluster uses. The programs' images are the
// release images (internal/images, what make images builds), named as the chart names
// them, with the version Version. The test images' registry host "kvinject.local"
// does not exist: every image is only ever imported, never pulled.
const (
	Pause   = "kvinject.local/e2e/pause:v1"
	Busybox = "kvinject.local/e2e/busybox:v1"
	// Version is the tag of the programs' images in the end-to-end cluster.
	Version = "v0.0.0-e2e"
)

// Webhook and CSINode are the programs' image references (repository:tag).
var (
	Webhook = images.DefaultRegistry + "/kvinject-webhook:" + Version
	CSINode = images.DefaultRegistry + "/kvinject-csi-node:" + Version
)

// BusyboxBinary is the static busybox of Debian's busybox-static package.
const BusyboxBinary = "/bin/busybox"

// Built is an image archive on disk.
type Built struct {
	Name, File, Digest string
}

// BuildOptions says where the sources are and where archives go.
type BuildOptions struct {
	// RepoRoot is the kvinject checkout; OutDir receives binaries and archives.
	RepoRoot, OutDir string
	// Log reports progress (nil = silent).
	Log func(format string, args ...any)
}

// epoch is the test images' time (the programs' images take the commit's).
var epoch = time.Unix(0, 0).UTC()

// BuildAll builds the programs' release images (internal/images, every platform
// make images builds) and the two test images (pause, busybox, for this machine's
// platform), and writes them as OCI archives into OutDir.
func BuildAll(ctx context.Context, o BuildOptions) ([]Built, error) {
	logf := o.Log
	if logf == nil {
		logf = func(string, ...any) {}
	}
	programs, err := images.Build(ctx, images.Options{
		RepoRoot: o.RepoRoot, OutDir: filepath.Join(o.OutDir, "release"),
		Version: Version, Revision: "e2e", Source: "https://github.com/kvinject/kvinject",
		Created: epoch, Log: logf,
	})
	if err != nil {
		return nil, err
	}
	var built []Built
	pins := map[string]release.Image{}
	for _, p := range programs {
		built = append(built, Built{Name: p.Ref, File: p.Archive, Digest: p.Digest.String()})
		pins[p.Program.Name] = release.Image{Repository: p.Repository(), Tag: Version, Digest: p.Digest.String()}
	}
	// The chart as make release packages it, pinned to these images: the cluster
	// installs this .tgz.
	if _, err := release.PackageChart(filepath.Join(o.RepoRoot, chartrender.ChartDir), filepath.Join(o.OutDir, "release"), Version, pins); err != nil {
		return nil, err
	}
	binDir := filepath.Join(o.OutDir, "bin")
	if err := os.MkdirAll(binDir, 0o755); err != nil {
		return nil, err
	}
	logf("building static binaries: pause, e2e (the emulator host)")
	if err := testkit.Build(ctx, binDir, "./test/e2e/pause", "./test/cmd/e2e"); err != nil {
		return nil, err
	}
	bb, err := busyboxEntries(ctx)
	if err != nil {
		return nil, err
	}
	test := []images.Spec{
		{Entries: []images.Entry{{Path: "/pause", Mode: 0o755, Source: filepath.Join(binDir, "pause")}}, Entrypoint: []string{"/pause"}},
		{Entries: bb, Cmd: []string{"sh"}},
	}
	for i, name := range []string{Pause, Busybox} {
		s := test[i]
		s.Platform, s.Created = v1.Platform{OS: "linux", Architecture: runtime.GOARCH}, epoch
		img, err := images.Image(s)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		idx, err := images.Index([]v1.Image{img}, nil)
		if err != nil {
			return nil, err
		}
		base := strings.NewReplacer("/", "_", ":", "_").Replace(name)
		dir := filepath.Join(o.OutDir, "oci", base)
		d, err := images.WriteLayout(dir, name, idx)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		file := filepath.Join(o.OutDir, base+".oci.tar")
		if err := images.Archive(dir, file, epoch); err != nil {
			return nil, err
		}
		built = append(built, Built{Name: name, File: file, Digest: d.String()})
	}
	logf("image archives written: %d in %s", len(built), o.OutDir)
	return built, nil
}

// Chart is the release chart BuildAll packaged into dir (BuildOptions.OutDir).
func Chart(dir string) string {
	return filepath.Join(dir, "release", "kvinject-"+strings.TrimPrefix(Version, "v")+".tgz")
}

// Digest returns the digest of the image index the OCI archive's layout dir holds:
// what the chart pins. dir is BuildOptions.OutDir.
func Digest(dir, ref string) (string, error) {
	name := ref[strings.LastIndex(ref, "/")+1 : strings.LastIndex(ref, ":")]
	idx, err := layout.ImageIndexFromPath(filepath.Join(dir, "release", "oci", name))
	if err != nil {
		return "", err
	}
	m, err := idx.IndexManifest()
	if err != nil {
		return "", err
	}
	if len(m.Manifests) != 1 {
		return "", fmt.Errorf("%s: %d entries in index.json, want 1", ref, len(m.Manifests))
	}
	return m.Manifests[0].Digest.String(), nil
}

// busyboxEntries is a small shell image: the static busybox with its applets, and
// the host's GNU ls. The tutorial's image (nginx) is Debian with GNU coreutils: its ls
// prints "DATABASE_LOGIN  DATABASE_PASSWORD" in columns on a terminal, where busybox's
// pads wider, so kubectl exec -it ... ls shows the tutorial's exact line with GNU ls.
func busyboxEntries(ctx context.Context) ([]images.Entry, error) {
	applets, err := busyboxApplets(ctx)
	if err != nil {
		return nil, err
	}
	bb := []images.Entry{{Path: "/bin/busybox", Mode: 0o755, Source: BusyboxBinary},
		{Path: "/tmp", Dir: true, Mode: 0o1777},
		{Path: "/etc/passwd", Mode: 0o644, Data: []byte("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n")},
		{Path: "/etc/group", Mode: 0o644, Data: []byte("root:x:0:\nnobody:x:65534:\n")}}
	for _, a := range applets {
		if a != "busybox" {
			bb = append(bb, images.Entry{Path: "/bin/" + a, Link: "busybox"})
		}
	}
	gnuLS, err := programWithLibraries(ctx, "/usr/bin/ls", "/bin/ls")
	if err != nil {
		return nil, err
	}
	for i := range bb {
		if bb[i].Path == "/bin/ls" {
			bb = slices.Delete(bb, i, i+1)
			break
		}
	}
	return append(bb, gnuLS...), nil
}

// programWithLibraries packs the dynamic program at host path prog as path in the
// image, with the shared libraries and loader ldd names, at their own paths.
func programWithLibraries(ctx context.Context, prog, path string) ([]images.Entry, error) {
	out, err := exec.CommandContext(ctx, "ldd", prog).Output()
	if err != nil {
		return nil, fmt.Errorf("ldd %s: %w", prog, err)
	}
	entries := []images.Entry{{Path: path, Mode: 0o755, Source: prog}}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		var lib string
		switch {
		case len(f) >= 3 && f[1] == "=>" && strings.HasPrefix(f[2], "/"):
			lib = f[2]
		case len(f) >= 1 && strings.HasPrefix(f[0], "/"):
			lib = f[0]
		default:
			continue
		}
		real, err := filepath.EvalSymlinks(lib)
		if err != nil {
			return nil, err
		}
		entries = append(entries, images.Entry{Path: lib, Mode: 0o755, Source: real})
	}
	return entries, nil
}

// busyboxApplets lists the applets of the static busybox (sh, ls, cat, ...).
func busyboxApplets(ctx context.Context) ([]string, error) {
	out, err := exec.CommandContext(ctx, BusyboxBinary, "--list").Output()
	if err != nil {
		return nil, fmt.Errorf("%s --list (install busybox-static): %w", BusyboxBinary, err)
	}
	return strings.Fields(string(out)), nil
}
