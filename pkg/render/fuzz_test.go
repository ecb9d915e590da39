package render

import (
	"bytes"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/kvinject/kvinject/pkg/mutate"
)

// FuzzRender: any input is split and rendered without a panic; every rendered
// document is YAML, and a document render did not change comes back byte for byte.
func FuzzRender(f *testing.F) {
	f.Add([]byte(input))
	f.Add([]byte("apiVersion: v1\nkind: Pod\nmetadata: {name: p, annotations: {kvinject.io/secrets: \"a=../x\"}}\nspec: {containers: [{name: c}]}\n"))
	f.Add([]byte("apiVersion: v1\nkind: List\nitems: [{apiVersion: batch/v1, kind: CronJob, metadata: {name: c}, spec: {jobTemplate: {spec: {template: {metadata: {annotations: {kvinject.io/secrets: a}}, spec: {containers: [{name: c}]}}}}}}]\n"))
	f.Add([]byte("---\n--- \n{}\n---\nkind: [\n"))
	cfg := mutate.DefaultConfig()
	cfg.Vault, cfg.TenantID, cfg.Identity = "cluster-kv", "72f988bf-86f1-41af-91ab-2d7cd011db47", "app"
	f.Fuzz(func(t *testing.T, in []byte) {
		docs, err := Split(bytes.NewReader(in), "in")
		if err != nil {
			return
		}
		res, err := Render(t.Context(), docs, Options{Config: cfg})
		if err != nil {
			return
		}
		for i, r := range res {
			switch {
			case r.Err != nil:
			case r.Injected:
				var v any
				if err := yaml.Unmarshal(r.Data, &v); err != nil {
					t.Fatalf("document %d rendered as invalid YAML: %v", i, err)
				}
			case !bytes.Equal(r.Data, docs[i].Data):
				t.Fatalf("document %d changed without an injection", i)
			}
		}
	})
}
