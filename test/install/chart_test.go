package install

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"sigs.k8s.io/yaml"

	"github.com/kvinject/kvinject/internal/chartrender"
	"github.com/kvinject/kvinject/internal/testkit"
	"github.com/kvinject/kvinject/pkg/contract"
	"github.com/kvinject/kvinject/test/framework"
)

// UPDATE_GOLDEN=1 rewrites the golden files under testdata from the current chart.
var updateGolden = os.Getenv("UPDATE_GOLDEN") != ""

func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := testkit.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	return root
}

func chartDir(t *testing.T) string {
	t.Helper()
	return filepath.Join(repoRoot(t), chartrender.ChartDir)
}

func loadValues(t *testing.T, file string) map[string]any {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var v map[string]any
	if err := yaml.Unmarshal(b, &v); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	return v
}

func render(t *testing.T, opts chartrender.Options) []chartrender.Document {
	t.Helper()
	opts.ChartDir = chartDir(t)
	docs, err := chartrender.Render(opts)
	if err != nil {
		t.Fatal(err)
	}
	return docs
}

func golden(t *testing.T, name string, docs []chartrender.Document) {
	t.Helper()
	var b strings.Builder
	for _, d := range docs {
		b.WriteString("---\n# Source: " + d.Source + "\n" + d.YAML + "\n")
	}
	file := filepath.Join("testdata", name)
	if updateGolden {
		if err := os.WriteFile(file, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(file)
	if err != nil {
		t.Fatalf("%v (run with UPDATE_GOLDEN=1 to create it)", err)
	}
	if string(want) != b.String() {
		t.Errorf("rendering differs from %s; if the change is intended run UPDATE_GOLDEN=1 go test ./test/install -run %s\n%s",
			file, t.Name(), firstDiff(string(want), b.String()))
	}
}

func firstDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	for i := 0; i < len(w) || i < len(g); i++ {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			return "line " + itoa(i+1) + ":\n  want: " + wl + "\n  got:  " + gl
		}
	}
	return ""
}

func itoa(i int) string { return strconv.Itoa(i) }

// TestDefaults renders the default values: the shipped configuration.
func TestDefaults(t *testing.T) {
	docs := render(t, chartrender.Options{})
	golden(t, "default.golden.yaml", docs)
	o := decode(t, docs)
	wcfg, ccfg := checkRelations(t, o, chartrender.Namespace)

	// The names the integration tests and the docs rely on.
	mwc := one(t, "MutatingWebhookConfigurations", o.mutatingWebhooks)
	if mwc.Name != "kvinject" || mwc.Annotations["cert-manager.io/inject-ca-from"] != "kvinject/kvinject-webhook" {
		t.Errorf("MutatingWebhookConfiguration %s inject-ca-from %q", mwc.Name, mwc.Annotations["cert-manager.io/inject-ca-from"])
	}
	wh := mwc.Webhooks[0]
	if wh.Name != "pods.kvinject.io" || *wh.FailurePolicy != "Fail" || *wh.ReinvocationPolicy != "IfNeeded" ||
		*wh.SideEffects != "None" || *wh.TimeoutSeconds != 10 || len(wh.MatchConditions) != 1 ||
		wh.MatchConditions[0].Expression != "has(object.metadata.annotations) && 'kvinject.io/secrets' in object.metadata.annotations" {
		t.Errorf("webhook %+v differs from the contract", wh)
	}
	if wcfg.Cluster.DriverName != "secrets-store.kvinject.io" || ccfg.DriverName != "secrets-store.kvinject.io" {
		t.Errorf("driver names %s, %s", wcfg.Cluster.DriverName, ccfg.DriverName)
	}

	// Webhook pods: 2 replicas spread over nodes, PDB, hardened.
	dep := one(t, "Deployments", o.deployments)
	if *dep.Spec.Replicas != 2 {
		t.Errorf("webhook replicas %d, want 2", *dep.Spec.Replicas)
	}
	pdb := one(t, "PodDisruptionBudgets", o.pdbs)
	if pdb.Spec.MinAvailable == nil || pdb.Spec.MinAvailable.IntValue() != 1 {
		t.Errorf("PDB minAvailable %v", pdb.Spec.MinAvailable)
	}
	spec := dep.Spec.Template.Spec
	if len(spec.TopologySpreadConstraints) != 1 || spec.TopologySpreadConstraints[0].TopologyKey != corev1.LabelHostname {
		t.Errorf("topology spread %+v", spec.TopologySpreadConstraints)
	}
	psc, sc := spec.SecurityContext, spec.Containers[0].SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.RunAsUser == nil || *psc.RunAsUser == 0 {
		t.Errorf("webhook pod may run as root: %+v", psc)
	}
	if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
		sc.Capabilities == nil || len(sc.Capabilities.Drop) != 1 || sc.Capabilities.Drop[0] != "ALL" || sc.Privileged != nil {
		t.Errorf("webhook container security context %+v", sc)
	}
	c := spec.Containers[0]
	if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() {
		t.Errorf("webhook has no resource requests")
	}
	if c.LivenessProbe == nil || c.LivenessProbe.HTTPGet.Path != "/healthz" || c.ReadinessProbe == nil || c.ReadinessProbe.HTTPGet.Path != "/readyz" {
		t.Errorf("webhook probes %+v %+v", c.LivenessProbe, c.ReadinessProbe)
	}
	if got := containerPort(t, c, c.ReadinessProbe.HTTPGet.Port.StrVal); wcfg.HealthProbeBindAddress != ":"+itoa(int(got)) {
		t.Errorf("probes on port %d, health served on %s", got, wcfg.HealthProbeBindAddress)
	}
	if wcfg.CertDir != "/etc/kvinject/tls" {
		t.Errorf("cert dir %s", wcfg.CertDir)
	}

	// CSIDriver: what the kubelet must send the plugin.
	drv := one(t, "CSIDrivers", o.csiDrivers)
	checkCSIDriver(t, drv, false)
	if drv.Spec.ServiceAccountTokenInSecrets == nil || !*drv.Spec.ServiceAccountTokenInSecrets {
		t.Errorf("serviceAccountTokenInSecrets %v on Kubernetes %s, want true", drv.Spec.ServiceAccountTokenInSecrets, chartrender.KubeVersion)
	}
	ds := one(t, "DaemonSets", o.daemonSets)
	if csc := ds.Spec.Template.Spec.Containers[0].SecurityContext; csc == nil || csc.Privileged == nil || !*csc.Privileged {
		t.Errorf("node plugin is not privileged: it cannot mount with Bidirectional propagation")
	}
	if !ds.Spec.Template.Spec.HostNetwork {
		t.Errorf("node plugin is not on the host network: it cannot reach NMI at 127.0.0.1:2579")
	}
	daemonSetAvoidsVirtualKubelet(t, ds)
	if dep.Spec.Template.Spec.PriorityClassName != "system-cluster-critical" || ds.Spec.Template.Spec.PriorityClassName != "system-node-critical" {
		t.Errorf("priority classes: webhook %q, node plugin %q", dep.Spec.Template.Spec.PriorityClassName, ds.Spec.Template.Spec.PriorityClassName)
	}
	if len(o.services) != 3 || len(o.serviceMonitors) != 0 || len(o.prometheusRules) != 0 {
		t.Errorf("%d Services, %d ServiceMonitors, %d PrometheusRules by default; want the webhook's and two metrics Services only", len(o.services), len(o.serviceMonitors), len(o.prometheusRules))
	}
	checkMonitoring(t, o, wcfg, ccfg)
	if len(o.crds) != 2 {
		t.Errorf("%d CRDs rendered by default, want the SecretProviderClass and KeyVaultAccessPolicy CRDs", len(o.crds))
	}
	for _, crd := range o.crds {
		if crd.Annotations["helm.sh/resource-policy"] != "keep" {
			t.Errorf("CRD %s lacks helm.sh/resource-policy: keep: uninstalling kvinject would delete the cluster's objects", crd.Name)
		}
	}
	vwc := one(t, "ValidatingWebhookConfigurations", o.validatingWebhooks)
	vw := vwc.Webhooks[0]
	if vwc.Name != "kvinject" || vw.Name != "pod-identity.kvinject.io" || *vw.FailurePolicy != "Fail" || *vw.SideEffects != "None" || len(vw.MatchConditions) != 2 ||
		vw.MatchConditions[0].Expression != "has(object.metadata.labels) && 'aadpodidbinding' in object.metadata.labels" {
		t.Errorf("pod identity check %s %+v differs from the contract", vwc.Name, vw)
	}
	if ccfg.KubeletRoot != "/var/lib/kubelet" || ccfg.Endpoint != "/var/lib/kubelet/plugins/secrets-store.kvinject.io/csi.sock" ||
		ccfg.RegistrationSocket() != "/var/lib/kubelet/plugins_registry/secrets-store.kvinject.io-reg.sock" || ccfg.TokenAudience != contract.DefaultTokenAudience {
		t.Errorf("node plugin paths: root %s endpoint %s registration %s, audience %s", ccfg.KubeletRoot, ccfg.Endpoint, ccfg.RegistrationSocket(), ccfg.TokenAudience)
	}
}

func checkCSIDriver(t *testing.T, drv *storagev1.CSIDriver, rotation bool) {
	t.Helper()
	s := drv.Spec
	if s.AttachRequired == nil || *s.AttachRequired || s.PodInfoOnMount == nil || !*s.PodInfoOnMount {
		t.Errorf("CSIDriver attachRequired %v podInfoOnMount %v", s.AttachRequired, s.PodInfoOnMount)
	}
	if len(s.VolumeLifecycleModes) != 1 || s.VolumeLifecycleModes[0] != storagev1.VolumeLifecycleEphemeral {
		t.Errorf("CSIDriver modes %v, want [Ephemeral]", s.VolumeLifecycleModes)
	}
	if len(s.TokenRequests) != 1 || s.TokenRequests[0].Audience != "api://AzureADTokenExchange" {
		t.Errorf("CSIDriver tokenRequests %+v", s.TokenRequests)
	}
	if s.RequiresRepublish == nil || *s.RequiresRepublish != rotation {
		t.Errorf("CSIDriver requiresRepublish %v, want %v", s.RequiresRepublish, rotation)
	}
	if s.FSGroupPolicy == nil {
		t.Errorf("CSIDriver has no fsGroupPolicy")
	}
}

// TestCustomValues renders every value changed from its default.
func TestCustomValues(t *testing.T) {
	vals := loadValues(t, filepath.Join("testdata", "custom-values.yaml"))
	docs := render(t, chartrender.Options{ReleaseName: "kv", Namespace: "security", Values: vals})
	golden(t, "custom.golden.yaml", docs)
	o := decode(t, docs)
	wcfg, ccfg := checkRelations(t, o, "security")

	if wcfg.Cluster.Vault != "contoso-kv" || wcfg.Cluster.TenantID != "contoso.onmicrosoft.com" || wcfg.Cluster.Identity != "payments" ||
		wcfg.Cluster.CloudName != "AzureUSGovernmentCloud" || wcfg.Cluster.MountPath != "/var/run/secrets/kv" || wcfg.Cluster.MaxEntries != 16 {
		t.Errorf("webhook cluster defaults from values: %+v", wcfg.Cluster)
	}
	if wcfg.Cluster.DriverName != "kv.contoso.com" || ccfg.DriverName != "kv.contoso.com" {
		t.Errorf("driver name %s / %s", wcfg.Cluster.DriverName, ccfg.DriverName)
	}
	if wcfg.Port != 10250 {
		t.Errorf("webhook port %d", wcfg.Port)
	}
	dep := one(t, "Deployments", o.deployments)
	if dep.Name != "kv-kvinject-webhook" || *dep.Spec.Replicas != 3 {
		t.Errorf("Deployment %s replicas %d", dep.Name, *dep.Spec.Replicas)
	}
	img := dep.Spec.Template.Spec.Containers[0].Image
	if img != "contoso.azurecr.io/kvinject/webhook:1.2.3@sha256:"+strings.Repeat("ab", 32) {
		t.Errorf("webhook image %s", img)
	}
	if len(o.pdbs) != 0 {
		t.Errorf("PDB rendered although disabled")
	}
	mwc := one(t, "MutatingWebhookConfigurations", o.mutatingWebhooks)
	wh := mwc.Webhooks[0]
	if *wh.FailurePolicy != "Ignore" || *wh.TimeoutSeconds != 5 {
		t.Errorf("failurePolicy %s timeout %d", *wh.FailurePolicy, *wh.TimeoutSeconds)
	}
	vals2 := wh.NamespaceSelector.MatchExpressions[0].Values
	if strings.Join(vals2, ",") != "security,kube-system,gatekeeper-system" {
		t.Errorf("excluded namespaces %v", vals2)
	}
	drv := one(t, "CSIDrivers", o.csiDrivers)
	checkCSIDriver(t, drv, true)
	if *drv.Spec.FSGroupPolicy != storagev1.NoneFSGroupPolicy {
		t.Errorf("fsGroupPolicy %s", *drv.Spec.FSGroupPolicy)
	}
	if len(o.crds) != 1 || o.crds[0].Spec.Group != "kvinject.io" {
		t.Errorf("%d CRDs rendered with secretProviderClassCRD.install=false, want the KeyVaultAccessPolicy CRD only", len(o.crds))
	}
	if len(o.validatingWebhooks) != 0 {
		t.Errorf("pod identity check rendered with policy.podIdentityLabelCheck.enabled=false")
	}
	if ccfg.KubeletRoot != "/data/kubelet" || ccfg.TmpfsSize != "8Mi" || ccfg.MetricsBindAddress != ":9095" {
		t.Errorf("node plugin config %+v", ccfg)
	}
	ds := one(t, "DaemonSets", o.daemonSets)
	if ds.Spec.Template.Spec.ImagePullSecrets[0].Name != "acr-pull" || dep.Spec.Template.Spec.ImagePullSecrets[0].Name != "acr-pull" {
		t.Errorf("imagePullSecrets not applied")
	}
	if ds.Spec.Template.Spec.HostNetwork || ds.Spec.Template.Spec.DNSPolicy != "" {
		t.Errorf("podIdentity.enabled=false: the node plugin is still on the host network")
	}
	if psc := dep.Spec.Template.Spec.SecurityContext; psc == nil || psc.RunAsUser == nil || *psc.RunAsUser != 10001 {
		t.Errorf("webhook.podSecurityContext not applied: %+v", psc)
	}
	if sc := ds.Spec.Template.Spec.Containers[0].SecurityContext; sc == nil || sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("csi.securityContext not applied: %+v", sc)
	}
	if ds.Spec.Template.Spec.Affinity != nil {
		t.Errorf("csi.affinity {} still renders an affinity: %+v", ds.Spec.Template.Spec.Affinity)
	}
	if len(o.services) != 1 {
		t.Errorf("metrics.service.enabled=false: %d Services, want the webhook's only", len(o.services))
	}
}

// TestUserSuppliedCertificate renders the alternative to cert-manager: a Secret the
// user provides and its CA bundle.
func TestUserSuppliedCertificate(t *testing.T) {
	docs := render(t, chartrender.Options{Values: map[string]any{"webhook": map[string]any{"certificate": map[string]any{
		"source": "secret", "secretName": "my-webhook-tls", "caBundle": "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCg==",
	}}}})
	o := decode(t, docs)
	checkRelations(t, o, chartrender.Namespace)
	if len(o.certificates) != 0 || len(o.issuers) != 0 {
		t.Errorf("cert-manager objects rendered with a user-supplied Secret")
	}
	mwc := one(t, "MutatingWebhookConfigurations", o.mutatingWebhooks)
	if _, ok := mwc.Annotations["cert-manager.io/inject-ca-from"]; ok {
		t.Errorf("inject-ca-from set with a user-supplied CA bundle")
	}
	if string(mwc.Webhooks[0].ClientConfig.CABundle) != "-----BEGIN CERTIFICATE-----\n" {
		t.Errorf("caBundle %q", mwc.Webhooks[0].ClientConfig.CABundle)
	}
	dep := one(t, "Deployments", o.deployments)
	found := false
	for _, v := range dep.Spec.Template.Spec.Volumes {
		found = found || v.Secret != nil && v.Secret.SecretName == "my-webhook-tls"
	}
	if !found {
		t.Errorf("the webhook does not mount my-webhook-tls")
	}
}

// TestOlderKubernetes: serviceAccountTokenInSecrets exists from Kubernetes 1.35 on;
// older API servers would reject the field.
func TestOlderKubernetes(t *testing.T) {
	o := decode(t, render(t, chartrender.Options{KubeVersion: "v1.33.4"}))
	if drv := one(t, "CSIDrivers", o.csiDrivers); drv.Spec.ServiceAccountTokenInSecrets != nil {
		t.Errorf("serviceAccountTokenInSecrets rendered for Kubernetes 1.33")
	}
}

// TestValuesRejected: the schema and the templates refuse values that would install
// something broken, with a message naming the value.
func TestValuesRejected(t *testing.T) {
	for _, tc := range []struct {
		name   string
		values string
		want   string
	}{
		{"unknown value", "webhook: {replica: 3}", "replica"},
		{"bad driver name", "driverName: Secrets_Store", "driverName"},
		{"bad cloud", "webhook: {defaults: {cloudName: Mars}}", "cloudName"},
		{"Azure Stack, which both programs refuse", "webhook: {defaults: {cloudName: AzureStackCloud}}", "cloudName"},
		{"bad log level", "csi: {logLevel: loud}", "logLevel"},
		{"plugin bound below the webhook's", "csi: {maxObjectsPerVolume: 10}", "csi.maxObjectsPerVolume (10) is below webhook.defaults.maxEntries (64)"},
		{"bad vault", "webhook: {defaults: {vault: -x}}", "vault"},
		{"bad tenant", "webhook: {defaults: {tenantId: not a tenant}}", "tenantId"},
		{"failure policy", "webhook: {failurePolicy: Maybe}", "failurePolicy"},
		{"timeout", "webhook: {timeoutSeconds: 31}", "timeoutSeconds"},
		{"secret without name", "webhook: {certificate: {source: secret, caBundle: QQ==}}", "secretName"},
		{"secret without CA", "webhook: {certificate: {source: secret, secretName: x}}", "caBundle"},
		{"fsGroupPolicy", "csi: {fsGroupPolicy: Always}", "fsGroupPolicy"},
		{"the old lookup mode", "csi: {secretProviderClassCRD: {install: auto}}", "/csi/secretProviderClassCRD/install': got string, want boolean"},
		{"ServiceMonitor without metrics Services", "metrics: {service: {enabled: false}, serviceMonitor: {enabled: true}}", "metrics.serviceMonitor.enabled needs metrics.service.enabled"},
		{"digest", "csi: {image: {digest: latest}}", "digest"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var vals map[string]any
			if err := yaml.Unmarshal([]byte(tc.values), &vals); err != nil {
				t.Fatal(err)
			}
			_, err := chartrender.Render(chartrender.Options{ChartDir: chartDir(t), Values: vals})
			if err == nil {
				t.Fatalf("values %s rendered", tc.values)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error does not name %s: %v", tc.want, err)
			}
		})
	}
}

// TestLint is `helm lint --strict` through the SDK, with default and custom values.
func TestLint(t *testing.T) {
	for name, vals := range map[string]map[string]any{
		"defaults": nil,
		"custom":   loadValues(t, filepath.Join("testdata", "custom-values.yaml")),
	} {
		if msgs := chartrender.Lint(chartDir(t), vals); len(msgs) > 0 {
			t.Errorf("helm lint --strict (%s values):\n%s", name, strings.Join(msgs, "\n"))
		}
	}
}

// TestShippedManifestsCurrent: deploy/ is exactly the chart's rendering (make
// manifests writes it), and the integration tests find the one webhook registration.
func TestShippedManifestsCurrent(t *testing.T) {
	diffs, err := chartrender.Diff(repoRoot(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range diffs {
		t.Errorf("%s: run 'make manifests'", d)
	}
	if _, err := framework.ShippedMutatingWebhook(); err != nil {
		t.Error(err)
	}
}

// TestDriverNameSchemaMatchesContract: the chart accepts exactly the driver names both
// programs accept (contract.ValidateDriverName), so no install renders a name one of
// them would refuse at start.
func TestDriverNameSchemaMatchesContract(t *testing.T) {
	for _, name := range []string{"kv2", "secrets-store.kvinject.io", "9kv.example.com", "Kv.Io", "Secrets_Store", "-kv", "kv.", "k",
		strings.Repeat("a", 63), strings.Repeat("a", 64)} {
		_, err := chartrender.Render(chartrender.Options{ChartDir: chartDir(t), Values: map[string]any{"driverName": name}})
		want := contract.ValidateDriverName(name)
		if (err == nil) != (want == nil) {
			t.Errorf("driverName %q: chart error %v, programs' error %v", name, err, want)
		}
	}
}
