package integration

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/testr"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kvinject/kvinject/internal/testkit"
	"github.com/kvinject/kvinject/pkg/apis/kvinject/v1alpha1"
	"github.com/kvinject/kvinject/pkg/contract"
	"github.com/kvinject/kvinject/pkg/policy"
	"github.com/kvinject/kvinject/pkg/webhook"
	"github.com/kvinject/kvinject/test/framework"
)

const (
	clientA = "11111111-1111-1111-1111-111111111111"
	clientB = "22222222-2222-2222-2222-222222222222"
)

// teamPolicy is a team's policy: namespaces labelled kvinject.io/team=<team> may use
// the team's vaults, the tutorial tenant, and the team's identities.
func teamPolicy(team string, mod func(*policy.Spec)) *v1alpha1.KeyVaultAccessPolicy {
	p := &v1alpha1.KeyVaultAccessPolicy{ObjectMeta: metav1.ObjectMeta{Name: "team-" + team}, Spec: policy.Spec{
		NamespaceSelector: policy.LabelSelector{MatchLabels: map[string]string{"kvinject.io/team": team}},
		Vaults:            []string{"team-" + team + "-*"}, Tenants: []string{tenant},
		PodIdentities: []string{"team-" + team + "-app"}, WorkloadIdentityClientIDs: []string{clientA},
	}}
	if mod != nil {
		mod(&p.Spec)
	}
	return p
}

// createPolicy creates p for the test and deletes it at the end.
func createPolicy(t *testing.T, p *v1alpha1.KeyVaultAccessPolicy) {
	t.Helper()
	if err := cp.Client.Create(t.Context(), p); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cp.Client.Delete(context.Background(), p) })
}

// teamNamespace creates a namespace labelled for team.
func teamNamespace(t *testing.T, name, team string) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"kvinject.io/team": team}}}
	if err := cp.Client.Create(t.Context(), ns); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cp.Client.Delete(context.Background(), ns) })
	return name
}

func teamPod(ns, name, vault, identity string) *corev1.Pod {
	p := tutorialPod(ns, name)
	p.Annotations[contract.AnnotationVault] = vault
	p.Annotations[contract.AnnotationIdentity] = identity
	return p
}

// createError creates p and returns the API server's error text ("" when created).
func createError(t *testing.T, c client.Client, p *corev1.Pod) string {
	t.Helper()
	if err := c.Create(t.Context(), p); err != nil {
		return err.Error()
	}
	t.Cleanup(func() { _ = cp.Client.Delete(context.Background(), p) })
	return ""
}

// TestTenancyAtAdmission holds two teams to their KeyVaultAccessPolicies through the
// real API server and the webhook's Run.
func TestTenancyAtAdmission(t *testing.T) {
	w := startWebhook(t)
	nsA, nsB := teamNamespace(t, "tenancy-a", "a"), teamNamespace(t, "tenancy-b", "b")
	createPolicy(t, teamPolicy("a", nil))
	createPolicy(t, teamPolicy("b", nil))
	// The webhook sees policies through its informer: wait until it refuses.
	testkit.Eventually(t, 10*time.Second, "policy in force", func(ctx context.Context) error {
		if err := cp.Client.Create(ctx, teamPod(nsA, "probe", "team-b-kv", "team-a-app"), client.DryRunAll); err == nil {
			return fmt.Errorf("pod admitted")
		}
		return nil
	})
	denials0 := w.metric(t, "kvinject_webhook_policy_violations_total", `action="denied"`)
	denied := func(webhookName, msg string) string {
		return fmt.Sprintf(`admission webhook %q denied the request: %s`, webhookName, msg)
	}

	t.Run("another team's vault by annotation", func(t *testing.T) {
		got := createError(t, cp.Client, teamPod(nsA, "vault", "team-b-kv", "team-a-app"))
		want := denied("pods.kvinject.io", `kvinject.io/vault: namespace "tenancy-a" may not use vault "team-b-kv": no KeyVaultAccessPolicy that selects it (team-a) lists it in spec.vaults`)
		if got != want {
			t.Fatalf("error:\n got %s\nwant %s", got, want)
		}
	})
	t.Run("another team's identity by annotation", func(t *testing.T) {
		got := createError(t, cp.Client, teamPod(nsA, "identity", "team-a-kv", "team-b-app"))
		want := denied("pods.kvinject.io", `kvinject.io/identity: namespace "tenancy-a" may not use AAD Pod Identity "team-b-app": no KeyVaultAccessPolicy that selects it (team-a) lists it in spec.podIdentities`)
		if got != want {
			t.Fatalf("error:\n got %s\nwant %s", got, want)
		}
	})
	t.Run("another team's workload identity by annotation", func(t *testing.T) {
		p := teamPod(nsB, "wi", "team-b-kv", "")
		delete(p.Annotations, contract.AnnotationIdentity)
		p.Annotations[contract.AnnotationClientID] = clientB
		got := createError(t, cp.Client, p)
		want := denied("pods.kvinject.io", `kvinject.io/client-id: namespace "tenancy-b" may not use workload identity client ID "22222222-2222-2222-2222-222222222222": no KeyVaultAccessPolicy that selects it (team-b) lists it in spec.workloadIdentityClientIDs`)
		if got != want {
			t.Fatalf("error:\n got %s\nwant %s", got, want)
		}
	})
	t.Run("own vault and identity", func(t *testing.T) {
		p := teamPod(nsA, "own", "team-a-kv", "team-a-app")
		if got := createError(t, cp.Client, p); got != "" {
			t.Fatal(got)
		}
		var stored corev1.Pod
		if err := cp.Client.Get(t.Context(), client.ObjectKeyFromObject(p), &stored); err != nil {
			t.Fatal(err)
		}
		assertInjected(t, &stored, "team-a-app", wantVolume(tutorialAttrs("team-a-kv", tutorialObjects)), "nginx")
	})
	t.Run("a hand-set label without kvinject", func(t *testing.T) {
		p := plainPod(nsA, "hand-label")
		p.Labels = map[string]string{contract.LabelPodIdentity: "team-b-app"}
		got := createError(t, cp.Client, p)
		want := denied("pod-identity.kvinject.io", `metadata.labels.aadpodidbinding: namespace "tenancy-a" may not use AAD Pod Identity "team-b-app": no KeyVaultAccessPolicy that selects it (team-a) lists it in spec.podIdentities`)
		if got != want {
			t.Fatalf("error:\n got %s\nwant %s", got, want)
		}
	})
	t.Run("a label changed on a running pod", func(t *testing.T) {
		p := plainPod(nsA, "relabel")
		p.Labels = map[string]string{contract.LabelPodIdentity: "team-a-app"}
		if got := createError(t, cp.Client, p); got != "" {
			t.Fatal(got)
		}
		patch := client.RawPatch(types.MergePatchType, []byte(`{"metadata":{"labels":{"aadpodidbinding":"team-b-app"}}}`))
		err := cp.Client.Patch(t.Context(), p, patch)
		want := denied("pod-identity.kvinject.io", `metadata.labels.aadpodidbinding: namespace "tenancy-a" may not use AAD Pod Identity "team-b-app": no KeyVaultAccessPolicy that selects it (team-a) lists it in spec.podIdentities`)
		if err == nil || err.Error() != want {
			t.Fatalf("relabel: %v\nwant %s", err, want)
		}
		// Other updates of the pod do not reach the check.
		patch = client.RawPatch(types.MergePatchType, []byte(`{"metadata":{"annotations":{"touched":"yes"}}}`))
		if err := cp.Client.Patch(t.Context(), p, patch); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("a namespace no policy selects is unchanged", func(t *testing.T) {
		ns := namespace(t, "tenancy-none", nil)
		p := teamPod(ns, "free", "team-b-kv", "team-b-app")
		if got := createError(t, cp.Client, p); got != "" {
			t.Fatal(got)
		}
	})
	// Counted: vault, identity, client ID, hand-set label, relabel.
	if n := w.metric(t, "kvinject_webhook_policy_violations_total", `action="denied"`) - denials0; n != 5 {
		t.Errorf("%v denials counted, want 5", n)
	}
	t.Run("a policy change applies without a restart", func(t *testing.T) {
		p := teamPod(nsA, "shared", "shared-kv", "team-a-app")
		if got := createError(t, cp.Client, p.DeepCopy()); !strings.Contains(got, `may not use vault "shared-kv"`) {
			t.Fatalf("before the change: %q", got)
		}
		// The status controller writes the policy meanwhile: retry on a conflict.
		if err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
			var pol v1alpha1.KeyVaultAccessPolicy
			if err := cp.Client.Get(t.Context(), client.ObjectKey{Name: "team-a"}, &pol); err != nil {
				return err
			}
			pol.Spec.Vaults = append(pol.Spec.Vaults, "shared-kv")
			return cp.Client.Update(t.Context(), &pol)
		}); err != nil {
			t.Fatal(err)
		}
		changed := time.Now()
		testkit.Eventually(t, 10*time.Second, "pod admitted after the policy change", func(ctx context.Context) error {
			if got := createError(t, cp.Client, p.DeepCopy()); got != "" {
				return fmt.Errorf("%s", got)
			}
			return nil
		})
		t.Logf("the webhook applied the policy change after %v", time.Since(changed).Round(time.Millisecond))
	})
	t.Run("status says every policy is valid", func(t *testing.T) {
		for _, name := range []string{"team-a", "team-b"} {
			waitCondition(t, name, metav1.ConditionTrue, "The policy is valid and in force.")
		}
	})
	t.Run("the chart's alerts and dashboard query only metrics the webhook serves", func(t *testing.T) {
		// After injected, unchanged and denied reviews and policy denials, every
		// kvinject_webhook_* series the rules and panels use is in the real /metrics.
		used, err := framework.ChartMetrics()
		if err != nil {
			t.Fatal(err)
		}
		missing, err := framework.MissingMetrics(w.scrape(t), used, "kvinject_webhook_")
		if err != nil {
			t.Fatal(err)
		}
		if len(missing) > 0 {
			t.Errorf("the webhook's /metrics lacks:\n%s", strings.Join(missing, "\n"))
		}
	})
}

// waitCondition waits for the policy's Valid condition, for its current generation.
func waitCondition(t *testing.T, name string, status metav1.ConditionStatus, message string) {
	t.Helper()
	testkit.Eventually(t, 10*time.Second, "policy "+name+" condition Valid="+string(status), func(ctx context.Context) error {
		var p v1alpha1.KeyVaultAccessPolicy
		if err := cp.Client.Get(ctx, client.ObjectKey{Name: name}, &p); err != nil {
			return err
		}
		c := meta.FindStatusCondition(p.Status.Conditions, v1alpha1.ConditionValid)
		if c == nil || c.Status != status || c.Message != message || c.ObservedGeneration != p.Generation {
			return fmt.Errorf("conditions %+v", p.Status.Conditions)
		}
		return nil
	})
}

// TestTenancyAuditAndPin: an Audit policy allows and reports (warning, metric, Event);
// a pinned identity beats the pod's annotation; an invalid policy refuses.
func TestTenancyAuditAndPin(t *testing.T) {
	w := startWebhook(t)
	c, warnings := warningClient(t)

	t.Run("audit allows and warns", func(t *testing.T) {
		ns := teamNamespace(t, "tenancy-audit", "audit")
		createPolicy(t, teamPolicy("audit", func(s *policy.Spec) { s.Mode = policy.Audit }))
		p := teamPod(ns, "audited", "other-kv", "team-audit-app")
		report := `allowed, but KeyVaultAccessPolicy team-audit (Audit) would refuse it: namespace "tenancy-audit" may not use vault "other-kv": no KeyVaultAccessPolicy that selects it (team-audit) lists it in spec.vaults`
		testkit.Eventually(t, 10*time.Second, "audit warning", func(ctx context.Context) error {
			if err := c.Create(ctx, p.DeepCopy(), client.DryRunAll); err != nil {
				return err
			}
			for _, w := range warnings.get() {
				if w == report {
					return nil
				}
			}
			return fmt.Errorf("warnings %q", warnings.get())
		})
		if got := createError(t, c, p); got != "" {
			t.Fatal(got)
		}
		if n := w.metric(t, "kvinject_webhook_policy_violations_total", `action="audited"`, `field="spec.vaults"`); n < 2 {
			t.Errorf("audits counted: %v, want the dry run's and the create's", n)
		}
		testkit.Eventually(t, 10*time.Second, "audit Event on the policy", func(ctx context.Context) error {
			var evs eventsv1.EventList
			if err := cp.Client.List(ctx, &evs, client.InNamespace("default")); err != nil {
				return err
			}
			for _, e := range evs.Items {
				if e.Regarding.Kind == "KeyVaultAccessPolicy" && e.Regarding.Name == "team-audit" && e.Reason == webhook.ReasonPolicyAudit {
					if want := "pod tenancy-audit/audited: " + report; e.Note != want {
						return fmt.Errorf("note %q, want %q", e.Note, want)
					}
					if e.Type != "Warning" {
						return fmt.Errorf("event type %s", e.Type)
					}
					return nil
				}
			}
			return fmt.Errorf("no PolicyAudit event among %d", len(evs.Items))
		})
	})

	t.Run("a pinned identity beats the pod's annotation", func(t *testing.T) {
		ns := teamNamespace(t, "tenancy-pinned", "pinned")
		createPolicy(t, teamPolicy("pinned", func(s *policy.Spec) { s.PinnedIdentity = &policy.Identity{WorkloadIdentityClientID: clientB} }))
		p := teamPod(ns, "pinned", "team-pinned-kv", "team-pinned-app")
		testkit.Eventually(t, 10*time.Second, "pod admitted with the pinned identity", func(ctx context.Context) error {
			if got := createError(t, c, p.DeepCopy()); got != "" {
				return fmt.Errorf("%s", got)
			}
			return nil
		})
		var stored corev1.Pod
		if err := cp.Client.Get(t.Context(), client.ObjectKeyFromObject(p), &stored); err != nil {
			t.Fatal(err)
		}
		attrs := tutorialAttrs("team-pinned-kv", tutorialObjects)
		attrs["usePodIdentity"], attrs["clientID"] = "false", clientB
		assertInjected(t, &stored, "", wantVolume(attrs), "nginx")
		want := `the pod's kvinject.io/identity "team-pinned-app" is not used: KeyVaultAccessPolicy team-pinned pins workload identity client ID "22222222-2222-2222-2222-222222222222" for namespace "tenancy-pinned"`
		if got := warnings.get(); !contains(got, want) {
			t.Fatalf("warnings %q lack %q", got, want)
		}
	})

	t.Run("an invalid policy refuses where it selects", func(t *testing.T) {
		ns := teamNamespace(t, "tenancy-broken", "broken")
		createPolicy(t, teamPolicy("broken", func(s *policy.Spec) { s.Vaults = []string{"bad_vault"} }))
		waitCondition(t, "team-broken", metav1.ConditionFalse,
			`spec.vaults[0]: "bad_vault" is not a Key Vault name: it may hold only letters, digits and '-'. Until it is fixed, kvinject refuses every pod and mount in the namespaces the policy selects (every namespace, if the selector is what is invalid).`)
		got := createError(t, c, teamPod(ns, "refused", "team-broken-kv", "team-broken-app"))
		want := `admission webhook "pods.kvinject.io" denied the request: KeyVaultAccessPolicy team-broken, which selects namespace "tenancy-broken", is invalid, so it refuses everything there until it is fixed: spec.vaults[0]: "bad_vault" is not a Key Vault name: it may hold only letters, digits and '-'`
		if got != want {
			t.Fatalf("error:\n got %s\nwant %s", got, want)
		}
	})
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// TestWebhookNeedsPolicyCRD: an API server without the KeyVaultAccessPolicy CRD
// cannot tell which pods the policies allow, so the webhook does not start (and,
// failurePolicy Fail, the API server refuses the pods it would review).
func TestWebhookNeedsPolicyCRD(t *testing.T) {
	bare, err := framework.Start(framework.Assets(t), framework.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = bare.Stop() })
	o := webhook.NewOptions()
	o.Host, o.Port, o.CertDir = "127.0.0.1", testkit.MustFreePort(t), certDir
	o.MetricsBindAddress, o.HealthProbeBindAddress = "0", "0"
	o.Kubeconfig = bare.Kubeconfig
	o.Cluster.TenantID = tenant
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	err = o.Run(logr.NewContext(ctx, testr.New(t)))
	const want = "the API server does not serve keyvaultaccesspolicies.kvinject.io/v1alpha1: install the KeyVaultAccessPolicy CRD (the chart installs it; or kubectl apply -f deploy/policy/)"
	if err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Fatalf("Run: %v\nwant an error starting %q", err, want)
	}
	if ctx.Err() != nil {
		t.Fatalf("Run returned only when its context ended")
	}
}
