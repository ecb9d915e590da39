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

	"github.com/kvinject/kvinject/internal/testkit"
)

// Names of the images the end-to-end cluster uses. The registry host "kvinject.local"
// does not exist: the images are only ever imported, never pulled.
const (
	Pause   = "kvinject.local/e2e/pause:v1"
	Busybox = "kvinject.local/e2e/busybox:v1"
	Webhook = "kvinject.local/kvinject/webhook:e2e"
	CSINode = "kvinject.local/kvinject/csi-node:e2e"
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

// BuildAll builds the static programs (pause, webhook, csi-node) with the Go toolchain
// (its build cache makes a rebuild cheap) and writes the four image archives.
func BuildAll(ctx context.Context, o BuildOptions) ([]Built, error) {
	logf := o.Log
	if logf == nil {
		logf = func(string, ...any) {}
	}
	binDir := filepath.Join(o.OutDir, "bin")
	if err := os.MkdirAll(binDir, 0o755); err != nil {
		return nil, err
	}
	logf("building static binaries: pause, webhook, csi-node, e2e (the emulator host)")
	if err := testkit.Build(ctx, binDir, "./test/e2e/pause", "./cmd/webhook", "./cmd/csi-node", "./test/cmd/e2e"); err != nil {
		return nil, err
	}
	applets, err := busyboxApplets(ctx)
	if err != nil {
		return nil, err
	}
	bb := []Entry{{Path: "/bin/busybox", Mode: 0o755, Source: BusyboxBinary},
		{Path: "/tmp", Dir: true, Mode: 0o1777},
		{Path: "/etc/passwd", Mode: 0o644, Data: []byte("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n")},
		{Path: "/etc/group", Mode: 0o644, Data: []byte("root:x:0:\nnobody:x:65534:\n")}}
	for _, a := range applets {
		if a != "busybox" {
			bb = append(bb, Entry{Path: "/bin/" + a, Link: "busybox"})
		}
	}
	// The tutorial's image (nginx) is Debian with GNU coreutils: its ls prints
	// "DATABASE_LOGIN  DATABASE_PASSWORD" in columns on a terminal, where busybox's pads
	// wider. Use the host's GNU ls, with the shared libraries it needs, in place of the
	// busybox applet, so kubectl exec -it ... ls shows the tutorial's exact line.
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
	bb = append(bb, gnuLS...)
	images := []Image{
		{Name: Pause, Entries: []Entry{{Path: "/pause", Mode: 0o755, Source: filepath.Join(binDir, "pause")}}, Entrypoint: []string{"/pause"}},
		{Name: Busybox, Entries: bb, Cmd: []string{"sh"}},
		{Name: Webhook, Entries: []Entry{{Path: "/webhook", Mode: 0o755, Source: filepath.Join(binDir, "webhook")}}, Entrypoint: []string{"/webhook"}},
		{Name: CSINode, Entries: []Entry{{Path: "/csi-node", Mode: 0o755, Source: filepath.Join(binDir, "csi-node")}}, Entrypoint: []string{"/csi-node"}},
	}
	var built []Built
	for _, img := range images {
		file := filepath.Join(o.OutDir, strings.NewReplacer("/", "_", ":", "_").Replace(img.Name)+".tar")
		d, err := WriteFile(file, img, runtime.GOARCH)
		if err != nil {
			return nil, err
		}
		built = append(built, Built{Name: img.Name, File: file, Digest: d})
	}
	logf("image archives written: %d in %s", len(built), o.OutDir)
	return built, nil
}

// programWithLibraries packs the dynamic program at host path prog as path in the
// image, with the shared libraries and loader ldd names, at their own paths.
func programWithLibraries(ctx context.Context, prog, path string) ([]Entry, error) {
	out, err := exec.CommandContext(ctx, "ldd", prog).Output()
	if err != nil {
		return nil, fmt.Errorf("ldd %s: %w", prog, err)
	}
	entries := []Entry{{Path: path, Mode: 0o755, Source: prog}}
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
		entries = append(entries, Entry{Path: lib, Mode: 0o755, Source: real})
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
