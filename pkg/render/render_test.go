package render

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/kvinject/kvinject/pkg/contract"
	"github.com/kvinject/kvinject/pkg/mutate"
)

const input = `# The shop's namespace: its defaults apply.
apiVersion: v1
kind: Namespace
metadata:
  name: shop
  annotations:
    kvinject.io/vault: shop-kv
    kvinject.io/tenant-id: 72f988bf-86f1-41af-91ab-2d7cd011db47
---
# a comment-only document
---
apiVersion: v1
kind: ConfigMap
metadata: {name: settings, namespace: shop}
data: {a: b}
---
apiVersion: v1
kind: List
items:
  - apiVersion: apps/v1
    kind: Deployment
    metadata: {name: web, namespace: shop}
    spec:
      selector: {matchLabels: {app: web}}
      template:
        metadata:
          labels: {app: web}
          annotations:
            kvinject.io/secrets: DatabaseLogin=DATABASE_LOGIN
            kvinject.io/identity: shop-app
        spec:
          containers: [{name: web, image: nginx}]
  - apiVersion: batch/v1
    kind: Job
    metadata: {name: plain, namespace: shop}
    spec:
      template:
        spec:
          restartPolicy: Never
          containers: [{name: c, image: busybox}]
`

// TestRenderDocuments: a multi-document input keeps its other documents as they are,
// renders a List's items, and uses the Namespace given in the input.
func TestRenderDocuments(t *testing.T) {
	docs, err := Split(strings.NewReader(input), "in.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(docs) != 3 {
		t.Fatalf("%d documents, want 3 (the comment-only one dropped)", len(docs))
	}
	res, err := Render(t.Context(), docs, Options{Config: mutate.DefaultConfig()})
	if err != nil {
		t.Fatal(err)
	}
	if res[0].Injected || string(res[0].Data) != string(docs[0].Data) || res[1].Injected || string(res[1].Data) != string(docs[1].Data) {
		t.Errorf("documents without a pod template changed")
	}
	if res[2].Err != nil || !res[2].Injected {
		t.Fatalf("the List: injected %v, %v", res[2].Injected, res[2].Err)
	}
	var list struct {
		Items []struct {
			Spec struct {
				Template corev1.PodTemplateSpec `json:"template"`
			} `json:"spec"`
		} `json:"items"`
	}
	if err := yaml.Unmarshal(res[2].Data, &list); err != nil {
		t.Fatal(err)
	}
	web, plain := list.Items[0].Spec.Template, list.Items[1].Spec.Template
	if web.Labels[contract.LabelPodIdentity] != "shop-app" || web.Annotations[contract.AnnotationStatus] != contract.StatusInjected ||
		len(web.Spec.Volumes) != 1 || web.Spec.Volumes[0].CSI.VolumeAttributes[contract.AttrKeyVaultName] != "shop-kv" {
		t.Errorf("the Deployment's template: %+v", web)
	}
	if len(plain.Spec.Volumes) != 0 || plain.Annotations != nil {
		t.Errorf("the Job without kvinject's annotation changed: %+v", plain)
	}
	want := []string{`kvinject.io/vault: using "shop-kv" from namespace "shop"`, `kvinject.io/tenant-id: using "72f988bf-86f1-41af-91ab-2d7cd011db47" from namespace "shop"`}
	if diff := cmp.Diff(want, res[2].Warnings); diff != "" {
		t.Errorf("warnings (-want +got):\n%s", diff)
	}
}

// TestRenderDenials: render refuses what the webhook refuses, with its words, and
// enforces KeyVaultAccessPolicies given with the cluster's objects.
func TestRenderDenials(t *testing.T) {
	pod := func(ns, secrets, vault string) Document {
		return Document{Source: "pod", Data: []byte(`apiVersion: v1
kind: Pod
metadata: {name: p, namespace: ` + ns + `, annotations: {kvinject.io/secrets: "` + secrets + `", kvinject.io/vault: ` + vault + `, kvinject.io/identity: app}}
spec: {containers: [{name: c, image: nginx}]}
`)}
	}
	cluster := []Document{{Source: "policy", Data: []byte(`apiVersion: kvinject.io/v1alpha1
kind: KeyVaultAccessPolicy
metadata: {name: team-a}
spec:
  namespaceSelector: {matchLabels: {team: a}}
  vaults: [team-a-kv]
  podIdentities: ["*"]
  tenants: ["*"]
`)}, {Source: "ns", Data: []byte(`apiVersion: v1
kind: Namespace
metadata: {name: a, labels: {team: a}}
`)}}
	cfg := mutate.DefaultConfig()
	cfg.TenantID = "72f988bf-86f1-41af-91ab-2d7cd011db47"
	for _, tc := range []struct {
		name string
		doc  Document
		want string
	}{
		{"a bad entry", pod("a", "a=../x", "team-a-kv"), `admission webhook "pods.kvinject.io" denied the request: kvinject.io/secrets: entry 1 "a=../x": the file name "../x" contains a path separator; use a plain file name`},
		{"another team's vault", pod("a", "a", "team-b-kv"), `admission webhook "pods.kvinject.io" denied the request: kvinject.io/vault: namespace "a" may not use vault "team-b-kv": no KeyVaultAccessPolicy that selects it (team-a) lists it in spec.vaults`},
		{"its own vault", pod("a", "a", "team-a-kv"), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, err := Render(t.Context(), []Document{tc.doc}, Options{Config: cfg, Cluster: cluster})
			if err != nil {
				t.Fatal(err)
			}
			got := ""
			if res[0].Err != nil {
				got = res[0].Err.Error()
			}
			if got != tc.want {
				t.Fatalf("got  %s\nwant %s", got, tc.want)
			}
		})
	}
}

// TestRenderWarnsAboutUnknownNamespaces: without the pod's Namespace, its defaults
// cannot apply; render says so.
func TestRenderWarnsAboutUnknownNamespaces(t *testing.T) {
	cfg := mutate.DefaultConfig()
	cfg.Vault, cfg.TenantID = "cluster-kv", "72f988bf-86f1-41af-91ab-2d7cd011db47"
	res, err := Render(t.Context(), []Document{{Source: "pod", Data: []byte(`apiVersion: v1
kind: Pod
metadata: {name: p, annotations: {kvinject.io/secrets: a, kvinject.io/identity: app}}
spec: {containers: [{name: c, image: nginx}]}
`)}}, Options{Config: cfg, Namespace: "shop"})
	if err != nil {
		t.Fatal(err)
	}
	last := res[0].Warnings[len(res[0].Warnings)-1]
	if want := `namespace "shop" is not among the objects given: its kvinject.io defaults and labels are not applied (add its Namespace to the input or to --cluster)`; last != want {
		t.Errorf("last warning %q, want %q", last, want)
	}
}
