package release

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"github.com/kvinject/kvinject/internal/chartrender"
	"github.com/kvinject/kvinject/internal/images"
)

// ChecksumsFile lists the SHA-256 of every other file of a release, as sha256sum
// writes them (sha256sum -c checks them).
const ChecksumsFile = "SHA256SUMS"

// Options say what to release.
type Options struct {
	// Images are the image build's options (RepoRoot, Version, ...); OutDir is the
	// release directory (dist), and the images go to OutDir/images.
	Images images.Options
}

// Result is what Run wrote.
type Result struct {
	Images []images.Built
	// Chart is the packaged chart; Deploy the rendered manifests; SBOMs one per image.
	Chart  string
	Deploy []string
	SBOMs  []string
	// Checksums is the checksums file.
	Checksums string
}

// semver is what a release version must look like: vMAJOR.MINOR.PATCH[-pre].
var semver = regexp.MustCompile(`^v(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(-[0-9A-Za-z.-]+)?$`)

// Run builds a release into o.Images.OutDir: the images, the chart pinned to their
// digests, deploy/ rendered from that chart, an SBOM per image and SHA256SUMS. The
// directory is emptied first.
func Run(ctx context.Context, o Options) (*Result, error) {
	if !semver.MatchString(o.Images.Version) {
		return nil, fmt.Errorf("VERSION %q is not a release version: use vMAJOR.MINOR.PATCH, like make release VERSION=v0.3.0", o.Images.Version)
	}
	dist := o.Images.OutDir
	if dist == "" {
		return nil, fmt.Errorf("release: no output directory")
	}
	if err := os.RemoveAll(dist); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dist, 0o755); err != nil {
		return nil, err
	}
	imgOpts := o.Images
	imgOpts.OutDir = filepath.Join(dist, "images")
	built, err := images.Build(ctx, imgOpts)
	if err != nil {
		return nil, err
	}
	r := &Result{Images: built}
	pins := map[string]Image{}
	var digests strings.Builder
	for _, b := range built {
		pins[b.Program.Name] = Image{Repository: b.Repository(), Tag: o.Images.Version, Digest: b.Digest.String()}
		fmt.Fprintf(&digests, "%s@%s\n", b.Ref, b.Digest)
		sbom, err := SBOM(b, o.Images.Created)
		if err != nil {
			return nil, err
		}
		file := filepath.Join(dist, "sbom", b.Program.Name+".cdx.json")
		if err := writeFile(file, sbom); err != nil {
			return nil, err
		}
		r.SBOMs = append(r.SBOMs, file)
	}
	if err := writeFile(filepath.Join(dist, "images", "digests.txt"), []byte(digests.String())); err != nil {
		return nil, err
	}
	// The binaries were the images' inputs (the SBOMs read them); they are in the
	// image layouts, and not part of the release.
	if err := os.RemoveAll(filepath.Join(imgOpts.OutDir, "bin")); err != nil {
		return nil, err
	}
	if r.Chart, err = PackageChart(filepath.Join(o.Images.RepoRoot, chartrender.ChartDir), dist, o.Images.Version, pins); err != nil {
		return nil, err
	}
	shipped, err := chartrender.Shipped(r.Chart)
	if err != nil {
		return nil, fmt.Errorf("render deploy/ from %s: %w", r.Chart, err)
	}
	for _, f := range shipped {
		file := filepath.Join(dist, f.Path)
		if err := writeFile(file, f.Content); err != nil {
			return nil, err
		}
		r.Deploy = append(r.Deploy, file)
	}
	r.Checksums = filepath.Join(dist, ChecksumsFile)
	return r, WriteChecksums(dist, r.Checksums)
}

func writeFile(file string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		return err
	}
	return os.WriteFile(file, data, 0o644)
}

// WriteChecksums writes the SHA-256 of every file under dir (but file itself) into
// file, one "<hex>  <path relative to dir>" line each, sorted by path.
func WriteChecksums(dir, file string) error {
	var lines []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || p == file {
			return err
		}
		sum, err := sha256File(p)
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		lines = append(lines, sum+"  "+filepath.ToSlash(rel))
		return nil
	})
	if err != nil {
		return err
	}
	sort.Slice(lines, func(i, j int) bool { return lines[i][66:] < lines[j][66:] })
	return os.WriteFile(file, []byte(strings.Join(lines, "\n")+"\n"), 0o644)
}

func sha256File(p string) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
