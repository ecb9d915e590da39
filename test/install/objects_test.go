package install

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	admissionv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	storagev1 "k8s.io/api/storage/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/yaml"

	"github.com/kvinject/kvinject/internal/chartrender"
	"github.com/kvinject/kvinject/internal/program"
	"github.com/kvinject/kvinject/pkg/apis/kvinject/v1alpha1"
	"github.com/kvinject/kvinject/pkg/csi"
	"github.com/kvinject/kvinject/pkg/mutate"
	"github.com/kvinject/kvinject/pkg/webhook"
	"github.com/kvinject/kvinject/test/framework"
)

// objects are a rendering decoded into typed API objects, by kind.
type objects struct {
	all []metav1.Object

	serviceAccounts     []*corev1.ServiceAccount
	configMaps          []*corev1.ConfigMap
	services            []*corev1.Service
	deployments         []*appsv1.Deployment
	daemonSets          []*appsv1.DaemonSet
	pdbs                []*policyv1.PodDisruptionBudget
	clusterRoles        []*rbacv1.ClusterRole
	clusterRoleBindings []*rbacv1.ClusterRoleBinding
	mutatingWebhooks    []*admissionv1.MutatingWebhookConfiguration
	validatingWebhooks  []*admissionv1.ValidatingWebhookConfiguration
	csiDrivers          []*storagev1.CSIDriver
	crds                []*apiextensionsv1.CustomResourceDefinition
	issuers             []*cmapi.Issuer
	certificates        []*cmapi.Certificate
	serviceMonitors     []*monitoringv1.ServiceMonitor
	prometheusRules     []*monitoringv1.PrometheusRule
}

// decode strictly decodes every document into its typed Go API: an unknown kind, an
// unknown field or a wrongly typed value fails the test.
func decode(t *testing.T, docs []chartrender.Document) *objects {
	t.Helper()
	o := &objects{}
	for _, d := range docs {
		var head metav1.TypeMeta
		if err := yaml.Unmarshal([]byte(d.YAML), &head); err != nil {
			t.Fatalf("%s: %v", d.Source, err)
		}
		var obj metav1.Object
		switch head.APIVersion + "/" + head.Kind {
		case "v1/ServiceAccount":
			obj = into(t, d, &o.serviceAccounts)
		case "v1/ConfigMap":
			obj = into(t, d, &o.configMaps)
		case "v1/Service":
			obj = into(t, d, &o.services)
		case "apps/v1/Deployment":
			obj = into(t, d, &o.deployments)
		case "apps/v1/DaemonSet":
			obj = into(t, d, &o.daemonSets)
		case "policy/v1/PodDisruptionBudget":
			obj = into(t, d, &o.pdbs)
		case "rbac.authorization.k8s.io/v1/ClusterRole":
			obj = into(t, d, &o.clusterRoles)
		case "rbac.authorization.k8s.io/v1/ClusterRoleBinding":
			obj = into(t, d, &o.clusterRoleBindings)
		case "admissionregistration.k8s.io/v1/MutatingWebhookConfiguration":
			obj = into(t, d, &o.mutatingWebhooks)
		case "admissionregistration.k8s.io/v1/ValidatingWebhookConfiguration":
			obj = into(t, d, &o.validatingWebhooks)
		case "storage.k8s.io/v1/CSIDriver":
			obj = into(t, d, &o.csiDrivers)
		case "apiextensions.k8s.io/v1/CustomResourceDefinition":
			obj = into(t, d, &o.crds)
		case "cert-manager.io/v1/Issuer":
			obj = into(t, d, &o.issuers)
		case "cert-manager.io/v1/Certificate":
			obj = into(t, d, &o.certificates)
		case "monitoring.coreos.com/v1/ServiceMonitor":
			obj = into(t, d, &o.serviceMonitors)
		case "monitoring.coreos.com/v1/PrometheusRule":
			obj = into(t, d, &o.prometheusRules)
		default:
			t.Fatalf("%s: %s %s is not a kind this test knows: add it to decode", d.Source, head.APIVersion, head.Kind)
		}
		o.all = append(o.all, obj)
	}
	return o
}

func into[T any, P interface {
	*T
	metav1.Object
}](t *testing.T, d chartrender.Document, list *[]P) P {
	t.Helper()
	p := P(new(T))
	if err := yaml.UnmarshalStrict([]byte(d.YAML), p); err != nil {
		t.Fatalf("%s: strict decode: %v", d.Source, err)
	}
	*list = append(*list, p)
	return p
}

func one[P interface{ GetName() string }](t *testing.T, what string, list []P) P {
	t.Helper()
	if len(list) != 1 {
		t.Fatalf("rendered %d %s, want 1", len(list), what)
	}
	return list[0]
}

func named[P interface{ GetName() string }](t *testing.T, what, name string, list []P) P {
	t.Helper()
	for _, x := range list {
		if x.GetName() == name {
			return x
		}
	}
	t.Fatalf("no %s named %q", what, name)
	var zero P
	return zero
}

// webhookConfig parses the webhook container's args with the webhook program's own
// flag set (internal/program: its options, the log flags, --version). The --config
// file is read by the caller, from the ConfigMap.
func webhookConfig(t *testing.T, o *objects, c corev1.Container) *webhook.Options {
	t.Helper()
	opts := webhook.NewOptions()
	fs, _, _ := program.NewFlagSet("kvinject-webhook", opts)
	if err := fs.Parse(c.Args); err != nil {
		t.Fatalf("webhook args %q: %v", c.Args, err)
	}
	if len(c.Command) != 0 {
		t.Errorf("webhook container overrides the image's entrypoint: %q", c.Command)
	}
	return opts
}

// csiConfig parses the node plugin container's args with the plugin program's own flag
// set, and validates the result as the program does before it runs.
func csiConfig(t *testing.T, c corev1.Container) *csi.Options {
	t.Helper()
	opts := csi.NewOptions()
	fs, _, _ := program.NewFlagSet("kvinject-csi-node", opts)
	args := make([]string, len(c.Args))
	for i, a := range c.Args {
		args[i] = strings.ReplaceAll(a, "$(NODE_NAME)", "node-1")
	}
	if err := fs.Parse(args); err != nil {
		t.Fatalf("csi-node args %q: %v", c.Args, err)
	}
	if err := opts.Validate(); err != nil {
		t.Errorf("csi-node configuration from the DaemonSet: %v", err)
	}
	return opts
}

// mountFor returns the container's volume mount whose path holds file, and the volume.
func mountFor(t *testing.T, spec corev1.PodSpec, c corev1.Container, file string) (corev1.VolumeMount, corev1.Volume) {
	t.Helper()
	var best corev1.VolumeMount
	for _, m := range c.VolumeMounts {
		if (file == m.MountPath || strings.HasPrefix(file, strings.TrimSuffix(m.MountPath, "/")+"/")) && len(m.MountPath) > len(best.MountPath) {
			best = m
		}
	}
	if best.Name == "" {
		t.Fatalf("container %s mounts nothing at %s", c.Name, file)
	}
	for _, v := range spec.Volumes {
		if v.Name == best.Name {
			return best, v
		}
	}
	t.Fatalf("container %s mounts volume %q, which the pod lacks", c.Name, best.Name)
	return best, corev1.Volume{}
}

func containerPort(t *testing.T, c corev1.Container, name string) int32 {
	t.Helper()
	for _, p := range c.Ports {
		if p.Name == name {
			return p.ContainerPort
		}
	}
	t.Fatalf("container %s has no port named %q", c.Name, name)
	return 0
}

// checkRelations checks what must hold between the rendered objects whatever the
// values: names that refer to each other agree, and the programs' own flag parsing
// accepts the args and lands on the mounted files and declared ports. It returns the
// webhook's and the node plugin's resolved configurations for further checks.
func checkRelations(t *testing.T, o *objects, namespace string) (*webhook.Options, *csi.Options) {
	t.Helper()
	for _, obj := range o.all {
		if obj.GetNamespace() != "" && obj.GetNamespace() != namespace {
			t.Errorf("%s is in namespace %q, not the release's %q", obj.GetName(), obj.GetNamespace(), namespace)
		}
	}

	// --- webhook ---
	dep := one(t, "Deployments", o.deployments)
	pod := dep.Spec.Template.Spec
	if len(pod.Containers) != 1 {
		t.Fatalf("webhook pod has %d containers, want 1", len(pod.Containers))
	}
	c := pod.Containers[0]
	wcfg := webhookConfig(t, o, c)

	// --config is the ConfigMap's config.yaml, and the webhook accepts it.
	cfgMount, cfgVol := mountFor(t, pod, c, wcfg.Config)
	if cfgVol.ConfigMap == nil {
		t.Fatalf("--config %s is not on a ConfigMap volume", wcfg.Config)
	}
	cm := named(t, "ConfigMap", cfgVol.ConfigMap.Name, o.configMaps)
	key := strings.TrimPrefix(wcfg.Config, strings.TrimSuffix(cfgMount.MountPath, "/")+"/")
	data, ok := cm.Data[key]
	if !ok {
		t.Fatalf("ConfigMap %s lacks %s (mounted as --config)", cm.Name, key)
	}
	file := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(file, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := mutate.LoadConfigFile(&wcfg.Cluster, file); err != nil {
		t.Errorf("the webhook rejects the chart's config.yaml: %v", err)
	}
	if err := wcfg.Cluster.Validate(); err != nil {
		t.Errorf("the chart's cluster configuration is invalid: %v", err)
	}

	// The serving certificate: --cert-dir is the TLS Secret's volume.
	_, tlsVol := mountFor(t, pod, c, filepath.Join(wcfg.CertDir, wcfg.CertName))
	if tlsVol.Secret == nil {
		t.Fatalf("--cert-dir %s is not on a Secret volume", wcfg.CertDir)
	}
	if len(tlsVol.Secret.Items) != 0 {
		t.Errorf("TLS volume remaps keys %v; the webhook reads tls.crt and tls.key", tlsVol.Secret.Items)
	}
	if wcfg.CertName != "tls.crt" || wcfg.KeyName != "tls.key" {
		t.Errorf("webhook reads %s/%s; a kubernetes.io/tls Secret holds tls.crt/tls.key", wcfg.CertName, wcfg.KeyName)
	}

	// The Service sends 443 to the container port the webhook listens on, and selects
	// the Deployment's pods.
	svc := named(t, "Services", dep.Name, o.services)
	if len(svc.Spec.Ports) != 1 {
		t.Fatalf("Service has %d ports, want 1", len(svc.Spec.Ports))
	}
	sp := svc.Spec.Ports[0]
	if sp.TargetPort.String() == "" {
		t.Fatal("Service port has no targetPort")
	}
	target := sp.TargetPort.IntVal
	if sp.TargetPort.StrVal != "" {
		target = containerPort(t, c, sp.TargetPort.StrVal)
	}
	if int(target) != wcfg.Port {
		t.Errorf("Service targets port %d, the webhook listens on --port %d", target, wcfg.Port)
	}
	sel, err := metav1.LabelSelectorAsSelector(dep.Spec.Selector)
	if err != nil {
		t.Fatal(err)
	}
	if !sel.Matches(labels.Set(dep.Spec.Template.Labels)) {
		t.Errorf("Deployment selector %v does not match its pod labels", dep.Spec.Selector)
	}
	for k, v := range svc.Spec.Selector {
		if dep.Spec.Template.Labels[k] != v {
			t.Errorf("Service selects %s=%s, which the webhook pods lack", k, v)
		}
	}

	// The registration calls that Service at the handler's path.
	mwc := one(t, "MutatingWebhookConfigurations", o.mutatingWebhooks)
	if len(mwc.Webhooks) != 1 {
		t.Fatalf("MutatingWebhookConfiguration has %d webhooks, want 1", len(mwc.Webhooks))
	}
	wh := mwc.Webhooks[0]
	ref := wh.ClientConfig.Service
	if ref == nil {
		t.Fatal("webhook clientConfig names no Service")
	}
	if ref.Name != svc.Name || ref.Namespace != svc.Namespace {
		t.Errorf("webhook calls Service %s/%s, the chart's is %s/%s", ref.Namespace, ref.Name, svc.Namespace, svc.Name)
	}
	if ref.Path == nil || *ref.Path != webhook.Path {
		t.Errorf("webhook path %v, the handler serves %s", ref.Path, webhook.Path)
	}
	if ref.Port == nil || *ref.Port != sp.Port {
		t.Errorf("webhook calls port %v, the Service listens on %d", ref.Port, sp.Port)
	}
	excluded := map[string]bool{}
	if ns := wh.NamespaceSelector; ns != nil {
		for _, e := range ns.MatchExpressions {
			if e.Key == corev1.LabelMetadataName && e.Operator == metav1.LabelSelectorOpNotIn {
				for _, v := range e.Values {
					excluded[v] = true
				}
			}
		}
	}
	if !excluded[namespace] || !excluded["kube-system"] {
		t.Errorf("namespaceSelector excludes %v; it must exclude the release namespace %s and kube-system", excluded, namespace)
	}

	// The pod identity label check, when rendered, calls the same Service at its path,
	// trusts the same CA and spares the same namespaces.
	for _, vwc := range o.validatingWebhooks {
		if len(vwc.Webhooks) != 1 {
			t.Fatalf("ValidatingWebhookConfiguration has %d webhooks, want 1", len(vwc.Webhooks))
		}
		vw := vwc.Webhooks[0]
		vref := vw.ClientConfig.Service
		if vref == nil || vref.Name != svc.Name || vref.Namespace != svc.Namespace || vref.Path == nil || *vref.Path != webhook.PodIdentityPath ||
			vref.Port == nil || *vref.Port != sp.Port {
			t.Errorf("pod identity check calls %+v, want Service %s/%s port %d path %s", vref, svc.Namespace, svc.Name, sp.Port, webhook.PodIdentityPath)
		}
		if vwc.Annotations["cert-manager.io/inject-ca-from"] != mwc.Annotations["cert-manager.io/inject-ca-from"] ||
			string(vw.ClientConfig.CABundle) != string(wh.ClientConfig.CABundle) {
			t.Errorf("the two webhook configurations trust different CAs")
		}
		if !reflect.DeepEqual(vw.NamespaceSelector, wh.NamespaceSelector) {
			t.Errorf("pod identity check namespaceSelector %+v differs from the mutating webhook's %+v", vw.NamespaceSelector, wh.NamespaceSelector)
		}
		if len(vw.Rules) != 1 || !slices.Equal(vw.Rules[0].Operations, []admissionv1.OperationType{admissionv1.Create, admissionv1.Update}) ||
			!slices.Equal(vw.Rules[0].Resources, []string{"pods"}) {
			t.Errorf("pod identity check rules %+v, want pods CREATE and UPDATE", vw.Rules)
		}
	}

	// The webhook's RBAC: exactly what its informers, the policy status and the audit
	// events need.
	checkRBAC(t, o, dep.Spec.Template.Spec.ServiceAccountName, namespace, []rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"namespaces", "serviceaccounts"}, Verbs: []string{"get", "list", "watch"}},
		{APIGroups: []string{"kvinject.io"}, Resources: []string{"keyvaultaccesspolicies"}, Verbs: []string{"get", "list", "watch"}},
		{APIGroups: []string{"kvinject.io"}, Resources: []string{"keyvaultaccesspolicies/status"}, Verbs: []string{"update", "patch"}},
		{APIGroups: []string{"events.k8s.io"}, Resources: []string{"events"}, Verbs: []string{"create", "patch"}},
	})

	// --- certificate ---
	if len(o.certificates) > 0 {
		inject := mwc.Annotations["cert-manager.io/inject-ca-from"]
		parts := strings.SplitN(inject, "/", 2)
		if len(parts) != 2 {
			t.Fatalf("inject-ca-from %q is not namespace/name", inject)
		}
		crt := named(t, "Certificate", parts[1], o.certificates)
		if crt.Namespace != parts[0] {
			t.Errorf("inject-ca-from names %s, the Certificate is in %s", inject, crt.Namespace)
		}
		if crt.Spec.SecretName != tlsVol.Secret.SecretName {
			t.Errorf("the webhook mounts Secret %s, Certificate %s writes %s", tlsVol.Secret.SecretName, crt.Name, crt.Spec.SecretName)
		}
		for _, dns := range []string{svc.Name + "." + svc.Namespace + ".svc", svc.Name + "." + svc.Namespace + ".svc.cluster.local"} {
			if !slices.Contains(crt.Spec.DNSNames, dns) {
				t.Errorf("Certificate %s DNS names %v lack %s", crt.Name, crt.Spec.DNSNames, dns)
			}
		}
		if !slices.Contains(crt.Spec.Usages, cmapi.UsageServerAuth) {
			t.Errorf("Certificate %s usages %v lack server auth", crt.Name, crt.Spec.Usages)
		}
		// The chain: serving cert <- CA Issuer <- CA Certificate <- self-signed Issuer.
		caIssuer := named(t, "Issuer", crt.Spec.IssuerRef.Name, o.issuers)
		if caIssuer.Spec.CA == nil {
			t.Fatalf("Issuer %s of the serving certificate is not a CA issuer", caIssuer.Name)
		}
		var caCrt *cmapi.Certificate
		for _, c := range o.certificates {
			if c.Spec.SecretName == caIssuer.Spec.CA.SecretName {
				caCrt = c
			}
		}
		if caCrt == nil || !caCrt.Spec.IsCA {
			t.Fatalf("no CA Certificate writes %s, the CA Issuer's Secret", caIssuer.Spec.CA.SecretName)
		}
		root := named(t, "Issuer", caCrt.Spec.IssuerRef.Name, o.issuers)
		if root.Spec.SelfSigned == nil {
			t.Errorf("CA Certificate %s is issued by %s, not a self-signed Issuer", caCrt.Name, root.Name)
		}
		for _, c := range o.certificates {
			if c.Spec.IssuerRef.Kind != "Issuer" || c.Spec.IssuerRef.Group != "cert-manager.io" {
				t.Errorf("Certificate %s refers to %s %s; the chart's chain uses its own Issuers", c.Name, c.Spec.IssuerRef.Group, c.Spec.IssuerRef.Kind)
			}
		}
	} else if len(wh.ClientConfig.CABundle) == 0 {
		t.Error("no Certificate and no caBundle: the API server could not trust the webhook")
	}

	// --- node plugin ---
	drv := one(t, "CSIDrivers", o.csiDrivers)
	if drv.Name != wcfg.Cluster.DriverName {
		t.Errorf("CSIDriver %s, but the webhook injects volumes of driver %s", drv.Name, wcfg.Cluster.DriverName)
	}
	ds := one(t, "DaemonSets", o.daemonSets)
	dpod := ds.Spec.Template.Spec
	if len(dpod.Containers) != 1 {
		t.Fatalf("node plugin pod has %d containers, want 1 (it registers itself, no sidecar)", len(dpod.Containers))
	}
	dc := dpod.Containers[0]
	ccfg := csiConfig(t, dc)
	if ccfg.DriverName != drv.Name {
		t.Errorf("node plugin registers as %s, the CSIDriver is %s", ccfg.DriverName, drv.Name)
	}
	// The kubelet finds the plugin through host paths: each must be a hostPath
	// volume mounted at the same path.
	for _, p := range []string{ccfg.Endpoint, ccfg.RegistrationSocket(), filepath.Join(ccfg.KubeletRoot, "pods", "uid", "volumes")} {
		m, v := mountFor(t, dpod, dc, p)
		if v.HostPath == nil || v.HostPath.Path != m.MountPath {
			t.Errorf("%s: volume %s is not the same host path (%+v at %s)", p, v.Name, v.HostPath, m.MountPath)
		}
	}
	podsMount, _ := mountFor(t, dpod, dc, filepath.Join(ccfg.KubeletRoot, "pods", "uid"))
	if podsMount.MountPropagation == nil || *podsMount.MountPropagation != corev1.MountPropagationBidirectional {
		t.Errorf("the kubelet pods directory is mounted with propagation %v; mounts must reach the host (Bidirectional)", podsMount.MountPropagation)
	}
	for name, addr := range map[string]string{"metrics": ccfg.MetricsBindAddress, "health": ccfg.HealthProbeBindAddress} {
		_, port, _ := strings.Cut(addr, ":")
		if fmt.Sprint(containerPort(t, dc, name)) != port {
			t.Errorf("%s port %s is not the declared container port", name, port)
		}
	}
	for _, probe := range []*corev1.Probe{dc.LivenessProbe, dc.ReadinessProbe} {
		if probe == nil || probe.HTTPGet == nil || probe.HTTPGet.Port.StrVal != "health" {
			t.Errorf("node plugin probe %+v does not use the health port, which probes the CSI socket", probe)
		}
	}
	// What the webhook admits, the plugin mounts.
	if ccfg.MaxObjectsPerVolume < wcfg.Cluster.MaxEntries {
		t.Errorf("node plugin --max-objects-per-volume %d is below the webhook's maxEntries %d", ccfg.MaxObjectsPerVolume, wcfg.Cluster.MaxEntries)
	}
	// One audience: what the kubelet requests is what the plugin exchanges.
	if len(drv.Spec.TokenRequests) != 1 || drv.Spec.TokenRequests[0].Audience != ccfg.TokenAudience {
		t.Errorf("CSIDriver tokenRequests %+v, plugin --token-audience %s", drv.Spec.TokenRequests, ccfg.TokenAudience)
	}
	checkRBAC(t, o, dpod.ServiceAccountName, namespace, []rbacv1.PolicyRule{
		{APIGroups: []string{"secrets-store.csi.x-k8s.io"}, Resources: []string{"secretproviderclasses"}, Verbs: []string{"get"}},
		{APIGroups: []string{""}, Resources: []string{"events"}, Verbs: []string{"create", "get", "patch"}},
		{APIGroups: []string{"kvinject.io"}, Resources: []string{"keyvaultaccesspolicies"}, Verbs: []string{"list", "watch"}},
		{APIGroups: []string{""}, Resources: []string{"namespaces", "pods"}, Verbs: []string{"get"}},
	})
	for _, crd := range o.crds {
		switch crd.Spec.Group {
		case v1alpha1.GroupVersion.Group:
			checkPolicyCRD(t, crd)
		default:
			spc := strings.TrimPrefix(csi.SecretProviderClassAPI, "/apis/")
			if crd.Spec.Group+"/"+crd.Spec.Versions[0].Name != spc || crd.Spec.Names.Plural != "secretproviderclasses" {
				t.Errorf("CRD serves %s/%s %s; the plugin reads %s secretproviderclasses", crd.Spec.Group, crd.Spec.Versions[0].Name, crd.Spec.Names.Plural, spc)
			}
		}
	}
	return wcfg, ccfg
}

// checkRBAC checks that the ServiceAccount exists and is bound to exactly one
// ClusterRole whose rules are want.
func checkRBAC(t *testing.T, o *objects, sa, namespace string, want []rbacv1.PolicyRule) {
	t.Helper()
	named(t, "ServiceAccount", sa, o.serviceAccounts)
	var roles []string
	for _, b := range o.clusterRoleBindings {
		for _, s := range b.Subjects {
			if s.Kind == rbacv1.ServiceAccountKind && s.Name == sa && s.Namespace == namespace {
				roles = append(roles, b.RoleRef.Name)
			}
		}
	}
	if len(roles) != 1 {
		t.Fatalf("ServiceAccount %s is bound to %d ClusterRoles (%v), want 1", sa, len(roles), roles)
	}
	role := named(t, "ClusterRole", roles[0], o.clusterRoles)
	got, _ := yaml.Marshal(role.Rules)
	exp, _ := yaml.Marshal(want)
	if !bytes.Equal(got, exp) {
		t.Errorf("ClusterRole %s rules:\n%s\nwant exactly:\n%s", role.Name, got, exp)
	}
}

// checkPolicyCRD: the chart installs the CRD generated from pkg/apis, kept on
// uninstall.
func checkPolicyCRD(t *testing.T, crd *apiextensionsv1.CustomResourceDefinition) {
	t.Helper()
	if crd.Annotations["helm.sh/resource-policy"] != "keep" {
		t.Errorf("KeyVaultAccessPolicy CRD annotations %v lack helm.sh/resource-policy: keep", crd.Annotations)
	}
	dir, err := framework.PolicyCRDDir()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "kvinject.io_keyvaultaccesspolicies.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var generated apiextensionsv1.CustomResourceDefinition
	if err := yaml.UnmarshalStrict(b, &generated); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(crd.Spec, generated.Spec) {
		t.Errorf("the chart's KeyVaultAccessPolicy CRD differs from the generated one (make generate)")
	}
	if crd.Name != v1alpha1.Resource+"."+v1alpha1.GroupVersion.Group || crd.Spec.Scope != apiextensionsv1.ClusterScoped {
		t.Errorf("policy CRD %s scope %s", crd.Name, crd.Spec.Scope)
	}
}
