package framework

import (
	"github.com/kvinject/kvinject/internal/testkit"

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
)

// ShippedMutatingWebhook reads the MutatingWebhookConfiguration the product ships in
// deploy/webhook (generated from the chart).
func ShippedMutatingWebhook() (*admissionv1.MutatingWebhookConfiguration, error) {
	root, err := testkit.RepoRoot()
	if err != nil {
		return nil, err
	}
	files, err := filepath.Glob(filepath.Join(root, "deploy", "webhook", "*.yaml"))
	if err != nil {
		return nil, err
	}
	var found []*admissionv1.MutatingWebhookConfiguration
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
			if !bytes.Contains(doc, []byte("kind: MutatingWebhookConfiguration")) {
				continue
			}
			var m admissionv1.MutatingWebhookConfiguration
			if err := yaml.UnmarshalStrict(doc, &m); err != nil {
				return nil, fmt.Errorf("%s: %w", f, err)
			}
			found = append(found, &m)
		}
	}
	if len(found) != 1 {
		return nil, fmt.Errorf("deploy/webhook holds %d MutatingWebhookConfigurations, want 1", len(found))
	}
	return found[0], nil
}

// PointAt rewrites every webhook of m to call baseURL (https://host:port) at its
// service path, trusting caPEM, as a local process serves it.
func PointAt(m *admissionv1.MutatingWebhookConfiguration, baseURL string, caPEM []byte) {
	for i := range m.Webhooks {
		cc := &m.Webhooks[i].ClientConfig
		path := "/"
		if cc.Service != nil && cc.Service.Path != nil {
			path = *cc.Service.Path
		}
		url := strings.TrimSuffix(baseURL, "/") + path
		cc.URL, cc.Service, cc.CABundle = &url, nil, caPEM
	}
}

func bufioReader(b []byte) *bufio.Reader { return bufio.NewReader(bytes.NewReader(b)) }
