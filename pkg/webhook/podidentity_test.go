package webhook

import (
	"context"
	"encoding/json"
	"errors"
	"testing"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kvinject/kvinject/pkg/mutate"
	"github.com/kvinject/kvinject/pkg/policy"
)

// nsLabelLookup gives every namespace the same labels.
type nsLabelLookup struct{ labels map[string]string }

func (l nsLabelLookup) Namespace(context.Context, string) (mutate.Metadata, error) {
	return mutate.Metadata{Labels: l.labels}, nil
}

func (l nsLabelLookup) ServiceAccountAnnotations(context.Context, string, string) (map[string]string, error) {
	return nil, nil
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestPodIdentityLabel: a pod that sets aadpodidbinding by hand is held to its
// namespace's policies, on create and when the label changes, and nothing else is.
func TestPodIdentityLabel(t *testing.T) {
	teamA := policy.Spec{NamespaceSelector: policy.LabelSelector{MatchLabels: map[string]string{"team": "a"}}, PodIdentities: []string{"team-a-*"}}
	audit := teamA
	audit.Mode = policy.Audit
	labelled := func(sel string) *corev1.Pod {
		p := &corev1.Pod{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"}, ObjectMeta: metav1.ObjectMeta{Name: "app", Namespace: "default"},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "app"}}}}
		if sel != "" {
			p.Labels = map[string]string{"aadpodidbinding": sel}
		}
		return p
	}
	tests := []struct {
		name     string
		set      *policy.Set
		nsLabels map[string]string
		pod      *corev1.Pod
		old      *corev1.Pod // UPDATE when set
		allowed  bool
		message  string
		warning  string
		outcome  string
		field    string // counted violation
	}{
		{name: "no policy", set: policy.NewSet(nil), pod: labelled("team-b-app"), allowed: true, outcome: OutcomeAllowed},
		{name: "allowed selector", set: policy.NewSet([]policy.Object{{Name: "a", Spec: teamA}}), nsLabels: map[string]string{"team": "a"},
			pod: labelled("team-a-web"), allowed: true, outcome: OutcomeAllowed},
		{name: "another team's selector", set: policy.NewSet([]policy.Object{{Name: "a", Spec: teamA}}), nsLabels: map[string]string{"team": "a"},
			pod: labelled("team-b-app"), outcome: OutcomeDenied, field: policy.FieldPodIdentities,
			message: `metadata.labels.aadpodidbinding: namespace "default" may not use AAD Pod Identity "team-b-app": no KeyVaultAccessPolicy that selects it (a) lists it in spec.podIdentities`},
		{name: "label changed on a running pod", set: policy.NewSet([]policy.Object{{Name: "a", Spec: teamA}}), nsLabels: map[string]string{"team": "a"},
			pod: labelled("team-b-app"), old: labelled("team-a-web"), outcome: OutcomeDenied, field: policy.FieldPodIdentities,
			message: `metadata.labels.aadpodidbinding: namespace "default" may not use AAD Pod Identity "team-b-app": no KeyVaultAccessPolicy that selects it (a) lists it in spec.podIdentities`},
		{name: "an unchanged label is not checked again", set: policy.NewSet([]policy.Object{{Name: "a", Spec: teamA}}), nsLabels: map[string]string{"team": "a"},
			pod: labelled("team-b-app"), old: labelled("team-b-app"), allowed: true, outcome: OutcomeAllowed},
		{name: "no label", set: policy.NewSet([]policy.Object{{Name: "a", Spec: teamA}}), nsLabels: map[string]string{"team": "a"},
			pod: labelled(""), allowed: true, outcome: OutcomeAllowed},
		{name: "audit allows and warns", set: policy.NewSet([]policy.Object{{Name: "a", Spec: audit}}), nsLabels: map[string]string{"team": "a"},
			pod: labelled("team-b-app"), allowed: true, outcome: OutcomeAllowed, field: policy.FieldPodIdentities,
			warning: `metadata.labels.aadpodidbinding: allowed, but KeyVaultAccessPolicy a (Audit) would refuse it: namespace "default" may not use AAD Pod Identity "team-b-app": no KeyVaultAccessPolicy that selects it (a) lists it in spec.podIdentities`},
		{name: "unreadable policies refuse", set: policy.Unreadable(errors.New("not synced")), pod: labelled("team-a-web"), outcome: OutcomeDenied, field: policy.FieldUnreadable,
			message: `metadata.labels.aadpodidbinding: KeyVaultAccessPolicies cannot be read (not synced), so kvinject allows nothing until they can`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			metrics, err := NewMetrics(prometheus.NewRegistry())
			if err != nil {
				t.Fatal(err)
			}
			lookup := nsLabelLookup{labels: tt.nsLabels}
			h := NewPodIdentityHandler(lookup, mutate.StaticPolicies(tt.set), metrics, logr.Discard())
			resp := post(t, h, review(t, tt.pod, func(r *admissionv1.AdmissionRequest) {
				if tt.old != nil {
					r.Operation = admissionv1.Update
					r.OldObject = runtimeRaw(mustJSON(t, tt.old))
				}
			}))
			if resp.Allowed != tt.allowed {
				t.Fatalf("allowed = %v (%+v)", resp.Allowed, resp.Result)
			}
			if !tt.allowed && resp.Result.Message != tt.message {
				t.Errorf("message:\n got %s\nwant %s", resp.Result.Message, tt.message)
			}
			var warning string
			if len(resp.Warnings) > 0 {
				warning = resp.Warnings[0]
			}
			if warning != tt.warning || len(resp.Warnings) > 1 {
				t.Errorf("warnings %q, want %q", resp.Warnings, tt.warning)
			}
			if n := testutil.ToFloat64(metrics.identityChecks.WithLabelValues(tt.outcome)); n != 1 {
				t.Errorf("checks{outcome=%s} = %v, want 1", tt.outcome, n)
			}
			violations := testutil.CollectAndCount(metrics.policyViolations)
			if (tt.field == "") != (violations == 0) {
				t.Errorf("%d violation series, want field %q", violations, tt.field)
			}
			if tt.field != "" {
				action := ActionDenied
				if tt.allowed {
					action = ActionAudited
				}
				if n := testutil.ToFloat64(metrics.policyViolations.WithLabelValues(action, tt.field)); n != 1 {
					t.Errorf("violations{%s,%s} = %v, want 1", action, tt.field, n)
				}
			}
		})
	}
}
