// Command images builds kvinject's images (internal/images): for each program an OCI
// image index for every platform, as an OCI image layout and an OCI archive, and
// prints each image's reference and digest. make images runs it.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"

	"github.com/kvinject/kvinject/internal/images"
	"github.com/kvinject/kvinject/internal/testkit"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "images:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("images", flag.ContinueOnError)
	out := fs.String("out", "dist/images", "directory for the layouts, archives and binaries")
	version := fs.String("version", "", "the images' tag and the version the programs report (required)")
	registry := fs.String("registry", images.DefaultRegistry, "registry and path the image names start with")
	platforms := fs.String("platforms", strings.Join(images.DefaultPlatforms, ","), "comma-separated os/arch list")
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
	o.OutDir, o.Version, o.Registry = *out, *version, *registry
	o.Platforms = strings.Split(*platforms, ",")
	o.Log = func(format string, args ...any) { fmt.Fprintf(os.Stderr, format+"\n", args...) }
	built, err := images.Build(ctx, o)
	if err != nil {
		return err
	}
	for _, b := range built {
		fmt.Printf("%s@%s\t%s\n", b.Ref, b.Digest, b.Archive)
	}
	return nil
}
