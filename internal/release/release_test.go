package release

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	cdx "github.com/CycloneDX/cyclonedx-go"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"

	"github.com/kvinject/kvinject/internal/chartrender"
	"github.com/kvinject/kvinject/internal/images"
	"github.com/kvinject/kvinject/internal/testkit"
)

// TestRun makes a release (one platform, to keep it short) and checks every artifact
// against the images it built: the chart pinned to their digests, deploy/ rendered
// from that chart, one SBOM per image, and SHA256SUMS over everything.
func TestRun(t *testing.T) {
	root, err := testkit.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	dist := filepath.Join(t.TempDir(), "dist")
	if _, err := Run(t.Context(), Options{Images: images.Options{RepoRoot: root, OutDir: dist, Version: "1.0"}}); err == nil ||
		!strings.Contains(err.Error(), `VERSION "1.0" is not a release version`) {
		t.Fatalf("a non-SemVer version: %v", err)
	}
	r, err := Run(t.Context(), Options{Images: images.Options{RepoRoot: root, OutDir: dist, Version: "v1.2.3-rc.1",
		Revision: "abc", Source: images.Source, Created: time.Unix(1700000000, 0), Platforms: []string{"linux/amd64"}}})
	if err != nil {
		t.Fatal(err)
	}

	// The chart: version, appVersion, and every image pinned to what was built.
	ch, err := loader.Load(r.Chart)
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Base(r.Chart) != "kvinject-1.2.3-rc.1.tgz" || ch.Metadata.Version != "1.2.3-rc.1" || ch.Metadata.AppVersion != "v1.2.3-rc.1" {
		t.Errorf("chart %s version %s appVersion %s", filepath.Base(r.Chart), ch.Metadata.Version, ch.Metadata.AppVersion)
	}
	values, err := valuesOf(r.Chart)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(values, []byte("# -- Webhook image repository.")) {
		t.Error("the packaged values.yaml lost its comments")
	}
	want := map[string]string{}
	for _, b := range r.Images {
		want[b.Program.Name] = b.Ref + "@" + b.Digest.String()
	}
	docs, err := chartrender.Render(chartrender.Options{ChartDir: r.Chart})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, d := range docs {
		for _, line := range strings.Split(d.YAML, "\n") {
			if img, ok := strings.CutPrefix(strings.TrimSpace(line), "image: "); ok {
				got = append(got, img)
			}
		}
	}
	slices.Sort(got)
	wantList := []string{want["kvinject-csi-node"], want["kvinject-webhook"]}
	if !slices.Equal(got, wantList) {
		t.Errorf("the packaged chart runs %v, want %v", got, wantList)
	}
	// deploy/ is that chart rendered: the same pinned images.
	for _, f := range r.Deploy {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		name := map[string]string{"webhook": "kvinject-webhook", "csi": "kvinject-csi-node"}[filepath.Base(filepath.Dir(f))]
		if strings.HasSuffix(f, "/kvinject.yaml") && !bytes.Contains(b, []byte("image: "+want[name]+"\n")) {
			t.Errorf("%s does not run %s", f, want[name])
		}
	}
	if len(r.Deploy) != 4 {
		t.Errorf("deploy/ has %d files, want 4", len(r.Deploy))
	}

	// One SBOM per image, naming it by digest.
	if len(r.SBOMs) != len(r.Images) {
		t.Fatalf("%d SBOMs for %d images", len(r.SBOMs), len(r.Images))
	}
	for i, f := range r.SBOMs {
		bom := decodeBOM(t, f)
		if bom.Metadata.Component.Hashes == nil || (*bom.Metadata.Component.Hashes)[0].Value != strings.TrimPrefix(r.Images[i].Digest.String(), "sha256:") {
			t.Errorf("%s does not describe %s", f, r.Images[i].Digest)
		}
	}

	// SHA256SUMS covers every other file, and each sum is right.
	sums, err := os.ReadFile(r.Checksums)
	if err != nil {
		t.Fatal(err)
	}
	listed := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(sums))
	for sc.Scan() {
		sum, name, ok := strings.Cut(sc.Text(), "  ")
		if !ok {
			t.Fatalf("SHA256SUMS line %q", sc.Text())
		}
		listed[name] = sum
	}
	n := 0
	err = filepath.WalkDir(dist, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || p == r.Checksums {
			return err
		}
		n++
		rel, _ := filepath.Rel(dist, p)
		sum, err := sha256File(p)
		if err != nil {
			return err
		}
		if listed[filepath.ToSlash(rel)] != sum {
			t.Errorf("SHA256SUMS has %q for %s, its sum is %s", listed[filepath.ToSlash(rel)], rel, sum)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n != len(listed) || n == 0 {
		t.Errorf("SHA256SUMS lists %d files, the release has %d", len(listed), n)
	}
	if _, err := os.Stat(filepath.Join(dist, "images", "bin")); !os.IsNotExist(err) {
		t.Errorf("the release keeps the build's binaries: %v", err)
	}
}

// TestSBOM describes hack/release's binary as an image's only binary: every module in
// its build information is a component, with its purl, and the BOM is the same twice.
func TestSBOM(t *testing.T) {
	dir := t.TempDir()
	if err := testkit.Build(t.Context(), dir, "./hack/release"); err != nil {
		t.Fatal(err)
	}
	exe := filepath.Join(dir, "release")
	b := images.Built{Program: images.Program{Name: "kvinject-webhook"}, Ref: "ghcr.io/kvinject/kvinject-webhook:v1.0.0",
		Binaries: map[string]string{"linux/amd64": exe}}
	b.Digest.Algorithm, b.Digest.Hex = "sha256", strings.Repeat("ab", 32)
	created := time.Unix(1700000000, 0)
	first, err := SBOM(b, created)
	if err != nil {
		t.Fatal(err)
	}
	second, err := SBOM(b, created)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(first, second) {
		t.Error("two SBOMs of one image differ")
	}
	file := filepath.Join(t.TempDir(), "bom.json")
	if err := os.WriteFile(file, first, 0o600); err != nil {
		t.Fatal(err)
	}
	bom := decodeBOM(t, file)
	m := bom.Metadata.Component
	if m.Type != cdx.ComponentTypeContainer || m.PackageURL != "pkg:oci/kvinject-webhook@sha256%3A"+strings.Repeat("ab", 32)+"?repository_url=ghcr.io%2Fkvinject%2Fkvinject-webhook" ||
		bom.Metadata.Timestamp != "2023-11-14T22:13:20Z" {
		t.Errorf("subject %+v at %s", m, bom.Metadata.Timestamp)
	}
	purls := map[string]bool{}
	for _, c := range *bom.Components {
		purls[c.PackageURL] = true
	}
	for _, p := range []string{"pkg:golang/github.com/CycloneDX/cyclonedx-go@v0.12.0", "pkg:golang/helm.sh/helm/v3@v3.22.0"} {
		if !purls[p] {
			t.Errorf("SBOM lacks %s", p)
		}
	}
	var std bool
	for p := range purls {
		std = std || strings.HasPrefix(p, "pkg:golang/stdlib@1.")
	}
	if !std {
		t.Error("SBOM lacks the Go standard library")
	}
}

func decodeBOM(t *testing.T, file string) *cdx.BOM {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var bom cdx.BOM
	if err := cdx.NewBOMDecoder(f, cdx.BOMFileFormatJSON).Decode(&bom); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	if bom.BOMFormat != "CycloneDX" || bom.SpecVersion < cdx.SpecVersion1_6 || bom.Metadata == nil || bom.Metadata.Component == nil || bom.Components == nil {
		t.Fatalf("%s: not a complete CycloneDX BOM: format %s spec %v", file, bom.BOMFormat, bom.SpecVersion)
	}
	return &bom
}

// TestPackageChartNeedsImageBlocks: a chart whose values.yaml lacks an image block
// for a program is refused, naming it.
func TestPackageChartNeedsImageBlocks(t *testing.T) {
	root, err := testkit.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	_, err = PackageChart(filepath.Join(root, chartrender.ChartDir), t.TempDir(), "v1.0.0", map[string]Image{"kvinject-other": {Repository: "x", Tag: "v1.0.0", Digest: "sha256:" + strings.Repeat("0", 64)}})
	if err == nil || !strings.Contains(err.Error(), "no image block") || !strings.Contains(err.Error(), "kvinject-other") {
		t.Fatalf("got %v", err)
	}
}

// valuesOf returns the values.yaml inside a packaged chart.
func valuesOf(tgz string) ([]byte, error) {
	ch, err := loader.Load(tgz)
	if err != nil {
		return nil, err
	}
	for _, f := range ch.Raw {
		if f.Name == chartutil.ValuesfileName {
			return bytes.Clone(f.Data), nil
		}
	}
	return nil, fmt.Errorf("%s has no %s", tgz, chartutil.ValuesfileName)
}
