// Package chartrender renders the kvinject Helm chart (charts/kvinject) through the
// Helm SDK, as `helm template` would, and writes the plain manifests shipped in
// deploy/ from it. The chart tests, the install test and `make manifests` share it,
// so deploy/ is by construction what the chart renders with default values.
package chartrender

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/lint/support"
)

// Defaults of Options: the release the shipped manifests describe.
const (
	ReleaseName = "kvinject"
	Namespace   = "kvinject"
	// KubeVersion is the Kubernetes version the shipped manifests are rendered for:
	// the version the tests run (fields such as the CSIDriver's
	// serviceAccountTokenInSecrets depend on it).
	KubeVersion = "v1.37.2"
)

// ChartDir is the chart's path relative to the repository root.
const ChartDir = "charts/kvinject"

// Options select what to render. Zero fields take the defaults above.
type Options struct {
	// ChartDir is the chart directory (required).
	ChartDir string
	// ReleaseName and Namespace of the release.
	ReleaseName, Namespace string
	// Values override the chart's values.yaml (nil: none).
	Values map[string]any
	// KubeVersion is the cluster version templates see (.Capabilities.KubeVersion).
	KubeVersion string
}

// Document is one rendered object as YAML, with the template it came from.
type Document struct {
	// Source is the template path inside the chart, e.g. "templates/webhook/service.yaml".
	Source string
	// YAML is the object (without the "# Source" comment or "---").
	YAML string
}

// Render renders the chart client-side (no API server: lookup returns nothing),
// validating values against values.schema.json, and returns its objects in Helm's
// install order.
func Render(opts Options) ([]Document, error) {
	if opts.ChartDir == "" {
		return nil, errors.New("chartrender: ChartDir is required")
	}
	if opts.ReleaseName == "" {
		opts.ReleaseName = ReleaseName
	}
	if opts.Namespace == "" {
		opts.Namespace = Namespace
	}
	if opts.KubeVersion == "" {
		opts.KubeVersion = KubeVersion
	}
	ch, err := loader.Load(opts.ChartDir)
	if err != nil {
		return nil, fmt.Errorf("load chart %s: %w", opts.ChartDir, err)
	}
	kv, err := chartutil.ParseKubeVersion(opts.KubeVersion)
	if err != nil {
		return nil, err
	}
	install := action.NewInstall(&action.Configuration{Log: func(string, ...any) {}})
	install.DryRun = true
	install.ClientOnly = true
	install.Replace = true
	install.IncludeCRDs = true
	install.ReleaseName = opts.ReleaseName
	install.Namespace = opts.Namespace
	install.KubeVersion = kv
	values := opts.Values
	if values == nil {
		values = map[string]any{}
	}
	rel, err := install.Run(ch, values)
	if err != nil {
		return nil, fmt.Errorf("render chart %s: %w", opts.ChartDir, err)
	}
	return Split(rel.Manifest), nil
}

var sourceLine = regexp.MustCompile(`^# Source: [^/]+/(.+)$`)

// Split cuts a Helm release manifest into documents, keeping each one's source
// template. Documents holding only comments (a file header) are dropped.
func Split(manifest string) []Document {
	var docs []Document
	for _, part := range strings.Split("\n"+manifest, "\n---\n") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		var d Document
		lines := strings.SplitN(part, "\n", 2)
		if m := sourceLine.FindStringSubmatch(lines[0]); m != nil {
			d.Source = m[1]
			if len(lines) == 2 {
				part = lines[1]
			} else {
				part = ""
			}
		}
		d.YAML = strings.TrimSpace(part)
		if onlyComments(d.YAML) {
			continue
		}
		docs = append(docs, d)
	}
	return docs
}

// onlyComments reports whether a YAML document holds nothing but comments and blanks.
func onlyComments(doc string) bool {
	for _, line := range strings.Split(doc, "\n") {
		if l := strings.TrimSpace(line); l != "" && !strings.HasPrefix(l, "#") {
			return false
		}
	}
	return true
}

// Lint runs `helm lint --strict` on the chart with values and returns every warning
// and error (none when the chart is clean; informational messages are not returned).
func Lint(chartDir string, values map[string]any) []string {
	l := action.NewLint()
	l.Strict = true
	l.Namespace = Namespace
	kv, err := chartutil.ParseKubeVersion(KubeVersion)
	if err == nil {
		l.KubeVersion = kv
	}
	if values == nil {
		values = map[string]any{}
	}
	res := l.Run([]string{chartDir}, values)
	var out []string
	for _, m := range res.Messages {
		if m.Severity >= support.WarningSev {
			out = append(out, m.Error())
		}
	}
	if len(out) == 0 {
		for _, e := range res.Errors {
			out = append(out, e.Error())
		}
	}
	return out
}

// ShippedFile is one file of deploy/ and what it holds.
type ShippedFile struct {
	// Path is relative to the repository root, e.g. "deploy/webhook/kvinject.yaml".
	Path    string
	Content []byte
}

// header starts every generated file.
const header = `# Generated by 'make manifests' from charts/kvinject (release %q, namespace %q,
# default values, Kubernetes %s). DO NOT EDIT: change the chart and run 'make manifests'.
# %s
`

// Shipped returns the plain manifests of deploy/ rendered from the chart with default
// values: deploy/webhook/kvinject.yaml (the webhook and its cert-manager objects),
// deploy/csi/kvinject.yaml (the node plugin), deploy/csi/secretproviderclass-crd.yaml
// (the CRD, apart, for clusters whose Secrets Store CSI driver already has it) and
// deploy/policy/keyvaultaccesspolicy-crd.yaml (the tenancy policy's CRD, which both
// programs need).
func Shipped(chartDir string) ([]ShippedFile, error) {
	docs, err := Render(Options{ChartDir: chartDir})
	if err != nil {
		return nil, err
	}
	type file struct {
		path, about string
		docs        []Document
	}
	files := map[string]*file{
		"webhook": {path: "deploy/webhook/kvinject.yaml", about: "The webhook. Needs cert-manager and the namespace: kubectl create namespace kvinject."},
		"csi":     {path: "deploy/csi/kvinject.yaml", about: "The CSI node plugin. Needs the namespace: kubectl create namespace kvinject."},
		"crd":     {path: "deploy/csi/secretproviderclass-crd.yaml", about: "The SecretProviderClass CRD; skip it when the Secrets Store CSI driver is installed."},
		"policy":  {path: "deploy/policy/keyvaultaccesspolicy-crd.yaml", about: "The KeyVaultAccessPolicy CRD (tenancy); both programs need it. Apply it first."},
	}
	for _, d := range docs {
		var key string
		switch {
		case strings.HasSuffix(d.Source, "secretproviderclass-crd.yaml"):
			key = "crd"
		case strings.HasPrefix(d.Source, "templates/webhook/"):
			key = "webhook"
		case strings.HasPrefix(d.Source, "templates/csi/"):
			key = "csi"
		case strings.HasPrefix(d.Source, "templates/policy/"):
			key = "policy"
		default:
			return nil, fmt.Errorf("template %s belongs to no deploy/ file: put it under templates/webhook, templates/csi or templates/policy", d.Source)
		}
		files[key].docs = append(files[key].docs, d)
	}
	var out []ShippedFile
	for _, f := range files {
		var b bytes.Buffer
		fmt.Fprintf(&b, header, ReleaseName, Namespace, KubeVersion, f.about)
		for _, d := range f.docs {
			fmt.Fprintf(&b, "---\n# Source: %s\n%s\n", d.Source, d.YAML)
		}
		out = append(out, ShippedFile{Path: f.path, Content: b.Bytes()})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out, nil
}

// ShippedDirs are the directories Shipped owns entirely: any other YAML file in them
// is stale.
var ShippedDirs = []string{"deploy/webhook", "deploy/csi", "deploy/policy"}

// Diff compares Shipped(root/ChartDir) with the files under root and returns one line
// per difference (a missing, stale or changed file); none means deploy/ is current.
func Diff(root string) ([]string, error) {
	files, err := Shipped(filepath.Join(root, ChartDir))
	if err != nil {
		return nil, err
	}
	want := map[string]bool{}
	var diffs []string
	for _, f := range files {
		want[f.Path] = true
		got, err := os.ReadFile(filepath.Join(root, f.Path))
		switch {
		case errors.Is(err, os.ErrNotExist):
			diffs = append(diffs, f.Path+": missing")
		case err != nil:
			return nil, err
		case !bytes.Equal(got, f.Content):
			diffs = append(diffs, f.Path+": differs from the chart's rendering")
		}
	}
	for _, dir := range ShippedDirs {
		existing, err := filepath.Glob(filepath.Join(root, dir, "*.yaml"))
		if err != nil {
			return nil, err
		}
		for _, e := range existing {
			rel, _ := filepath.Rel(root, e)
			if !want[filepath.ToSlash(rel)] {
				diffs = append(diffs, rel+": not generated by the chart (remove it)")
			}
		}
	}
	return diffs, nil
}

// Write writes Shipped(root/ChartDir) under root and removes other YAML files from
// ShippedDirs.
func Write(root string) error {
	files, err := Shipped(filepath.Join(root, ChartDir))
	if err != nil {
		return err
	}
	want := map[string]bool{}
	for _, f := range files {
		want[f.Path] = true
		p := filepath.Join(root, f.Path)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, f.Content, 0o644); err != nil {
			return err
		}
	}
	for _, dir := range ShippedDirs {
		existing, err := filepath.Glob(filepath.Join(root, dir, "*.yaml"))
		if err != nil {
			return err
		}
		for _, e := range existing {
			rel, _ := filepath.Rel(root, e)
			if !want[filepath.ToSlash(rel)] {
				if err := os.Remove(e); err != nil {
					return err
				}
			}
		}
	}
	return nil
}
