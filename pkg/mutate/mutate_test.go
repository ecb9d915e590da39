package mutate

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	jsonpatch "github.com/evanphx/json-patch/v5"
	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/kvinject/kvinject/pkg/contract"
	"github.com/kvinject/kvinject/pkg/policy"
)

const (
	tenant   = "72f988bf-86f1-41af-91ab-2d7cd011db47"
	tenant2  = "0b2a1c9e-1111-4c4c-8d8d-000000000002"
	clientID = "6b9e2a55-6c0b-4a1f-9a8e-2f1f6f1d9c01"
	driver   = contract.DefaultDriverName
)

// tutorialObjects is the objects attribute of the tutorial's pod, written out.
const tutorialObjects = `array:
- |
  objectAlias: DATABASE_LOGIN
  objectName: DatabaseLogin
  objectType: secret
- |
  objectAlias: DATABASE_PASSWORD
  objectName: DatabasePassword
  objectType: secret
`

// fakeLookup serves namespace and service-account annotations from maps and counts
// its calls.
type fakeLookup struct {
	namespaces      map[string]map[string]string // annotations
	namespaceLabels map[string]map[string]string
	serviceAccounts map[string]map[string]string // "ns/name"
	err             error
	calls           int
}

func (f *fakeLookup) Namespace(_ context.Context, ns string) (Metadata, error) {
	f.calls++
	return Metadata{Labels: f.namespaceLabels[ns], Annotations: f.namespaces[ns]}, f.err
}

func (f *fakeLookup) ServiceAccountAnnotations(_ context.Context, ns, name string) (map[string]string, error) {
	f.calls++
	return f.serviceAccounts[ns+"/"+name], f.err
}

// teamAPolicy governs namespaces labelled team=a: the tutorial's tenant and identity,
// and team-a's vaults only.
var teamAPolicy = policy.Spec{
	NamespaceSelector: policy.LabelSelector{MatchLabels: map[string]string{"team": "a"}},
	Vaults:            []string{"team-a-*"}, Tenants: []string{tenant}, PodIdentities: []string{"azure-kv"},
	WorkloadIdentityClientIDs: []string{clientID},
}

func withVaults(s policy.Spec, vaults ...string) policy.Spec { s.Vaults = vaults; return s }
func audit(s policy.Spec) policy.Spec                        { s.Mode = policy.Audit; return s }
func pinned(s policy.Spec, id policy.Identity) policy.Spec {
	s.PinnedIdentity = &id
	return s
}

func pod(annotations map[string]string, containers ...string) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "nginx-secrets-store", Namespace: "default", Annotations: annotations},
		Spec:       corev1.PodSpec{ServiceAccountName: "default"},
	}
	for _, c := range containers {
		p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: c, Image: "nginx"})
	}
	return p
}

func tutorialAnnotations() map[string]string {
	return map[string]string{
		contract.AnnotationVault:    "az-key-vault-demo",
		contract.AnnotationIdentity: "azure-kv",
		contract.AnnotationTenantID: tenant,
		contract.AnnotationSecrets:  "DatabaseLogin=DATABASE_LOGIN, DatabasePassword=DATABASE_PASSWORD",
	}
}

func with(m map[string]string, kv ...string) map[string]string {
	out := map[string]string{}
	for k, v := range m {
		out[k] = v
	}
	for i := 0; i < len(kv); i += 2 {
		if kv[i+1] == "-" {
			delete(out, kv[i])
			continue
		}
		out[kv[i]] = kv[i+1]
	}
	return out
}

func objectsYAML(t *testing.T, objects ...contract.Object) string {
	t.Helper()
	s, err := contract.MarshalObjects(objects)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func csiVolume(attrs map[string]string) corev1.Volume {
	ro := true
	return corev1.Volume{Name: contract.VolumeName, VolumeSource: corev1.VolumeSource{CSI: &corev1.CSIVolumeSource{
		Driver: driver, ReadOnly: &ro, VolumeAttributes: attrs,
	}}}
}

func podIdentityAttrs(vault, tenant, objects string) map[string]string {
	return map[string]string{"keyvaultName": vault, "tenantId": tenant, "cloudName": "AzurePublicCloud", "usePodIdentity": "true", "objects": objects}
}

func workloadAttrs(vault, tenant, clientID, objects string) map[string]string {
	return map[string]string{"keyvaultName": vault, "tenantId": tenant, "cloudName": "AzurePublicCloud", "usePodIdentity": "false", "clientID": clientID, "objects": objects}
}

// injected returns the expected result: p with the label (unless empty), the volume,
// the status annotation and a read-only mount at mountPath in the named containers.
func injected(p *corev1.Pod, label string, vol corev1.Volume, mountPath string, containers ...string) *corev1.Pod {
	out := p.DeepCopy()
	if label != "" {
		if out.Labels == nil {
			out.Labels = map[string]string{}
		}
		out.Labels[contract.LabelPodIdentity] = label
	}
	out.Annotations[contract.AnnotationStatus] = contract.StatusInjected
	out.Spec.Volumes = append(out.Spec.Volumes, vol)
	mount := corev1.VolumeMount{Name: contract.VolumeName, MountPath: mountPath, ReadOnly: true}
	for _, name := range containers {
		for i := range out.Spec.InitContainers {
			if out.Spec.InitContainers[i].Name == name {
				out.Spec.InitContainers[i].VolumeMounts = append(out.Spec.InitContainers[i].VolumeMounts, mount)
			}
		}
		for i := range out.Spec.Containers {
			if out.Spec.Containers[i].Name == name {
				out.Spec.Containers[i].VolumeMounts = append(out.Spec.Containers[i].VolumeMounts, mount)
			}
		}
	}
	return out
}

func TestMutate(t *testing.T) {
	tutorial := pod(tutorialAnnotations(), "nginx")
	tutorialInjected := injected(tutorial, "azure-kv", csiVolume(podIdentityAttrs("az-key-vault-demo", tenant, tutorialObjects)), "/mnt/secrets-store", "nginx")

	threeContainers := pod(with(tutorialAnnotations(), contract.AnnotationContainers, "app"), "proxy", "app", "logger")
	withInit := pod(tutorialAnnotations(), "app")
	withInit.Spec.InitContainers = []corev1.Container{{Name: "migrate", Image: "migrate"}}

	labelled := pod(tutorialAnnotations(), "nginx")
	labelled.Labels = map[string]string{"app": "web", contract.LabelPodIdentity: "azure-kv"}
	otherLabel := pod(tutorialAnnotations(), "nginx")
	otherLabel.Labels = map[string]string{contract.LabelPodIdentity: "other"}
	withLabels := pod(tutorialAnnotations(), "nginx")
	withLabels.Labels = map[string]string{"app": "web"}

	mountConflict := pod(tutorialAnnotations(), "nginx")
	mountConflict.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "data", MountPath: "/mnt/secrets-store/"}}
	otherMounts := pod(tutorialAnnotations(), "nginx")
	otherMounts.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "data", MountPath: "/data"}}
	otherMounts.Spec.Volumes = []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}}

	// Half way through a migration: the Secrets Store CSI volume is still mounted at the
	// path (in two containers, before an emptyDir that must keep its place).
	ro := true
	ssVolume := corev1.Volume{Name: "secrets-store-inline", VolumeSource: corev1.VolumeSource{CSI: &corev1.CSIVolumeSource{
		Driver: contract.SecretsStoreDriverName, ReadOnly: &ro, VolumeAttributes: map[string]string{"secretProviderClass": "azure-kvname"}}}}
	emptyDir := corev1.Volume{Name: "data", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}
	ssMount := corev1.VolumeMount{Name: "secrets-store-inline", MountPath: "/mnt/secrets-store", ReadOnly: true}
	ourMount := corev1.VolumeMount{Name: contract.VolumeName, MountPath: "/mnt/secrets-store", ReadOnly: true}
	dataMount := corev1.VolumeMount{Name: "data", MountPath: "/data"}
	halfMigrated := pod(tutorialAnnotations(), "nginx", "logger")
	halfMigrated.Labels = map[string]string{contract.LabelPodIdentity: "azure-kv"}
	halfMigrated.Spec.Volumes = []corev1.Volume{ssVolume, emptyDir}
	halfMigrated.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{ssMount, dataMount}
	halfMigrated.Spec.Containers[1].VolumeMounts = []corev1.VolumeMount{dataMount, ssMount}
	halfMigratedWant := halfMigrated.DeepCopy()
	halfMigratedWant.Annotations[contract.AnnotationStatus] = contract.StatusInjected
	halfMigratedWant.Spec.Volumes = []corev1.Volume{emptyDir, csiVolume(podIdentityAttrs("az-key-vault-demo", tenant, tutorialObjects))}
	halfMigratedWant.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{ourMount, dataMount}
	halfMigratedWant.Spec.Containers[1].VolumeMounts = []corev1.VolumeMount{dataMount, ourMount}
	// The Secrets Store volume is still mounted elsewhere by a container kvinject does
	// not mount into: it stays.
	stillUsed := halfMigrated.DeepCopy()
	stillUsed.Annotations[contract.AnnotationContainers] = "nginx"
	stillUsed.Spec.Containers[1].VolumeMounts = []corev1.VolumeMount{{Name: "secrets-store-inline", MountPath: "/etc/old"}}
	stillUsedWant := stillUsed.DeepCopy()
	stillUsedWant.Annotations[contract.AnnotationStatus] = contract.StatusInjected
	stillUsedWant.Spec.Volumes = append(stillUsedWant.Spec.Volumes, csiVolume(podIdentityAttrs("az-key-vault-demo", tenant, tutorialObjects)))
	stillUsedWant.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{ourMount, dataMount}
	// A Secrets Store volume mounted by subPath is not the whole volume: refused.
	subPath := halfMigrated.DeepCopy()
	subPath.Spec.Containers[0].VolumeMounts[0].SubPath = "DATABASE_LOGIN"

	foreignVolume := pod(tutorialAnnotations(), "nginx")
	foreignVolume.Spec.Volumes = []corev1.Volume{{Name: contract.VolumeName, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}}

	reinvoked := tutorialInjected.DeepCopy()
	reinvoked.Spec.Containers = append(reinvoked.Spec.Containers, corev1.Container{Name: "sidecar", Image: "envoy"})
	reinvokedWant := reinvoked.DeepCopy()
	reinvokedWant.Spec.Containers[1].VolumeMounts = []corev1.VolumeMount{{Name: contract.VolumeName, MountPath: "/mnt/secrets-store", ReadOnly: true}}

	customSA := pod(with(tutorialAnnotations(), contract.AnnotationIdentity, "-"), "app")
	customSA.Spec.ServiceAccountName = "workload"

	windowsOS := pod(tutorialAnnotations(), "iis")
	windowsOS.Spec.OS = &corev1.PodOS{Name: corev1.Windows}
	windowsSelector := pod(tutorialAnnotations(), "iis")
	windowsSelector.Spec.NodeSelector = map[string]string{"kubernetes.io/os": "windows"}
	windowsAffinity := pod(tutorialAnnotations(), "iis")
	windowsAffinity.Spec.Affinity = &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{
		NodeSelectorTerms: []corev1.NodeSelectorTerm{
			{MatchExpressions: []corev1.NodeSelectorRequirement{{Key: "kubernetes.io/os", Operator: corev1.NodeSelectorOpIn, Values: []string{"windows"}}}},
			{MatchExpressions: []corev1.NodeSelectorRequirement{{Key: "kubernetes.io/os", Operator: corev1.NodeSelectorOpNotIn, Values: []string{"linux"}}}},
		}}}}
	eitherOS := windowsAffinity.DeepCopy()
	eitherOS.Spec.Affinity.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms[1].MatchExpressions[0] =
		corev1.NodeSelectorRequirement{Key: "kubernetes.io/os", Operator: corev1.NodeSelectorOpIn, Values: []string{"linux", "windows"}}

	long := strings.Repeat("a", 128)
	full := "DatabaseLogin=DATABASE_LOGIN, cert:web-tls=tls.pem, secret:signing@0123456789ABCDEF0123456789abcdef=old.key;mode=0400, key:sign-key, secret:tls;format=pfx, secret:blob;encoding=base64;mode=440"
	fullObjects := objectsYAML(t,
		contract.Object{Name: "DatabaseLogin", Alias: "DATABASE_LOGIN", Type: "secret"},
		contract.Object{Name: "web-tls", Alias: "tls.pem", Type: "cert"},
		contract.Object{Name: "signing", Alias: "old.key", Type: "secret", Version: "0123456789abcdef0123456789abcdef", FilePermission: "0400"},
		contract.Object{Name: "sign-key", Type: "key"},
		contract.Object{Name: "tls", Type: "secret", Format: "pfx"},
		contract.Object{Name: "blob", Type: "secret", Encoding: "base64", FilePermission: "0440"},
	)
	loginOnly := objectsYAML(t, contract.Object{Name: "DatabaseLogin", Type: "secret"})
	invalid := func(list string) *corev1.Pod {
		return pod(with(tutorialAnnotations(), contract.AnnotationSecrets, list), "nginx")
	}

	tests := []struct {
		name         string
		config       func(*Config)
		namespace    map[string]string
		sa           map[string]map[string]string
		lookupErr    error
		pod          *corev1.Pod
		want         *corev1.Pod // nil: unchanged (unless wantDeny/wantErr)
		wantDeny     string
		wantErr      string
		wantWarnings []string
		wantLookups  int
		policies     []policy.Object
		unreadable   bool
		nsLabels     map[string]string
		wantAudit    []string // fields of Result.Audit
	}{
		{name: "tutorial pod", pod: tutorial, want: tutorialInjected},
		{name: "no annotations at all", pod: pod(nil, "nginx")},
		{name: "other annotations only", pod: pod(map[string]string{"prometheus.io/scrape": "true"}, "nginx")},
		{name: "already injected pod is unchanged", pod: tutorialInjected},
		{
			name: "reinvocation mounts into a container added after injection",
			pod:  reinvoked, want: reinvokedWant,
		},
		{
			name:      "defaults from the namespace annotation",
			pod:       pod(map[string]string{contract.AnnotationSecrets: "DatabaseLogin"}, "app"),
			namespace: map[string]string{contract.AnnotationVault: "ns-vault", contract.AnnotationIdentity: "ns-id", contract.AnnotationTenantID: tenant2},
			want:      injected(pod(map[string]string{contract.AnnotationSecrets: "DatabaseLogin"}, "app"), "ns-id", csiVolume(podIdentityAttrs("ns-vault", tenant2, loginOnly)), "/mnt/secrets-store", "app"),
			wantWarnings: []string{
				`kvinject.io/vault: using "ns-vault" from namespace "default"`,
				`kvinject.io/tenant-id: using "0b2a1c9e-1111-4c4c-8d8d-000000000002" from namespace "default"`,
				`kvinject.io/identity: using "ns-id" from namespace "default"`,
			},
			wantLookups: 1,
		},
		{
			name:   "defaults from the cluster file",
			config: func(c *Config) { c.Vault, c.TenantID, c.Identity = "cluster-vault", tenant, "cluster-id" },
			pod:    pod(map[string]string{contract.AnnotationSecrets: "DatabaseLogin"}, "app"),
			want:   injected(pod(map[string]string{contract.AnnotationSecrets: "DatabaseLogin"}, "app"), "cluster-id", csiVolume(podIdentityAttrs("cluster-vault", tenant, loginOnly)), "/mnt/secrets-store", "app"),
			wantWarnings: []string{
				`kvinject.io/vault: using "cluster-vault" from the cluster configuration`,
				`kvinject.io/tenant-id: using "72f988bf-86f1-41af-91ab-2d7cd011db47" from the cluster configuration`,
				`kvinject.io/identity: using "cluster-id" from the cluster configuration`,
			},
			// The service account is read first: its own client ID would win.
			wantLookups: 2,
		},
		{
			name:         "a service account's client ID beats the cluster's identity",
			config:       func(c *Config) { c.Identity = "cluster-id" },
			pod:          customSA,
			sa:           map[string]map[string]string{"default/workload": {contract.AnnotationWorkloadClientID: clientID}},
			want:         injected(customSA, "", csiVolume(workloadAttrs("az-key-vault-demo", tenant, clientID, tutorialObjects)), "/mnt/secrets-store", "app"),
			wantWarnings: []string{`kvinject.io/client-id: using "6b9e2a55-6c0b-4a1f-9a8e-2f1f6f1d9c01" from service account "workload"`},
			wantLookups:  2,
		},
		{
			name:        "a policy refuses another team's vault, naming the annotation",
			policies:    []policy.Object{{Name: "team-a", Spec: teamAPolicy}},
			nsLabels:    map[string]string{"team": "a"},
			pod:         tutorial,
			wantDeny:    `kvinject.io/vault: namespace "default" may not use vault "az-key-vault-demo": no KeyVaultAccessPolicy that selects it (team-a) lists it in spec.vaults`,
			wantLookups: 1,
		},
		{
			name:     "every rule a policy refuses is named",
			policies: []policy.Object{{Name: "team-a", Spec: policy.Spec{NamespaceSelector: teamAPolicy.NamespaceSelector}}},
			nsLabels: map[string]string{"team": "a"},
			pod:      tutorial,
			wantDeny: `kvinject.io/vault: namespace "default" may not use vault "az-key-vault-demo": no KeyVaultAccessPolicy that selects it (team-a) lists it in spec.vaults; ` +
				`kvinject.io/tenant-id: namespace "default" may not use tenant "72f988bf-86f1-41af-91ab-2d7cd011db47": no KeyVaultAccessPolicy that selects it (team-a) lists it in spec.tenants; ` +
				`kvinject.io/identity: namespace "default" may not use AAD Pod Identity "azure-kv": no KeyVaultAccessPolicy that selects it (team-a) lists it in spec.podIdentities`,
			wantLookups: 1,
		},
		{
			name:        "a policy that does not select the namespace changes nothing",
			policies:    []policy.Object{{Name: "team-a", Spec: teamAPolicy}},
			nsLabels:    map[string]string{"team": "b"},
			pod:         tutorial,
			want:        tutorialInjected,
			wantLookups: 1,
		},
		{
			name:     "an allowed pod is injected as before",
			policies: []policy.Object{{Name: "team-a", Spec: withVaults(teamAPolicy, "az-key-vault-*")}},
			nsLabels: map[string]string{"team": "a"},
			pod:      tutorial, want: tutorialInjected, wantLookups: 1,
		},
		{
			name:     "an Audit policy allows and warns",
			policies: []policy.Object{{Name: "team-a", Spec: audit(teamAPolicy)}},
			nsLabels: map[string]string{"team": "a"},
			pod:      tutorial, want: tutorialInjected, wantLookups: 1,
			wantWarnings: []string{`allowed, but KeyVaultAccessPolicy team-a (Audit) would refuse it: namespace "default" may not use vault "az-key-vault-demo": no KeyVaultAccessPolicy that selects it (team-a) lists it in spec.vaults`},
			wantAudit:    []string{policy.FieldVaults},
		},
		{
			name:         "a pinned identity beats the pod's annotation",
			policies:     []policy.Object{{Name: "team-a", Spec: pinned(withVaults(teamAPolicy, "*"), policy.Identity{WorkloadIdentityClientID: clientID})}},
			nsLabels:     map[string]string{"team": "a"},
			pod:          pod(tutorialAnnotations(), "app"),
			want:         injected(pod(tutorialAnnotations(), "app"), "", csiVolume(workloadAttrs("az-key-vault-demo", tenant, clientID, tutorialObjects)), "/mnt/secrets-store", "app"),
			wantWarnings: []string{`the pod's kvinject.io/identity "azure-kv" is not used: KeyVaultAccessPolicy team-a pins workload identity client ID "6b9e2a55-6c0b-4a1f-9a8e-2f1f6f1d9c01" for namespace "default"`},
			wantLookups:  1,
		},
		{
			name:         "a pinned identity serves a pod that names none",
			policies:     []policy.Object{{Name: "team-a", Spec: pinned(withVaults(teamAPolicy, "*"), policy.Identity{PodIdentity: "team-a-app"})}},
			nsLabels:     map[string]string{"team": "a"},
			pod:          customSA,
			want:         injected(customSA, "team-a-app", csiVolume(podIdentityAttrs("az-key-vault-demo", tenant, tutorialObjects)), "/mnt/secrets-store", "app"),
			wantWarnings: []string{`using AAD Pod Identity "team-a-app", pinned for namespace "default" by KeyVaultAccessPolicy team-a`},
			wantLookups:  1,
		},
		{
			name:        "policies that cannot be read refuse",
			unreadable:  true,
			pod:         tutorial,
			wantDeny:    `KeyVaultAccessPolicies cannot be read (the informer has not synced), so kvinject allows nothing until they can`,
			wantLookups: 1,
		},
		{
			name:        "a copied injected pod is held to this namespace's policies",
			policies:    []policy.Object{{Name: "team-a", Spec: teamAPolicy}},
			nsLabels:    map[string]string{"team": "a"},
			pod:         tutorialInjected,
			wantDeny:    `kvinject.io/vault: namespace "default" may not use vault "az-key-vault-demo": no KeyVaultAccessPolicy that selects it (team-a) lists it in spec.vaults`,
			wantLookups: 1,
		},
		{
			name:      "pod annotations win over namespace and cluster",
			config:    func(c *Config) { c.Vault, c.TenantID, c.Identity = "cluster-vault", tenant2, "cluster-id" },
			namespace: map[string]string{contract.AnnotationVault: "ns-vault", contract.AnnotationIdentity: "ns-id"},
			pod:       tutorial, want: tutorialInjected,
		},
		{
			name: "workload identity from the pod's client-id",
			pod:  pod(with(tutorialAnnotations(), contract.AnnotationIdentity, "-", contract.AnnotationClientID, clientID), "app"),
			want: injected(pod(with(tutorialAnnotations(), contract.AnnotationIdentity, "-", contract.AnnotationClientID, clientID), "app"), "",
				csiVolume(workloadAttrs("az-key-vault-demo", tenant, clientID, tutorialObjects)), "/mnt/secrets-store", "app"),
		},
		{
			name:         "workload identity from the service account",
			pod:          customSA,
			sa:           map[string]map[string]string{"default/workload": {contract.AnnotationWorkloadClientID: clientID}},
			want:         injected(customSA, "", csiVolume(workloadAttrs("az-key-vault-demo", tenant, clientID, tutorialObjects)), "/mnt/secrets-store", "app"),
			wantWarnings: []string{`kvinject.io/client-id: using "6b9e2a55-6c0b-4a1f-9a8e-2f1f6f1d9c01" from service account "workload"`},
			wantLookups:  2,
		},
		{
			name:        "no identity at all",
			pod:         customSA,
			wantDeny:    `no identity: annotate the pod with kvinject.io/identity: <AAD Pod Identity selector> or kvinject.io/client-id: <workload identity client ID>, or annotate its service account "workload" with azure.workload.identity/client-id: <client ID>`,
			wantLookups: 2,
		},
		{
			name:     "both identity and client-id",
			pod:      pod(with(tutorialAnnotations(), contract.AnnotationClientID, clientID), "app"),
			wantDeny: `kvinject.io/identity: the pod sets both kvinject.io/identity (AAD Pod Identity) and kvinject.io/client-id (workload identity); keep the one the pod uses`,
		},
		{
			name:     "an empty identity annotation",
			pod:      pod(with(tutorialAnnotations(), contract.AnnotationIdentity, ""), "app"),
			wantDeny: `kvinject.io/identity: the selector is empty: write the AzureIdentityBinding's selector, or remove the annotation to use the namespace's or the cluster's identity`,
		},
		{
			name:     "client-id that is not a GUID",
			pod:      pod(with(tutorialAnnotations(), contract.AnnotationIdentity, "-", contract.AnnotationClientID, "my-app"), "app"),
			wantDeny: `kvinject.io/client-id: "my-app" is not a client ID: use the identity's application (client) ID, a GUID like 00000000-0000-0000-0000-000000000000`,
		},
		{
			name:        "service account client-id that is not a GUID",
			pod:         customSA,
			sa:          map[string]map[string]string{"default/workload": {contract.AnnotationWorkloadClientID: "nope"}},
			wantDeny:    `service account "workload": azure.workload.identity/client-id: "nope" is not a client ID: use the identity's application (client) ID, a GUID like 00000000-0000-0000-0000-000000000000`,
			wantLookups: 2,
		},
		{
			name:        "no vault anywhere",
			pod:         pod(with(tutorialAnnotations(), contract.AnnotationVault, "-"), "app"),
			wantDeny:    `kvinject.io/vault: no Key Vault: annotate the pod or namespace "default" with kvinject.io/vault, or set vault in the cluster configuration`,
			wantLookups: 1,
		},
		{
			name:        "no tenant anywhere",
			pod:         pod(with(tutorialAnnotations(), contract.AnnotationTenantID, "-"), "app"),
			wantDeny:    `kvinject.io/tenant-id: no tenant: annotate the pod or namespace "default" with kvinject.io/tenant-id, or set tenantId in the cluster configuration`,
			wantLookups: 1,
		},
		{
			name:     "pod for Windows nodes by spec.os",
			pod:      windowsOS,
			wantDeny: `the pod can only run on Windows nodes (spec.os.name is windows), and kvinject's node plugin serves Linux nodes only, so its secrets volume would never mount; run the pod on Linux nodes or remove kvinject.io/secrets`,
		},
		{
			name:     "pod for Windows nodes by nodeSelector",
			pod:      windowsSelector,
			wantDeny: `the pod can only run on Windows nodes (its nodeSelector requires kubernetes.io/os=windows), and kvinject's node plugin serves Linux nodes only, so its secrets volume would never mount; run the pod on Linux nodes or remove kvinject.io/secrets`,
		},
		{
			name:     "pod for Windows nodes by required affinity",
			pod:      windowsAffinity,
			wantDeny: `the pod can only run on Windows nodes (its required node affinity admits no Linux node), and kvinject's node plugin serves Linux nodes only, so its secrets volume would never mount; run the pod on Linux nodes or remove kvinject.io/secrets`,
		},
		{
			name: "pod whose affinity admits Linux too",
			pod:  eitherOS,
			want: injected(eitherOS, "azure-kv", csiVolume(podIdentityAttrs("az-key-vault-demo", tenant, tutorialObjects)), "/mnt/secrets-store", "iis"),
		},
		{
			name:     "vault name with an underscore",
			pod:      pod(with(tutorialAnnotations(), contract.AnnotationVault, "my_vault"), "app"),
			wantDeny: `kvinject.io/vault: "my_vault" is not a Key Vault name: it may hold only letters, digits and '-'`,
		},
		{
			name:     "selector that is not a label value",
			pod:      pod(with(tutorialAnnotations(), contract.AnnotationIdentity, "azure kv"), "app"),
			wantDeny: `kvinject.io/identity: "azure kv" is not a selector: it becomes the aadpodidbinding label, whose value holds only letters, digits, '-', '_' and '.'`,
		},
		{
			name:      "namespace lookup failure is an error, not a denial",
			pod:       pod(map[string]string{contract.AnnotationSecrets: "DatabaseLogin"}, "app"),
			lookupErr: errors.New("connection refused"),
			wantErr:   `read namespace "default": connection refused`, wantLookups: 1,
		},
		{
			name: "init containers get the mount",
			pod:  withInit,
			want: injected(withInit, "azure-kv", csiVolume(podIdentityAttrs("az-key-vault-demo", tenant, tutorialObjects)), "/mnt/secrets-store", "migrate", "app"),
		},
		{
			name: "kvinject.io/containers selects one of three",
			pod:  threeContainers,
			want: injected(threeContainers, "azure-kv", csiVolume(podIdentityAttrs("az-key-vault-demo", tenant, tutorialObjects)), "/mnt/secrets-store", "app"),
			wantWarnings: []string{
				`kvinject.io/containers: container "proxy" is not listed, so it does not get the secrets`,
				`kvinject.io/containers: container "logger" is not listed, so it does not get the secrets`,
			},
		},
		{
			name:     "kvinject.io/containers names a container the pod lacks",
			pod:      pod(with(tutorialAnnotations(), contract.AnnotationContainers, "app, web"), "proxy", "app"),
			wantDeny: `kvinject.io/containers: the pod has no container "web"; its containers are proxy, app`,
		},
		{
			name: "custom mount path",
			pod:  pod(with(tutorialAnnotations(), contract.AnnotationMountPath, "/etc/app/secrets"), "nginx"),
			want: injected(pod(with(tutorialAnnotations(), contract.AnnotationMountPath, "/etc/app/secrets"), "nginx"), "azure-kv",
				csiVolume(podIdentityAttrs("az-key-vault-demo", tenant, tutorialObjects)), "/etc/app/secrets", "nginx"),
		},
		{
			name:     "relative mount path",
			pod:      pod(with(tutorialAnnotations(), contract.AnnotationMountPath, "secrets"), "nginx"),
			wantDeny: `kvinject.io/mount-path: "secrets" is not an absolute path`,
		},
		{
			name:     "unclean mount path",
			pod:      pod(with(tutorialAnnotations(), contract.AnnotationMountPath, "/mnt/../etc"), "nginx"),
			wantDeny: `kvinject.io/mount-path: "/mnt/../etc" is not a clean path: write "/etc"`,
		},
		{
			name: "existing labels, volumes and mounts are kept",
			pod:  otherMounts,
			want: injected(otherMounts, "azure-kv", csiVolume(podIdentityAttrs("az-key-vault-demo", tenant, tutorialObjects)), "/mnt/secrets-store", "nginx"),
		},
		{
			name: "label added beside other labels",
			pod:  withLabels,
			want: injected(withLabels, "azure-kv", csiVolume(podIdentityAttrs("az-key-vault-demo", tenant, tutorialObjects)), "/mnt/secrets-store", "nginx"),
		},
		{
			name: "matching aadpodidbinding label is kept",
			pod:  labelled,
			want: injected(labelled, "azure-kv", csiVolume(podIdentityAttrs("az-key-vault-demo", tenant, tutorialObjects)), "/mnt/secrets-store", "nginx"),
		},
		{
			name:     "conflict: a different aadpodidbinding label",
			pod:      otherLabel,
			wantDeny: `kvinject.io/identity: the pod's label aadpodidbinding="other" differs from the identity "azure-kv"; remove the label or make them equal`,
		},
		{
			name:     "conflict: a container already mounts something at the mount path",
			pod:      mountConflict,
			wantDeny: `kvinject.io/mount-path: container "nginx" already mounts volume "data" at /mnt/secrets-store; set kvinject.io/mount-path to another path or remove that mount`,
		},
		{
			name: "a Secrets Store CSI volume at the mount path gives way, and is left out once unmounted",
			pod:  halfMigrated, want: halfMigratedWant,
			wantWarnings: []string{
				`container "nginx" mounted the Secrets Store CSI driver's volume "secrets-store-inline" at /mnt/secrets-store; kvinject's volume takes its place there, as kvinject.io/secrets asks: remove that mount (or kvinject.io/secrets to keep the Secrets Store volume)`,
				`container "logger" mounted the Secrets Store CSI driver's volume "secrets-store-inline" at /mnt/secrets-store; kvinject's volume takes its place there, as kvinject.io/secrets asks: remove that mount (or kvinject.io/secrets to keep the Secrets Store volume)`,
				`volume "secrets-store-inline" of the Secrets Store CSI driver is no longer mounted by any container and is left out of the pod: remove it from the pod template`,
			},
		},
		{
			name: "a Secrets Store CSI volume still mounted elsewhere stays",
			pod:  stillUsed, want: stillUsedWant,
			wantWarnings: []string{
				`kvinject.io/containers: container "logger" is not listed, so it does not get the secrets`,
				`container "nginx" mounted the Secrets Store CSI driver's volume "secrets-store-inline" at /mnt/secrets-store; kvinject's volume takes its place there, as kvinject.io/secrets asks: remove that mount (or kvinject.io/secrets to keep the Secrets Store volume)`,
			},
		},
		{
			name:     "conflict: a Secrets Store CSI volume's subPath at the mount path",
			pod:      subPath,
			wantDeny: `kvinject.io/mount-path: container "nginx" already mounts volume "secrets-store-inline" at /mnt/secrets-store; set kvinject.io/mount-path to another path or remove that mount`,
		},
		{
			name:     "conflict: a foreign volume named kvinject-secrets",
			pod:      foreignVolume,
			wantDeny: `the pod already has a volume named "kvinject-secrets" that kvinject did not write; rename that volume`,
		},
		{
			name: "the full grammar",
			pod:  invalid(full),
			want: injected(invalid(full), "azure-kv", csiVolume(podIdentityAttrs("az-key-vault-demo", tenant, fullObjects)), "/mnt/secrets-store", "nginx"),
		},
		{name: "invalid: bad type", pod: invalid("DatabaseLogin, blob:DatabasePassword"),
			wantDeny: `kvinject.io/secrets: entry 2 "blob:DatabasePassword": "blob" is not an object type: use secret, key or cert`},
		{name: "invalid: bad name characters", pod: invalid("Database_Login"),
			wantDeny: `kvinject.io/secrets: entry 1 "Database_Login": the name "Database_Login" has '_'; Key Vault names use only letters, digits and '-'`},
		{name: "invalid: 128-character name", pod: invalid(long),
			wantDeny: `kvinject.io/secrets: entry 1 "` + long + `": the name is 128 characters long; Key Vault allows at most 127`},
		{name: "invalid: bad version", pod: invalid("DatabaseLogin@v1"),
			wantDeny: `kvinject.io/secrets: entry 1 "DatabaseLogin@v1": the version "v1" is not 32 hexadecimal digits`},
		{name: "invalid: alias with a slash", pod: invalid("DatabaseLogin=../etc/passwd"),
			wantDeny: `kvinject.io/secrets: entry 1 "DatabaseLogin=../etc/passwd": the file name "../etc/passwd" contains a path separator; use a plain file name`},
		{name: "invalid: alias ..", pod: invalid("DatabaseLogin=.."),
			wantDeny: `kvinject.io/secrets: entry 1 "DatabaseLogin=..": the file name ".." starts with '.'; names starting with '.' are reserved`},
		{name: "invalid: alias ..data", pod: invalid("DatabaseLogin=..data"),
			wantDeny: `kvinject.io/secrets: entry 1 "DatabaseLogin=..data": the file name "..data" starts with '.'; names starting with '.' are reserved`},
		{name: "invalid: alias with a leading dot", pod: invalid("DatabaseLogin=.env"),
			wantDeny: `kvinject.io/secrets: entry 1 "DatabaseLogin=.env": the file name ".env" starts with '.'; names starting with '.' are reserved`},
		{name: "invalid: alias with a backslash", pod: invalid(`DatabaseLogin=a\b`),
			wantDeny: `kvinject.io/secrets: entry 1 "DatabaseLogin=a\\b": the file name "a\\b" contains a path separator; use a plain file name`},
		{name: "invalid: duplicate alias", pod: invalid("DatabaseLogin=db, DatabasePassword=db"),
			wantDeny: `kvinject.io/secrets: entry 2 "DatabasePassword=db": the file name "db" is already used by entry 1; give one of them another name with "=alias"`},
		{name: "invalid: duplicate name without alias", pod: invalid("DatabaseLogin, secret:DatabaseLogin"),
			wantDeny: `kvinject.io/secrets: entry 2 "secret:DatabaseLogin": the file name "DatabaseLogin" is already used by entry 1; give one of them another name with "=alias"`},
		{name: "invalid: unknown option", pod: invalid("DatabaseLogin;owner=1000"),
			wantDeny: `kvinject.io/secrets: entry 1 "DatabaseLogin;owner=1000": "owner" is not an option: use format, encoding or mode`},
		{name: "invalid: mode below 0400", pod: invalid("DatabaseLogin;mode=0200"),
			wantDeny: `kvinject.io/secrets: entry 1 "DatabaseLogin;mode=0200": the mode "0200" is not an octal number between 0400 and 0777`},
		{name: "invalid: mode above 0777", pod: invalid("DatabaseLogin;mode=1777"),
			wantDeny: `kvinject.io/secrets: entry 1 "DatabaseLogin;mode=1777": the mode "1777" is not an octal number between 0400 and 0777`},
		{name: "invalid: mode not octal", pod: invalid("DatabaseLogin;mode=0489"),
			wantDeny: `kvinject.io/secrets: entry 1 "DatabaseLogin;mode=0489": the mode "0489" is not an octal number between 0400 and 0777`},
		{name: "invalid: bad format", pod: invalid("DatabaseLogin;format=der"),
			wantDeny: `kvinject.io/secrets: entry 1 "DatabaseLogin;format=der": format "der" is not a format: use pem or pfx`},
		{name: "invalid: pfx of a certificate", pod: invalid("cert:web;format=pfx"),
			wantDeny: `kvinject.io/secrets: entry 1 "cert:web;format=pfx": pfx needs the private key, which only the certificate's secret holds: use type secret for "web"`},
		{name: "invalid: encoding of a key", pod: invalid("key:k;encoding=hex"),
			wantDeny: `kvinject.io/secrets: entry 1 "key:k;encoding=hex": hex applies to secrets only, not to a key`},
		{name: "invalid: option given twice", pod: invalid("a;mode=0400;mode=0440"),
			wantDeny: `kvinject.io/secrets: entry 1 "a;mode=0400;mode=0440": the option "mode" is given twice`},
		{name: "invalid: empty entry", pod: invalid("a,,b"),
			wantDeny: `kvinject.io/secrets: entry 2 "": the entry is empty: remove the extra ','`},
		{name: "invalid: empty list", pod: invalid(" \n "),
			wantDeny: `kvinject.io/secrets: the list is empty: name at least one Key Vault object, for example "DatabaseLogin=DATABASE_LOGIN"`},
		{name: "invalid: too many entries", config: func(c *Config) { c.MaxEntries = 3 }, pod: invalid("a,b,c,d"),
			wantDeny: `kvinject.io/secrets: the list has 4 entries; at most 3 are allowed (maxEntries of the cluster configuration)`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			config := DefaultConfig()
			if tc.config != nil {
				tc.config(&config)
			}
			if err := config.Validate(); err != nil {
				t.Fatalf("config: %v", err)
			}
			lookup := &fakeLookup{
				namespaces:      map[string]map[string]string{"default": tc.namespace},
				namespaceLabels: map[string]map[string]string{"default": tc.nsLabels},
				serviceAccounts: tc.sa,
				err:             tc.lookupErr,
			}
			policies := StaticPolicies(policy.NewSet(tc.policies))
			if tc.unreadable {
				policies = StaticPolicies(policy.Unreadable(errors.New("the informer has not synced")))
			}
			original := tc.pod.DeepCopy()
			got, err := NewMutator(config, lookup, policies).Mutate(t.Context(), tc.pod, "default")

			if diff := cmp.Diff(original, tc.pod); diff != "" {
				t.Fatalf("Mutate modified its input (-before +after):\n%s", diff)
			}
			if lookup.calls != tc.wantLookups {
				t.Errorf("lookups = %d, want %d", lookup.calls, tc.wantLookups)
			}
			switch {
			case tc.wantDeny != "":
				var d *Denial
				if !errors.As(err, &d) {
					t.Fatalf("err = %v, want denial %q", err, tc.wantDeny)
				}
				if d.Error() != tc.wantDeny {
					t.Fatalf("denial:\n got %s\nwant %s", d.Error(), tc.wantDeny)
				}
				if (d.Policy != nil) != (tc.policies != nil || tc.unreadable) {
					t.Fatalf("denial.Policy = %v", d.Policy)
				}
				return
			case tc.wantErr != "":
				var d *Denial
				if err == nil || errors.As(err, &d) || err.Error() != tc.wantErr {
					t.Fatalf("err = %v, want non-denial error %q", err, tc.wantErr)
				}
				return
			case err != nil:
				t.Fatalf("Mutate: %v", err)
			}
			if diff := cmp.Diff(tc.wantWarnings, got.Warnings); diff != "" {
				t.Errorf("warnings (-want +got):\n%s", diff)
			}
			var auditFields []string
			if got.Audit != nil {
				for _, v := range got.Audit.Violations {
					auditFields = append(auditFields, v.Field)
				}
			}
			if diff := cmp.Diff(tc.wantAudit, auditFields); diff != "" {
				t.Errorf("audit fields (-want +got):\n%s", diff)
			}
			if tc.want == nil {
				if got.Outcome != Unchanged || got.Pod != tc.pod || len(got.Patch) != 0 {
					t.Fatalf("got %s with %d operations, want unchanged", got.Outcome, len(got.Patch))
				}
				return
			}
			if got.Outcome != Injected {
				t.Fatalf("outcome = %s, want injected", got.Outcome)
			}
			if diff := cmp.Diff(tc.want, got.Pod); diff != "" {
				t.Fatalf("mutated pod (-want +got):\n%s", diff)
			}
			assertPatch(t, tc.pod, got)

			// A second pass over the result is a no-op (reinvocation, idempotency).
			again, err := NewMutator(config, lookup, policies).Mutate(t.Context(), got.Pod, "default")
			if err != nil || again.Outcome != Unchanged {
				t.Fatalf("second pass: %v, %v", again, err)
			}
		})
	}
}

// assertPatch proves that the operations Mutate built apply to the original pod's JSON
// to give exactly the mutated pod, and agree with the library's diff
// (admission.PatchResponseFromRaw).
func assertPatch(t *testing.T, original *corev1.Pod, got *Result) {
	t.Helper()
	before, err := json.Marshal(original)
	if err != nil {
		t.Fatal(err)
	}
	after, err := json.Marshal(got.Pod)
	if err != nil {
		t.Fatal(err)
	}
	ours := applyPatch(t, before, got.Patch)
	lib := admission.PatchResponseFromRaw(before, after)
	theirs := applyPatch(t, before, lib.Patches)
	for name, doc := range map[string][]byte{"our patch": ours, "library patch": theirs} {
		var p corev1.Pod
		if err := json.Unmarshal(doc, &p); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if diff := cmp.Diff(got.Pod, &p); diff != "" {
			t.Fatalf("%s applied to the original differs from the mutated pod (-want +got):\n%s", name, diff)
		}
	}
}

func applyPatch(t *testing.T, doc []byte, ops any) []byte {
	t.Helper()
	raw, err := json.Marshal(ops)
	if err != nil {
		t.Fatal(err)
	}
	patch, err := jsonpatch.DecodePatch(raw)
	if err != nil {
		t.Fatalf("decode patch %s: %v", raw, err)
	}
	out, err := patch.Apply(doc)
	if err != nil {
		t.Fatalf("apply patch %s: %v", raw, err)
	}
	return out
}

func TestTutorialObjectsAttribute(t *testing.T) {
	objects, err := ParseSecrets("DatabaseLogin=DATABASE_LOGIN, DatabasePassword=DATABASE_PASSWORD", contract.DefaultMaxObjects)
	if err != nil {
		t.Fatal(err)
	}
	got, err := contract.MarshalObjects(objects)
	if err != nil {
		t.Fatal(err)
	}
	if got != tutorialObjects {
		t.Fatalf("objects attribute:\n%s\nwant:\n%s", got, tutorialObjects)
	}
	back, err := contract.ParseObjects(got, contract.DefaultMaxObjects)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(objects, back); diff != "" {
		t.Fatalf("round trip (-parsed +reparsed):\n%s", diff)
	}
}
