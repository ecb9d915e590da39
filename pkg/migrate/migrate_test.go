package migrate

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	"sigs.k8s.io/yaml"

	"github.com/kvinject/kvinject/pkg/mutate"
	"github.com/kvinject/kvinject/pkg/render"
)

const tenant = "72f988bf-86f1-41af-91ab-2d7cd011db47"

// spc is a SecretProviderClass in namespace shop with these parameters (YAML lines).
func spc(name, params string) string {
	return fmt.Sprintf(`apiVersion: secrets-store.csi.x-k8s.io/v1
kind: SecretProviderClass
metadata: {name: %s, namespace: shop}
spec:
  provider: azure
  parameters:
%s
`, name, indent(params, "    "))
}

const objects = `objects: |
  array:
    - |
      objectName: DatabaseLogin
      objectAlias: DATABASE_LOGIN
    - |
      objectName: web-tls
      objectType: cert
      filePermission: "0440"
    - |
      objectName: blob
      objectEncoding: base64
      objectVersion: 0123456789ABCDEF0123456789abcdef`

// deployment is Deployment shop/name with a pod template of these labels, volumes and
// containers (YAML).
func deployment(name, labels, containers, volumes string) string {
	return fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata: {name: %s, namespace: shop}
spec:
  selector: {matchLabels: {app: %s}}
  template:
    metadata:
      labels: {app: %s%s}
    spec:
      containers:
%s
      volumes:
%s
`, name, name, name, labels, indent(containers, "        "), indent(volumes, "        "))
}

func indent(s, by string) string {
	lines := strings.Split(s, "\n")
	for i := range lines {
		lines[i] = by + lines[i]
	}
	return strings.Join(lines, "\n")
}

const ssVolume = `- name: secrets
  csi:
    driver: secrets-store.csi.k8s.io
    readOnly: true
    volumeAttributes: {secretProviderClass: %s}`

func ssVol(class string) string { return fmt.Sprintf(ssVolume, class) }

const appMount = `- name: app
  image: nginx
  volumeMounts:
    - {name: secrets, mountPath: /mnt/secrets-store, readOnly: true}`

func run(t *testing.T, input string, cfg func(*mutate.Config)) ([]render.Document, []Outcome, []render.Document) {
	t.Helper()
	docs, err := render.Split(strings.NewReader(input), "in.yaml")
	if err != nil {
		t.Fatal(err)
	}
	c := mutate.DefaultConfig()
	if cfg != nil {
		cfg(&c)
	}
	out, outcomes, err := Migrate(t.Context(), docs, render.Options{Config: c})
	if err != nil {
		t.Fatal(err)
	}
	return docs, outcomes, out
}

// TestMigrate: workloads that move are rewritten into exactly the annotations that
// give the same files; the others are printed as given with the reasons, each naming
// what to do.
func TestMigrate(t *testing.T) {
	wiClass := spc("wi", "clientID: 6b9e2a55-6c0b-4a1f-9a8e-2f1f6f1d9c01\nkeyvaultName: shop-kv\ntenantId: "+tenant+"\n"+objects)
	podIDClass := spc("podid", "usePodIdentity: \"true\"\nkeyvaultName: shop-kv\ntenantId: "+tenant+"\nresourceGroup: rg\n"+objects)
	tests := []struct {
		name        string
		input       string
		cfg         func(*mutate.Config)
		annotations map[string]string // of the migrated template; nil: left as it was
		containers  string            // the migrated template's containers (YAML) when migrated
		reasons     []string
		notes       []string
	}{
		{
			name:  "workload identity, one container of two, another path",
			input: wiClass + "---\n" + deployment("web", "", strings.ReplaceAll(appMount, "/mnt/secrets-store", "/etc/secrets")+"\n- {name: proxy, image: envoy}", ssVol("wi")),
			annotations: map[string]string{
				"kvinject.io/secrets":    "DatabaseLogin=DATABASE_LOGIN, cert:web-tls;mode=0440, blob@0123456789abcdef0123456789abcdef;encoding=base64",
				"kvinject.io/vault":      "shop-kv",
				"kvinject.io/tenant-id":  tenant,
				"kvinject.io/client-id":  "6b9e2a55-6c0b-4a1f-9a8e-2f1f6f1d9c01",
				"kvinject.io/mount-path": "/etc/secrets",
				"kvinject.io/containers": "app",
			},
			containers: "- image: nginx\n  name: app\n  resources: {}\n- image: envoy\n  name: proxy\n  resources: {}\n",
			notes: []string{
				`kvinject.io/containers: container "proxy" is not listed, so it does not get the secrets`,
				`namespace "shop" is not among the objects given: its kvinject.io defaults and labels are not applied (add its Namespace to the input or to --cluster)`,
			},
		},
		{
			name:  "pod identity from the label, every container, ignored parameters noted",
			input: podIDClass + "---\n" + deployment("api", ", aadpodidbinding: shop-id", appMount+"\n- name: init2\n  image: busybox\n  volumeMounts: [{name: secrets, mountPath: /mnt/secrets-store/}]", ssVol("podid")+"\n- {name: cache, emptyDir: {}}"),
			annotations: map[string]string{
				"kvinject.io/secrets":    "DatabaseLogin=DATABASE_LOGIN, cert:web-tls;mode=0440, blob@0123456789abcdef0123456789abcdef;encoding=base64",
				"kvinject.io/vault":      "shop-kv",
				"kvinject.io/tenant-id":  tenant,
				"kvinject.io/identity":   "shop-id",
				"kvinject.io/mount-path": "/mnt/secrets-store",
			},
			containers: "- image: nginx\n  name: app\n  resources: {}\n- image: busybox\n  name: init2\n  resources: {}\n",
			notes: []string{
				"volume secrets: SecretProviderClass podid: kvinject ignores spec.parameters resourceGroup (they cannot change the files); remove them",
				`namespace "shop" is not among the objects given: its kvinject.io defaults and labels are not applied (add its Namespace to the input or to --cluster)`,
			},
		},
		{
			name:    "a service principal",
			input:   spc("sp", "keyvaultName: shop-kv\ntenantId: "+tenant+"\n"+objects) + "---\n" + deployment("sp", "", appMount, ssVol("sp")+"\n    nodePublishSecretRef: {name: sp-creds}"),
			reasons: []string{"SecretProviderClass sp sets neither usePodIdentity nor clientID, so the volume authenticates as a service principal (nodePublishSecretRef sp-creds), which kvinject's annotations cannot name: keep the SecretProviderClass volume and change only its driver to kvinject's"},
		},
		{
			name:    "pod identity without the label",
			input:   podIDClass + "---\n" + deployment("nolabel", "", appMount, ssVol("podid")),
			reasons: []string{"SecretProviderClass podid sets usePodIdentity, but the pod template has no aadpodidbinding label, so the volume has no identity today: add the label first"},
			notes:   []string{"volume secrets: SecretProviderClass podid: kvinject ignores spec.parameters resourceGroup (they cannot change the files); remove them"},
		},
		{
			name:    "two paths and a subPath",
			input:   wiClass + "---\n" + deployment("paths", "", appMount+"\n- name: b\n  image: b\n  volumeMounts: [{name: secrets, mountPath: /b, subPath: DATABASE_LOGIN}]", ssVol("wi")),
			reasons: []string{`container "b" mounts part of volume secrets (subPath), and kvinject mounts the whole volume: mount it whole first`, "the containers mount volume secrets at 2 paths (/b, /mnt/secrets-store) and kvinject mounts at one: use one path first"},
		},
		{
			name:    "two Secrets Store volumes",
			input:   wiClass + "---\n" + deployment("two", "", appMount, ssVol("wi")+"\n"+strings.Replace(ssVol("wi"), "name: secrets", "name: more", 1)),
			reasons: []string{"the pod template has 2 Secrets Store volumes (secrets, more) and kvinject gives a pod one: merge their SecretProviderClasses into one first, or keep this workload on the Secrets Store CSI driver"},
		},
		{
			name:    "a class that cannot move",
			input:   spc("synced", "clientID: x\nkeyvaultName: shop-kv\n"+objects) + "  secretObjects: [{secretName: s, type: Opaque}]\n---\n" + deployment("synced", "", appMount, ssVol("synced")),
			reasons: []string{"volume secrets: SecretProviderClass synced cannot move: SecretProviderClass shop/synced: spec.secretObjects is not supported: kvinject mounts files and syncs no Kubernetes Secret, so environment variables fed from one would go stale; read the mounted files instead (or keep this workload on the Secrets Store CSI driver)"},
		},
		{
			name:    "a missing class",
			input:   deployment("lost", "", appMount, ssVol("nowhere")),
			reasons: []string{"volume secrets: SecretProviderClass shop/nowhere not found (or not provider azure)"},
		},
		{
			name:    "another cloud than the cluster's",
			input:   spc("china", "clientID: 6b9e2a55-6c0b-4a1f-9a8e-2f1f6f1d9c01\nkeyvaultName: shop-kv\ncloudName: AzureChinaCloud\ntenantId: "+tenant+"\n"+objects) + "---\n" + deployment("china", "", appMount, ssVol("china")),
			reasons: []string{`the files would differ: cloudName "AzureChinaCloud" would become "AzurePublicCloud"`},
			notes:   []string{`namespace "shop" is not among the objects given: its kvinject.io defaults and labels are not applied (add its Namespace to the input or to --cluster)`},
		},
		{
			name: "one object under two names",
			input: spc("twice", "clientID: x\nkeyvaultName: shop-kv\ntenantId: "+tenant+"\nobjects: |\n  array:\n    - |\n      objectName: a\n    - |\n      objectName: a\n      objectAlias: b") +
				"---\n" + deployment("twice", "", appMount, ssVol("twice")),
			reasons: []string{`volume secrets: SecretProviderClass twice cannot move: invalid volume: objects: invalid object: objects[0] and objects[1] both read secret "a" (same version, format and encoding); list it once`},
		},
		{
			name:    "an item of a List",
			input:   wiClass + "---\napiVersion: v1\nkind: List\nitems:\n" + "- " + strings.TrimSpace(indent(deployment("listed", "", appMount, ssVol("wi")), "  ")) + "\n",
			reasons: []string{"it is an item of a List, and migrate rewrites whole documents: give it as a document of its own"},
		},
		{
			name: "a policy refuses the vault: the webhook's words",
			input: "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop, labels: {team: shop}}\n---\n" +
				"apiVersion: kvinject.io/v1alpha1\nkind: KeyVaultAccessPolicy\nmetadata: {name: shop}\nspec:\n  namespaceSelector: {matchLabels: {team: shop}}\n  vaults: [shop-other-kv]\n  tenants: [\"*\"]\n  podIdentities: [\"*\"]\n---\n" +
				spc("podid", "usePodIdentity: \"true\"\nkeyvaultName: shop-kv\ntenantId: "+tenant+"\n"+objects) + "---\n" + deployment("refused", ", aadpodidbinding: shop-id", appMount, ssVol("podid")),
			reasons: []string{`kvinject's webhook would refuse the rewritten workload: admission webhook "pods.kvinject.io" denied the request: kvinject.io/vault: namespace "shop" may not use vault "shop-kv": no KeyVaultAccessPolicy that selects it (shop) lists it in spec.vaults`},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in, outcomes, out := run(t, tc.input, tc.cfg)
			if len(outcomes) != 1 || len(out) != len(in) {
				t.Fatalf("%d outcomes for %d documents in, %d out", len(outcomes), len(in), len(out))
			}
			oc := outcomes[0]
			if diff := cmp.Diff(tc.reasons, oc.Reasons); diff != "" {
				t.Errorf("reasons (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.notes, oc.Notes); diff != "" {
				t.Errorf("notes (-want +got):\n%s", diff)
			}
			for i := range in {
				last := i == len(in)-1
				if !last || tc.annotations == nil {
					if string(out[i].Data) != string(in[i].Data) {
						t.Errorf("document %d changed:\n%s", i+1, out[i].Data)
					}
					continue
				}
				if !oc.Migrated {
					t.Fatal("not migrated")
				}
				var d appsv1.Deployment
				if err := yaml.UnmarshalStrict(out[i].Data, &d); err != nil {
					t.Fatal(err)
				}
				if diff := cmp.Diff(tc.annotations, d.Spec.Template.Annotations); diff != "" {
					t.Errorf("annotations (-want +got):\n%s", diff)
				}
				b, _ := yaml.Marshal(append(d.Spec.Template.Spec.InitContainers, d.Spec.Template.Spec.Containers...))
				if string(b) != tc.containers {
					t.Errorf("containers:\n%s\nwant\n%s", b, tc.containers)
				}
				for _, v := range d.Spec.Template.Spec.Volumes {
					if v.CSI != nil {
						t.Errorf("the Secrets Store volume is still there: %+v", v)
					}
				}
				if strings.Contains(string(out[i].Data), "volumeMounts") || strings.Contains(string(out[i].Data), "resources") {
					t.Errorf("the output keeps a mount or gained a field:\n%s", out[i].Data)
				}
			}
		})
	}
}

// TestMigrateGolden: the migration page's example (testdata/before.yaml) gives exactly
// testdata/after.yaml.
func TestMigrateGolden(t *testing.T) {
	in, err := os.ReadFile("testdata/before.yaml")
	if err != nil {
		t.Fatal(err)
	}
	_, outcomes, out := run(t, string(in), nil)
	if len(outcomes) != 1 || !outcomes[0].Migrated {
		t.Fatalf("outcomes %+v", outcomes)
	}
	var docs []string
	for _, d := range out {
		docs = append(docs, strings.TrimRight(string(d.Data), "\n")+"\n")
	}
	got := strings.Join(docs, "---\n")
	if os.Getenv("UPDATE_GOLDEN") == "1" {
		if err := os.WriteFile("testdata/after.yaml", []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile("testdata/after.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(string(want), got); diff != "" {
		t.Fatalf("migrate testdata/before.yaml (-want +got):\n%s", diff)
	}
}
