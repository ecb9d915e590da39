package framework

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"github.com/kvinject/kvinject/internal/testkit"
)

// ShippedMutatingWebhook reads the MutatingWebhookConfiguration the product ships in
// deploy/webhook (generated from the chart).
func ShippedMutatingWebhook() (*admissionv1.MutatingWebhookConfiguration, error) {
	return shippedOne[admissionv1.MutatingWebhookConfiguration]("MutatingWebhookConfiguration")
}

// ShippedValidatingWebhook reads the ValidatingWebhookConfiguration (the check of
// AAD Pod Identity labels) the product ships in deploy/webhook.
func ShippedValidatingWebhook() (*admissionv1.ValidatingWebhookConfiguration, error) {
	return shippedOne[admissionv1.ValidatingWebhookConfiguration]("ValidatingWebhookConfiguration")
}

// PolicyCRDDir is the directory holding the KeyVaultAccessPolicy CRD the chart
// installs (generated from pkg/apis), for envtest's CRDDirectoryPaths.
func PolicyCRDDir() (string, error) {
	root, err := testkit.RepoRoot()
	if err != nil {
		return "", err
	}
	return filepath.Join(root, "charts", "kvinject", "files"), nil
}

// shippedOne reads the one object of kind in deploy/webhook.
func shippedOne[T any](kind string) (*T, error) {
	root, err := testkit.RepoRoot()
	if err != nil {
		return nil, err
	}
	files, err := filepath.Glob(filepath.Join(root, "deploy", "webhook", "*.yaml"))
	if err != nil {
		return nil, err
	}
	var found []*T
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		r := utilyaml.NewYAMLReader(bufioReader(b))
		for {
			doc, err := r.Read()
			if err == io.EOF {
				break
			}
			if err != nil {
				return nil, fmt.Errorf("%s: %w", f, err)
			}
			if !bytes.Contains(doc, []byte("\nkind: "+kind+"\n")) {
				continue
			}
			var m T
			if err := yaml.UnmarshalStrict(doc, &m); err != nil {
				return nil, fmt.Errorf("%s: %w", f, err)
			}
			found = append(found, &m)
		}
	}
	if len(found) != 1 {
		return nil, fmt.Errorf("deploy/webhook holds %d %ss, want 1", len(found), kind)
	}
	return found[0], nil
}

// PointAt rewrites every webhook of m to call baseURL (https://host:port) at its
// service path, trusting caPEM, as a local process serves it.
func PointAt(m *admissionv1.MutatingWebhookConfiguration, baseURL string, caPEM []byte) {
	for i := range m.Webhooks {
		pointAt(&m.Webhooks[i].ClientConfig, baseURL, caPEM)
	}
}

// PointValidatingAt is PointAt for a ValidatingWebhookConfiguration.
func PointValidatingAt(m *admissionv1.ValidatingWebhookConfiguration, baseURL string, caPEM []byte) {
	for i := range m.Webhooks {
		pointAt(&m.Webhooks[i].ClientConfig, baseURL, caPEM)
	}
}

func pointAt(cc *admissionv1.WebhookClientConfig, baseURL string, caPEM []byte) {
	path := "/"
	if cc.Service != nil && cc.Service.Path != nil {
		path = *cc.Service.Path
	}
	url := strings.TrimSuffix(baseURL, "/") + path
	cc.URL, cc.Service, cc.CABundle = &url, nil, caPEM
}

func bufioReader(b []byte) *bufio.Reader { return bufio.NewReader(bytes.NewReader(b)) }
