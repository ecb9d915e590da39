// Command release writes a kvinject release into a directory (make release
// VERSION=v0.3.0): the multi-arch images as OCI layouts and archives with their
// digests, the Helm chart packaged with its version and the images pinned by digest,
// deploy/ rendered from that chart, a CycloneDX SBOM per image and SHA256SUMS. With
// -images-only it builds the images alone (make images).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"

	"github.com/kvinject/kvinject/internal/images"
	"github.com/kvinject/kvinject/internal/release"
	"github.com/kvinject/kvinject/internal/testkit"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "release:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("release", flag.ContinueOnError)
	out := fs.String("out", "dist", "release directory (emptied first)")
	version := fs.String("version", "", "the release version, vMAJOR.MINOR.PATCH (required)")
	registry := fs.String("registry", images.DefaultRegistry, "registry and path the image names start with")
	platforms := fs.String("platforms", strings.Join(images.DefaultPlatforms, ","), "comma-separated os/arch list")
	imagesOnly := fs.Bool("images-only", false, "build the images alone into -out: OCI layouts, archives and binaries")
	if err := fs.Parse(args); err != nil {
		return err
	}
	root, err := testkit.RepoRoot()
	if err != nil {
		return err
	}
	o, err := images.FromGit(ctx, root)
	if err != nil {
		return err
	}
	o.OutDir, o.Version, o.Registry, o.Platforms = *out, *version, *registry, strings.Split(*platforms, ",")
	o.Log = func(format string, args ...any) { fmt.Fprintf(os.Stderr, format+"\n", args...) }
	if *imagesOnly {
		built, err := images.Build(ctx, o)
		if err != nil {
			return err
		}
		for _, b := range built {
			fmt.Printf("%s@%s\t%s\n", b.Ref, b.Digest, b.Archive)
		}
		return nil
	}
	r, err := release.Run(ctx, release.Options{Images: o})
	if err != nil {
		return err
	}
	for _, b := range r.Images {
		fmt.Printf("image  %s@%s\n", b.Ref, b.Digest)
	}
	files := append(append([]string{r.Chart}, r.Deploy...), r.SBOMs...)
	for _, f := range append(files, r.Checksums) {
		rel, _ := filepath.Rel(*out, f)
		fmt.Printf("file   %s/%s\n", filepath.Base(*out), rel)
	}
	return nil
}
