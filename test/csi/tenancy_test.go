package csi

import (
	"context"
	"fmt"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/kvinject/kvinject/internal/testkit"
	"github.com/kvinject/kvinject/pkg/apis/kvinject/v1alpha1"
	"github.com/kvinject/kvinject/pkg/contract"
	"github.com/kvinject/kvinject/pkg/csi"
	"github.com/kvinject/kvinject/pkg/policy"
	"github.com/kvinject/kvinject/test/framework"
)

// TestTenancyAtMount: the node plugin holds every volume to its namespace's
// KeyVaultAccessPolicies, read from a real API server, before any token or Key Vault
// request: hand-written inline volumes, SecretProviderClass volumes and pods that set
// the AAD Pod Identity label by hand, which never pass through the webhook.
func TestTenancyAtMount(t *testing.T) {
	assets := framework.Assets(t)
	testkit.RequireRoot(t)
	env, rc := startAPIServer(t, assets)
	scheme, err := framework.Scheme()
	if err != nil {
		t.Fatal(err)
	}
	kube, err := client.New(rc, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	create := func(objs ...client.Object) {
		t.Helper()
		for _, o := range objs {
			if err := kube.Create(ctx, o); err != nil {
				t.Fatalf("create %T %s: %v", o, o.GetName(), err)
			}
		}
	}
	// Team A is the default namespace (where the emulator's identities live); team B,
	// the audit, pinned and broken namespaces are beside it.
	if err := kube.Patch(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "default"}},
		client.RawPatch(types.MergePatchType, []byte(`{"metadata":{"labels":{"team":"a"}}}`))); err != nil {
		t.Fatal(err)
	}
	for ns, team := range map[string]string{"team-b": "b", "audited": "c", "pinned": "d", "broken": "e"} {
		create(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: map[string]string{"team": team}}})
	}
	team := func(name, label string, spec policy.Spec) *v1alpha1.KeyVaultAccessPolicy {
		spec.NamespaceSelector = policy.LabelSelector{MatchLabels: map[string]string{"team": label}}
		return &v1alpha1.KeyVaultAccessPolicy{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: spec}
	}
	teamB := team("team-b", "b", policy.Spec{Vaults: []string{"team-b-*"}, Tenants: []string{tenant}, PodIdentities: []string{"team-b-app"}})
	create(
		team("team-a", "a", policy.Spec{Vaults: []string{vault}, Tenants: []string{tenant}, PodIdentities: []string{"azure-kv"}, WorkloadIdentityClientIDs: []string{wiClient}}),
		teamB,
		team("audit", "c", policy.Spec{Mode: policy.Audit, Vaults: []string{"team-c-*"}, Tenants: []string{tenant}}),
		team("pin", "d", policy.Spec{Vaults: []string{vault}, Tenants: []string{tenant}, AllowServicePrincipal: true, PinnedIdentity: &policy.Identity{WorkloadIdentityClientID: wiClient}}),
		team("broken", "e", policy.Spec{Vaults: []string{"bad_vault"}}),
	)
	// Pods the plugin reads the AAD Pod Identity label of: one of team A's, and one of
	// team B's that set team A's selector by hand (no webhook runs here).
	pod := func(ns, name, selector string) *corev1.Pod {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{contract.LabelPodIdentity: selector}},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "app"}}}}
		create(p)
		return p
	}
	podA, podB := pod("default", "app-a", "azure-kv"), pod("team-b", "app-b", "azure-kv")

	w := startWorld(t)
	root := t.TempDir()
	metrics := csi.NewMetrics()
	p := newPlugin(t, w, root, csi.PluginOptions{Metrics: metrics}, func(c *csi.Options) { c.Kubeconfig = framework.WriteKubeconfig(t, rc) })
	objs := []contract.Object{{Name: "DatabaseLogin"}}
	sp := map[string]string{contract.SecretClientID: spClient, contract.SecretClientSecret: spSecret}
	in := func(ns string, p *corev1.Pod, v volume) volume {
		if v.attrs == nil {
			v.attrs = map[string]string{}
		}
		v.attrs[contract.ContextPodNamespace] = ns
		if p != nil {
			v.podUID = string(p.UID)
			v.attrs[contract.ContextPodName] = p.Name
		}
		if v.objects == nil {
			v.objects = objs
		}
		return v
	}
	refused := func(t *testing.T, v volume, code codes.Code, want string) {
		t.Helper()
		before := w.emu.Totals()
		_, err := p.NodePublishVolume(ctx, v.request(t, root))
		if st, _ := status.FromError(err); st.Code() != code || st.Message() != want {
			t.Fatalf("publish: %v\nwant %v %s", err, code, want)
		}
		if after := w.emu.Totals(); after != before {
			t.Fatalf("a refused volume reached Azure: %+v, then %+v", before, after)
		}
	}

	t.Run("team A mounts its own vault with its own identity", func(t *testing.T) {
		req := in("default", podA, volume{}).request(t, root)
		if _, err := p.NodePublishVolume(ctx, req); err != nil {
			t.Fatal(err)
		}
		unpublishAtEnd(t, p, req)
		if got := readVolume(t, req.TargetPath); got["DatabaseLogin"] != "MyDBLoginName" {
			t.Fatalf("files %v", got)
		}
	})
	t.Run("team B's hand-written inline volume with team A's vault and client ID", func(t *testing.T) {
		refused(t, in("team-b", nil, volume{attrs: map[string]string{contract.AttrUsePodIdentity: "false", contract.AttrClientID: wiClient,
			contract.ContextServiceAccount: "app", contract.ContextTokens: w.tokensIn(t, "team-b", "app")}}), codes.PermissionDenied,
			`namespace "team-b" may not use vault "az-key-vault-demo": no KeyVaultAccessPolicy that selects it (team-b) lists it in spec.vaults; `+
				`namespace "team-b" may not use workload identity client ID "`+wiClient+`": no KeyVaultAccessPolicy that selects it (team-b) lists it in spec.workloadIdentityClientIDs`)
	})
	t.Run("team B's SecretProviderClass naming team A's vault", func(t *testing.T) {
		spc := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "secrets-store.csi.x-k8s.io/v1", "kind": "SecretProviderClass",
			"metadata": map[string]any{"name": "steal", "namespace": "team-b"},
			"spec": map[string]any{"provider": "azure", "parameters": map[string]any{
				contract.AttrKeyVaultName: vault, contract.AttrTenantID: tenant, contract.AttrUsePodIdentity: "true",
				contract.AttrObjects: objectsAttr(t, objs)}},
		}}
		if err := kube.Create(ctx, spc); err != nil {
			t.Fatal(err)
		}
		refused(t, in("team-b", podB, volume{objects: []contract.Object{}, attrs: map[string]string{contract.AttrSecretProviderClass: "steal",
			contract.AttrKeyVaultName: "", contract.AttrTenantID: "", contract.AttrUsePodIdentity: "", contract.AttrObjects: ""}}), codes.PermissionDenied,
			`namespace "team-b" may not use vault "az-key-vault-demo": no KeyVaultAccessPolicy that selects it (team-b) lists it in spec.vaults; `+
				`namespace "team-b" may not use AAD Pod Identity "azure-kv": no KeyVaultAccessPolicy that selects it (team-b) lists it in spec.podIdentities`)
	})
	t.Run("team B's pod with team A's pod identity label set by hand", func(t *testing.T) {
		refused(t, in("team-b", podB, volume{attrs: map[string]string{contract.AttrKeyVaultName: "team-b-kv"}}), codes.PermissionDenied,
			`namespace "team-b" may not use AAD Pod Identity "azure-kv": no KeyVaultAccessPolicy that selects it (team-b) lists it in spec.podIdentities`)
	})
	t.Run("a service principal where no policy allows one", func(t *testing.T) {
		refused(t, in("default", nil, volume{attrs: map[string]string{contract.AttrUsePodIdentity: "false"}, secrets: sp}), codes.PermissionDenied,
			`namespace "default" may not use a service principal from nodePublishSecretRef: no KeyVaultAccessPolicy that selects it (team-a) sets spec.allowServicePrincipal`)
	})
	t.Run("a pinned identity admits no other", func(t *testing.T) {
		refused(t, in("pinned", nil, volume{attrs: map[string]string{contract.AttrUsePodIdentity: "false"}, secrets: sp}), codes.PermissionDenied,
			`namespace "pinned" may use only workload identity client ID "`+wiClient+`" (KeyVaultAccessPolicy pin, spec.pinnedIdentity), not a service principal from nodePublishSecretRef`)
	})
	t.Run("an invalid policy refuses", func(t *testing.T) {
		refused(t, in("broken", nil, volume{attrs: map[string]string{contract.AttrUsePodIdentity: "false"}, secrets: sp}), codes.PermissionDenied,
			`KeyVaultAccessPolicy broken, which selects namespace "broken", is invalid, so it refuses everything there until it is fixed: spec.vaults[0]: "bad_vault" is not a Key Vault name: it may hold only letters, digits and '-'`)
	})
	t.Run("audit mounts and reports", func(t *testing.T) {
		audited := pod("audited", "app-c", "none")
		req := in("audited", audited, volume{attrs: map[string]string{contract.AttrUsePodIdentity: "false"}, secrets: sp}).request(t, root)
		if _, err := p.NodePublishVolume(ctx, req); err != nil {
			t.Fatal(err)
		}
		unpublishAtEnd(t, p, req)
		if got := readVolume(t, req.TargetPath); got["DatabaseLogin"] != "MyDBLoginName" {
			t.Fatalf("files %v", got)
		}
		want := `allowed, but KeyVaultAccessPolicy audit (Audit) would refuse it: namespace "audited" may not use vault "az-key-vault-demo": no KeyVaultAccessPolicy that selects it (audit) lists it in spec.vaults; ` +
			`namespace "audited" may not use a service principal from nodePublishSecretRef: no KeyVaultAccessPolicy that selects it (audit) sets spec.allowServicePrincipal`
		testkit.Eventually(t, 10*time.Second, "PolicyAudit event on the pod", func(ctx context.Context) error {
			var evs corev1.EventList
			if err := kube.List(ctx, &evs, client.InNamespace("audited")); err != nil {
				return err
			}
			for _, e := range evs.Items {
				if e.Reason == csi.ReasonPolicyAudit && e.InvolvedObject.UID == audited.UID {
					if e.Message != want || e.Type != corev1.EventTypeWarning {
						return fmt.Errorf("event %s %q", e.Type, e.Message)
					}
					return nil
				}
			}
			return fmt.Errorf("no %s event among %d", csi.ReasonPolicyAudit, len(evs.Items))
		})
		if n := metricValue(t, metrics, "kvinject_csi_node_policy_violations_total", "audited", policy.FieldVaults); n != 1 {
			t.Errorf("audited vault violations %v, want 1", n)
		}
	})
	t.Run("a policy change applies without a restart", func(t *testing.T) {
		v := in("team-b", nil, volume{attrs: map[string]string{contract.AttrUsePodIdentity: "false"}, secrets: sp})
		req := v.request(t, root)
		if _, err := p.NodePublishVolume(ctx, req); status.Code(err) != codes.PermissionDenied {
			t.Fatalf("before the change: %v", err)
		}
		patch := client.RawPatch(types.MergePatchType, []byte(`{"spec":{"vaults":["team-b-*","`+vault+`"],"allowServicePrincipal":true}}`))
		if err := kube.Patch(ctx, teamB, patch); err != nil {
			t.Fatal(err)
		}
		changed := time.Now()
		testkit.Eventually(t, 10*time.Second, "mounted after the policy change", func(ctx context.Context) error {
			_, err := p.NodePublishVolume(ctx, req)
			return err
		})
		t.Logf("the node plugin applied the policy change after %v", time.Since(changed).Round(time.Millisecond))
		unpublishAtEnd(t, p, req)

		// Taken back: the mounted volume keeps its files and stops refreshing, without a
		// request to Azure.
		if err := kube.Patch(ctx, teamB, client.RawPatch(types.MergePatchType, []byte(`{"spec":{"allowServicePrincipal":false}}`))); err != nil {
			t.Fatal(err)
		}
		failed0 := metricValue(t, metrics, "kvinject_csi_node_publish_total", csi.OutcomeRefreshFailed)
		testkit.Eventually(t, 10*time.Second, "republish refused after the policy change", func(ctx context.Context) error {
			before := w.emu.Totals()
			p.advance()
			if _, err := p.NodePublishVolume(ctx, req); err != nil {
				return err
			}
			if metricValue(t, metrics, "kvinject_csi_node_publish_total", csi.OutcomeRefreshFailed) == failed0 {
				return fmt.Errorf("republish not refused yet")
			}
			if after := w.emu.Totals(); after != before {
				t.Fatalf("a refused refresh reached Azure: %+v, then %+v", before, after)
			}
			return nil
		})
		if got := readVolume(t, req.TargetPath); got["DatabaseLogin"] != "MyDBLoginName" {
			t.Fatalf("the refused volume lost its files: %v", got)
		}
	})
	if n := metricValue(t, metrics, "kvinject_csi_node_policy_violations_total", "denied", policy.FieldVaults); n < 2 {
		t.Errorf("denied vault violations %v, want at least 2", n)
	}

	t.Run("policies that cannot be read refuse", func(t *testing.T) {
		// A plugin whose credentials may not list the policies.
		nobody, err := env.AddUser(envtest.User{Name: "nobody"}, nil)
		if err != nil {
			t.Fatal(err)
		}
		root := t.TempDir()
		p2 := newPlugin(t, w, root, csi.PluginOptions{}, func(c *csi.Options) { c.Kubeconfig = framework.WriteKubeconfig(t, nobody.Config()) })
		v := in("default", podA, volume{})
		before := w.emu.Totals()
		_, err = p2.NodePublishVolume(ctx, v.request(t, root))
		st, _ := status.FromError(err)
		const want = `KeyVaultAccessPolicies cannot be read (API server answered 403 Forbidden: keyvaultaccesspolicies.kvinject.io is forbidden: User "nobody" cannot list resource "keyvaultaccesspolicies" in API group "kvinject.io" at the cluster scope), so kvinject allows nothing until they can`
		if st.Code() != codes.Unavailable || st.Message() != want {
			t.Fatalf("publish: %v\nwant Unavailable %s", err, want)
		}
		if after := w.emu.Totals(); after != before {
			t.Fatalf("a refused volume reached Azure: %+v, then %+v", before, after)
		}
	})
}

// metricValue is one series of a counter vector in the plugin's registry (0 when
// absent), labels given in the series' label order.
func metricValue(t *testing.T, m *csi.Metrics, name string, labels ...string) float64 {
	t.Helper()
	families, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	series:
		for _, s := range f.GetMetric() {
			for i, l := range s.GetLabel() {
				if i >= len(labels) || l.GetValue() != labels[i] {
					continue series
				}
			}
			return s.GetCounter().GetValue()
		}
	}
	return 0
}
