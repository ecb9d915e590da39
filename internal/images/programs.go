package images

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// Program is one of kvinject's shipped programs and how its image runs it.
type Program struct {
	// Name is the image's name under the registry ("kvinject-webhook").
	Name string
	// Package is the main package, relative to the repository root.
	Package string
	// Path is where the binary sits in the image; it is the entrypoint.
	Path string
	// User is the image's default user: a numeric uid:gid, or "" for root.
	User string
}

// Programs are the images a release ships. The webhook runs as 65532:65532
// (distroless's "nonroot"). The node plugin runs as root because it mounts tmpfs into
// the kubelet's pod directories; the chart runs it privileged for the same reason.
var Programs = []Program{
	{Name: "kvinject-webhook", Package: "./cmd/webhook", Path: "/kvinject-webhook", User: "65532:65532"},
	{Name: "kvinject-csi-node", Package: "./cmd/csi-node", Path: "/kvinject-csi-node"},
}

// DefaultPlatforms are the platforms make images and make release build.
var DefaultPlatforms = []string{"linux/amd64", "linux/arm64"}

// DefaultRegistry is where the chart's images live.
const DefaultRegistry = "ghcr.io/kvinject"

// Options says what to build and where.
type Options struct {
	// RepoRoot is the kvinject checkout; OutDir receives binaries, layouts and archives.
	RepoRoot, OutDir string
	// Registry prefixes the image names (DefaultRegistry if empty).
	Registry string
	// Version is the tag and what the programs report; Revision and Source go into
	// the OCI annotations.
	Version, Revision, Source string
	// Created is every file's time and the images' creation time: the commit's time,
	// so two builds of one commit agree.
	Created time.Time
	// Platforms are "os/arch" (DefaultPlatforms if empty).
	Platforms []string
	// Programs to build (Programs if empty).
	Programs []Program
	// Log reports progress (nil = silent).
	Log func(format string, args ...any)
}

// Built is one program's image index on disk.
type Built struct {
	Program Program
	// Ref is the name with the version as tag ("ghcr.io/kvinject/kvinject-webhook:v0.3.0").
	Ref string
	// Digest is the image index's digest: what the chart pins.
	Digest v1.Hash
	// Layout is the OCI image layout directory; Archive the same as one tar file.
	Layout, Archive string
	// Binaries maps "os/arch" to the binary built for it (the SBOM reads it).
	Binaries map[string]string
	// Manifests maps "os/arch" to that platform's image manifest digest.
	Manifests map[string]v1.Hash
}

// Repository is Ref without the tag.
func (b Built) Repository() string { return strings.TrimSuffix(b.Ref, ":"+b.tag()) }

func (b Built) tag() string { return b.Ref[strings.LastIndex(b.Ref, ":")+1:] }

// Build builds every program for every platform and writes, per program, an OCI
// image layout (OutDir/oci/NAME) and an OCI archive (OutDir/NAME.oci.tar).
func Build(ctx context.Context, o Options) ([]Built, error) {
	if o.Version == "" {
		return nil, fmt.Errorf("images: Version is required (make images VERSION=v0.1.0)")
	}
	if o.Registry == "" {
		o.Registry = DefaultRegistry
	}
	if len(o.Platforms) == 0 {
		o.Platforms = DefaultPlatforms
	}
	if len(o.Programs) == 0 {
		o.Programs = Programs
	}
	logf := o.Log
	if logf == nil {
		logf = func(string, ...any) {}
	}
	annotations := map[string]string{
		AnnotationVersion: o.Version, AnnotationRevision: o.Revision, AnnotationSource: o.Source,
		AnnotationCreated: o.Created.UTC().Format(time.RFC3339),
	}
	var out []Built
	for _, p := range o.Programs {
		b := Built{Program: p, Ref: o.Registry + "/" + p.Name + ":" + o.Version,
			Binaries: map[string]string{}, Manifests: map[string]v1.Hash{}}
		anns := map[string]string{AnnotationTitle: p.Name}
		for k, v := range annotations {
			anns[k] = v
		}
		var imgs []v1.Image
		for _, plat := range o.Platforms {
			osName, arch, ok := strings.Cut(plat, "/")
			if !ok {
				return nil, fmt.Errorf("platform %q: want os/arch, like linux/arm64", plat)
			}
			bin := filepath.Join(o.OutDir, "bin", osName+"_"+arch, p.Name)
			logf("building %s for %s", p.Name, plat)
			if err := GoBuild(ctx, o.RepoRoot, p.Package, bin, osName, arch, o.Version); err != nil {
				return nil, err
			}
			img, err := Image(Spec{
				Platform:    v1.Platform{OS: osName, Architecture: arch},
				Entries:     []Entry{{Path: p.Path, Mode: 0o755, Source: bin}},
				Entrypoint:  []string{p.Path},
				User:        p.User,
				Created:     o.Created,
				Annotations: anns,
			})
			if err != nil {
				return nil, fmt.Errorf("%s %s: %w", p.Name, plat, err)
			}
			d, err := img.Digest()
			if err != nil {
				return nil, err
			}
			imgs = append(imgs, img)
			b.Binaries[plat], b.Manifests[plat] = bin, d
		}
		idx, err := Index(imgs, anns)
		if err != nil {
			return nil, err
		}
		b.Layout = filepath.Join(o.OutDir, "oci", p.Name)
		if b.Digest, err = WriteLayout(b.Layout, b.Ref, idx); err != nil {
			return nil, fmt.Errorf("%s: write layout: %w", p.Name, err)
		}
		b.Archive = filepath.Join(o.OutDir, p.Name+".oci.tar")
		if err := Archive(b.Layout, b.Archive, o.Created); err != nil {
			return nil, fmt.Errorf("%s: write archive: %w", p.Name, err)
		}
		logf("%s@%s", b.Ref, b.Digest)
		out = append(out, b)
	}
	return out, nil
}

// versionVar is the variable the Makefile and Build stamp with the version.
const versionVar = "github.com/kvinject/kvinject/internal/version.version"

// GoBuild builds pkg as a static binary for goos/goarch into out, reproducibly:
// -trimpath, no cgo, no VCS stamp (the version is stamped instead, and the revision
// goes into the image's annotations), stripped.
func GoBuild(ctx context.Context, repoRoot, pkg, out, goos, goarch, version string) error {
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-buildvcs=false",
		"-ldflags", "-s -w -buildid= -X "+versionVar+"="+version, "-o", out, pkg)
	cmd.Dir = repoRoot
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS="+goos, "GOARCH="+goarch)
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s for %s/%s: %w\n%s", pkg, goos, goarch, err, b)
	}
	return nil
}
