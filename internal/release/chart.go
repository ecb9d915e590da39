// Package release assembles a kvinject release in one directory (make release): the
// images (internal/images), the Helm chart packaged with its version and the images
// pinned by digest, deploy/ rendered from that chart, an SBOM per image and a
// checksums file.
package release

import (
	"fmt"
	"regexp"
	"strings"

	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"sigs.k8s.io/yaml"
)

// Image is what the chart pins for one program: its repository, tag and digest.
type Image struct {
	Repository, Tag, Digest string
}

// chartImages maps a program's image name to the values key that holds its image.
var chartImages = map[string]string{"kvinject-webhook": "webhook", "kvinject-csi-node": "csi"}

// imageBlock matches one image block of values.yaml: the repository line, then the
// tag and digest lines, keeping their indentation and comments.
var imageBlock = regexp.MustCompile(`(?m)^(\s+)repository: (\S+)\n((?:\s+#.*\n)*)\s+tag: ""\n((?:\s+#.*\n)*)\s+digest: ""\n`)

// PackageChart packages the chart at chartDir into outDir as kvinject-VERSION.tgz,
// with version and appVersion set to version (without its leading "v" for the chart's
// SemVer version) and each image in values.yaml replaced by images[name]. values.yaml
// keeps its comments. It returns the archive's path.
func PackageChart(chartDir, outDir, version string, images map[string]Image) (string, error) {
	ch, err := loader.Load(chartDir)
	if err != nil {
		return "", fmt.Errorf("load chart %s: %w", chartDir, err)
	}
	ch.Metadata.Version = strings.TrimPrefix(version, "v")
	ch.Metadata.AppVersion = version
	if err := ch.Metadata.Validate(); err != nil {
		return "", fmt.Errorf("chart version %q: %w (VERSION must be SemVer, like v0.3.0)", version, err)
	}
	var raw *[]byte
	for _, f := range ch.Raw {
		if f.Name == chartutil.ValuesfileName {
			raw = &f.Data
		}
	}
	if raw == nil {
		return "", fmt.Errorf("chart %s has no %s", chartDir, chartutil.ValuesfileName)
	}
	pinned := map[string]bool{}
	out := imageBlock.ReplaceAllFunc(*raw, func(block []byte) []byte {
		m := imageBlock.FindSubmatch(block)
		repo := string(m[2])
		for name, img := range images {
			if strings.HasSuffix(repo, "/"+name) {
				pinned[name] = true
				return fmt.Appendf(nil, "%[1]srepository: %[2]s\n%[3]s%[1]stag: %[4]q\n%[5]s%[1]sdigest: %[6]q\n",
					m[1], img.Repository, m[3], img.Tag, m[4], img.Digest)
			}
		}
		return block
	})
	for name := range images {
		if !pinned[name] {
			return "", fmt.Errorf("values.yaml has no image block (repository, tag \"\", digest \"\") for %s", name)
		}
	}
	*raw = out
	// The values the templates see are the edited file's.
	var values map[string]any
	if err := yaml.Unmarshal(out, &values); err != nil {
		return "", fmt.Errorf("edited values.yaml: %w", err)
	}
	ch.Values = values
	for name, key := range chartImages {
		img, ok := images[name]
		if !ok {
			continue
		}
		got, _ := values[key].(map[string]any)["image"].(map[string]any)
		if got["repository"] != img.Repository || got["tag"] != img.Tag || got["digest"] != img.Digest {
			return "", fmt.Errorf("values %s.image is %v after pinning, want %+v", key, got, img)
		}
	}
	return chartutil.Save(ch, outDir)
}
