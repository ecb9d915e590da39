package migrate

import (
	"bytes"
	"os"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	"sigs.k8s.io/yaml"

	"github.com/kvinject/kvinject/pkg/contract"
	"github.com/kvinject/kvinject/pkg/csi"
	"github.com/kvinject/kvinject/pkg/mutate"
	"github.com/kvinject/kvinject/pkg/render"
)

// FuzzMigrate: any input is migrated without a panic; a document left as it was comes
// back byte for byte; and a workload migrate rewrote carries an alias list naming
// exactly the files its SecretProviderClass names (checked here apart from migrate's own
// comparison). Seeds: testdata/fuzz/FuzzMigrate and the migration page's example.
func FuzzMigrate(f *testing.F) {
	before, err := os.ReadFile("testdata/before.yaml")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(before)
	f.Fuzz(func(t *testing.T, in []byte) {
		docs, err := render.Split(bytes.NewReader(in), "in")
		if err != nil {
			return
		}
		out, outcomes, err := Migrate(t.Context(), docs, render.Options{Config: mutate.DefaultConfig()})
		if err != nil {
			return
		}
		if len(out) != len(docs) {
			t.Fatalf("%d documents in, %d out", len(docs), len(out))
		}
		classes := classesOf(docs, "default")
		migrated := map[string]bool{}
		for _, o := range outcomes {
			if o.Migrated {
				migrated[o.Source] = true
			}
		}
		for i := range docs {
			if !migrated[docs[i].Source] {
				if !bytes.Equal(out[i].Data, docs[i].Data) {
					t.Fatalf("document %d changed but was not migrated", i+1)
				}
				continue
			}
			w, err := parse(docs[i], "default")
			if err != nil {
				t.Fatal(err)
			}
			class := classes[w.namespace][w.secretsStore()[0].CSI.VolumeAttributes[contract.AttrSecretProviderClass]]
			params, err := csi.CheckClass("x", class.spec)
			if err != nil {
				t.Fatalf("migrated with a class the plugin refuses: %v", err)
			}
			want, err := csi.ParseParameters(params, contract.DefaultMaxObjects)
			if err != nil {
				t.Fatal(err)
			}
			var d appsv1.Deployment // every kind's template is at spec.template but a Pod's and a CronJob's
			if yaml.Unmarshal(out[i].Data, &d) != nil || d.Spec.Template.Annotations == nil {
				continue
			}
			got, err := contract.ParseAliasList(d.Spec.Template.Annotations[contract.AnnotationSecrets], contract.DefaultMaxObjects)
			if err != nil {
				t.Fatalf("migrated into an alias list the webhook refuses: %v", err)
			}
			if len(got) != len(want.Objects) {
				t.Fatalf("%d objects became %d", len(want.Objects), len(got))
			}
			for j := range got {
				if file(got[j]) != file(want.Objects[j]) {
					t.Fatalf("object %d: %s became %s", j+1, file(want.Objects[j]), file(got[j]))
				}
			}
		}
	})
}
