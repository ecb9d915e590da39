package release

import (
	"bytes"
	"crypto/sha256"
	"debug/buildinfo"
	"fmt"
	"net/url"
	"sort"
	"strings"
	"time"

	cdx "github.com/CycloneDX/cyclonedx-go"

	"github.com/kvinject/kvinject/internal/images"
)

// SBOM returns a CycloneDX (JSON) bill of materials for one image: the image as the
// subject (purl pkg:oci/NAME@DIGEST), and as components every Go module linked into
// its binaries, read from the binaries' own build information, and the Go standard
// library. The same image gives the same bytes: the timestamp is created and the
// serial number derives from the digest.
func SBOM(b images.Built, created time.Time) ([]byte, error) {
	type module struct{ path, version, sum string }
	mods := map[string]module{}
	var goVersion string
	platforms := make([]string, 0, len(b.Binaries))
	for p := range b.Binaries {
		platforms = append(platforms, p)
	}
	sort.Strings(platforms)
	for _, p := range platforms {
		bi, err := buildinfo.ReadFile(b.Binaries[p])
		if err != nil {
			return nil, fmt.Errorf("%s %s: build information: %w", b.Ref, p, err)
		}
		goVersion = bi.GoVersion
		for _, d := range bi.Deps {
			if d.Replace != nil {
				d = d.Replace
			}
			mods[d.Path] = module{d.Path, d.Version, d.Sum}
		}
	}
	digest := b.Digest.String()
	purl := fmt.Sprintf("pkg:oci/%s@%s?repository_url=%s", b.Program.Name, url.QueryEscape(digest), url.QueryEscape(b.Repository()))
	bom := cdx.NewBOM()
	sum := sha256.Sum256([]byte(digest))
	bom.SerialNumber = fmt.Sprintf("urn:uuid:%x-%x-%x-%x-%x", sum[0:4], sum[4:6], sum[6:8], sum[8:10], sum[10:16])
	tag := b.Ref[strings.LastIndex(b.Ref, ":")+1:]
	bom.Metadata = &cdx.Metadata{
		Timestamp: created.UTC().Format(time.RFC3339),
		Tools: &cdx.ToolsChoice{Components: &[]cdx.Component{{
			Type: cdx.ComponentTypeApplication, Name: "kvinject internal/release", Version: tag,
		}}},
		Component: &cdx.Component{
			BOMRef: purl, Type: cdx.ComponentTypeContainer, Name: b.Program.Name, Version: tag, PackageURL: purl,
			Hashes:     &[]cdx.Hash{{Algorithm: cdx.HashAlgoSHA256, Value: strings.TrimPrefix(digest, "sha256:")}},
			Properties: &[]cdx.Property{{Name: "platforms", Value: strings.Join(platforms, ",")}},
		},
	}
	std := "pkg:golang/stdlib@" + strings.TrimPrefix(goVersion, "go")
	components := []cdx.Component{{BOMRef: std, Type: cdx.ComponentTypeLibrary, Name: "stdlib", Version: goVersion, PackageURL: std}}
	paths := make([]string, 0, len(mods))
	for p := range mods {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, p := range paths {
		m := mods[p]
		ref := "pkg:golang/" + m.path + "@" + m.version
		c := cdx.Component{BOMRef: ref, Type: cdx.ComponentTypeLibrary, Name: m.path, Version: m.version, PackageURL: ref}
		if h, ok := strings.CutPrefix(m.sum, "h1:"); ok {
			c.Properties = &[]cdx.Property{{Name: "go.sum h1", Value: h}}
		}
		components = append(components, c)
	}
	bom.Components = &components
	var refs []string
	for _, c := range components {
		refs = append(refs, c.BOMRef)
	}
	bom.Dependencies = &[]cdx.Dependency{{Ref: purl, Dependencies: &refs}}
	var buf bytes.Buffer
	enc := cdx.NewBOMEncoder(&buf, cdx.BOMFileFormatJSON)
	enc.SetPretty(true)
	if err := enc.Encode(bom); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
