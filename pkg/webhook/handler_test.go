package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/go-logr/logr"
	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/kvinject/kvinject/pkg/contract"
	"github.com/kvinject/kvinject/pkg/mutate"
)

const tenant = "72f988bf-86f1-41af-91ab-2d7cd011db47"

// staticLookup answers every lookup with the same annotations, or err.
type staticLookup struct {
	namespace, serviceAccount map[string]string
	err                       error
}

func (s staticLookup) Namespace(context.Context, string) (mutate.Metadata, error) {
	return mutate.Metadata{Annotations: s.namespace}, s.err
}

func (s staticLookup) ServiceAccountAnnotations(context.Context, string, string) (map[string]string, error) {
	return s.serviceAccount, s.err
}

func newTestHandler(t testing.TB, lookup mutate.Lookup) (*Handler, *Metrics) {
	t.Helper()
	metrics, err := NewMetrics(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	return NewHandler(mutate.NewMutator(mutate.DefaultConfig(), lookup, nil), metrics, logr.Discard()), metrics
}

func tutorialPod() *corev1.Pod {
	return &corev1.Pod{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{Name: "nginx-secrets-store-inline", Namespace: "default", Annotations: map[string]string{
			contract.AnnotationVault:    "az-key-vault-demo",
			contract.AnnotationIdentity: "azure-kv",
			contract.AnnotationTenantID: tenant,
			contract.AnnotationSecrets:  "DatabaseLogin=DATABASE_LOGIN, DatabasePassword=DATABASE_PASSWORD",
		}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "nginx", Image: "nginx"}}},
	}
}

// review encodes an AdmissionReview for obj.
func review(t testing.TB, obj any, mod func(*admissionv1.AdmissionRequest)) []byte {
	t.Helper()
	raw, err := json.Marshal(obj)
	if err != nil {
		t.Fatal(err)
	}
	req := &admissionv1.AdmissionRequest{
		UID:       types.UID("705ab4f5-6393-11e8-b7cc-42010a800002"),
		Kind:      metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
		Resource:  metav1.GroupVersionResource{Version: "v1", Resource: "pods"},
		Namespace: "default",
		Operation: admissionv1.Create,
		Object:    runtimeRaw(raw),
	}
	if mod != nil {
		mod(req)
	}
	b, err := json.Marshal(admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request:  req,
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// post serves body through controller-runtime's admission HTTP handler, as the webhook
// server does, and decodes the answer.
func post(t testing.TB, h admission.Handler, body []byte) *admissionv1.AdmissionResponse {
	t.Helper()
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodPost, Path, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	(&admission.Webhook{Handler: h}).ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		t.Fatalf("HTTP %d: %s", rec.Code, rec.Body)
	}
	var out admissionv1.AdmissionReview
	if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
		t.Fatalf("decode review: %v: %s", err, rec.Body)
	}
	if out.Response == nil {
		t.Fatalf("review without response: %s", rec.Body)
	}
	return out.Response
}

func TestTutorialPatchGolden(t *testing.T) {
	h, _ := newTestHandler(t, staticLookup{})
	resp := post(t, h, review(t, tutorialPod(), nil))
	if !resp.Allowed || resp.PatchType == nil || *resp.PatchType != admissionv1.PatchTypeJSONPatch {
		t.Fatalf("response: %+v", resp)
	}
	var indented bytes.Buffer
	if err := json.Indent(&indented, resp.Patch, "", "  "); err != nil {
		t.Fatal(err)
	}
	indented.WriteByte('\n')
	golden := filepath.Join("testdata", "tutorial.patch.json")
	if os.Getenv("UPDATE_GOLDEN") == "1" {
		if err := os.WriteFile(golden, indented.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run with UPDATE_GOLDEN=1 to create it)", err)
	}
	if diff := cmp.Diff(string(want), indented.String()); diff != "" {
		t.Fatalf("patch differs from %s (UPDATE_GOLDEN=1 regenerates it) (-want +got):\n%s", golden, diff)
	}

	dryRun := true
	again := post(t, h, review(t, tutorialPod(), func(r *admissionv1.AdmissionRequest) { r.DryRun = &dryRun }))
	if !bytes.Equal(again.Patch, resp.Patch) {
		t.Fatalf("dry-run patch differs:\n%s\n%s", again.Patch, resp.Patch)
	}
}

func TestHandlerOutcomes(t *testing.T) {
	bad := tutorialPod()
	bad.Annotations[contract.AnnotationSecrets] = "DatabaseLogin=../x"
	plain := tutorialPod()
	plain.Annotations = nil
	fromNamespace := tutorialPod()
	delete(fromNamespace.Annotations, contract.AnnotationVault)

	tests := []struct {
		name         string
		body         []byte
		lookup       staticLookup
		wantAllowed  bool
		wantPatch    bool
		wantCode     int32
		wantMessage  string
		wantWarnings []string
		wantOutcome  string
	}{
		{name: "injected", body: review(t, tutorialPod(), nil), wantAllowed: true, wantPatch: true, wantOutcome: OutcomeInjected},
		{name: "injected with a warning", body: review(t, fromNamespace, nil),
			lookup:      staticLookup{namespace: map[string]string{contract.AnnotationVault: "team-vault"}},
			wantAllowed: true, wantPatch: true, wantOutcome: OutcomeInjected,
			wantWarnings: []string{`kvinject.io/vault: using "team-vault" from namespace "default"`}},
		{name: "no annotation", body: review(t, plain, nil), wantAllowed: true, wantOutcome: OutcomeUnchanged},
		{name: "denied", body: review(t, bad, nil), wantCode: http.StatusForbidden, wantOutcome: OutcomeDenied,
			wantMessage: `kvinject.io/secrets: entry 1 "DatabaseLogin=../x": the file name "../x" contains a path separator; use a plain file name`},
		{name: "lookup failure", body: review(t, fromNamespace, nil), lookup: staticLookup{err: errors.New("etcdserver: request timed out")},
			wantCode: http.StatusInternalServerError, wantOutcome: OutcomeError, wantMessage: `read namespace "default": etcdserver: request timed out`},
		{name: "object is not a pod", body: review(t, map[string]any{"spec": "nope"}, nil), wantCode: http.StatusBadRequest,
			wantOutcome: OutcomeError, wantMessage: "kvinject: the request's object is not a pod"},
		{name: "update is not mutated", body: review(t, tutorialPod(), func(r *admissionv1.AdmissionRequest) { r.Operation = admissionv1.Update }),
			wantAllowed: true, wantOutcome: OutcomeUnchanged, wantMessage: "kvinject mutates pod creations only", wantCode: http.StatusOK},
		{name: "other kind", body: review(t, tutorialPod(), func(r *admissionv1.AdmissionRequest) { r.Kind.Kind = "Deployment"; r.Kind.Group = "apps" }),
			wantAllowed: true, wantOutcome: OutcomeUnchanged, wantMessage: "kvinject mutates pod creations only", wantCode: http.StatusOK},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h, metrics := newTestHandler(t, tc.lookup)
			resp := post(t, h, tc.body)
			if resp.Allowed != tc.wantAllowed {
				t.Errorf("allowed = %v, want %v (%+v)", resp.Allowed, tc.wantAllowed, resp.Result)
			}
			if (len(resp.Patch) > 0) != tc.wantPatch {
				t.Errorf("patch = %s, want a patch: %v", resp.Patch, tc.wantPatch)
			}
			if tc.wantMessage != "" || tc.wantCode != 0 {
				if resp.Result == nil || resp.Result.Message != tc.wantMessage || resp.Result.Code != tc.wantCode {
					t.Errorf("result = %+v, want code %d message %q", resp.Result, tc.wantCode, tc.wantMessage)
				}
			}
			if diff := cmp.Diff(tc.wantWarnings, resp.Warnings); diff != "" {
				t.Errorf("warnings (-want +got):\n%s", diff)
			}
			for _, o := range []string{OutcomeInjected, OutcomeUnchanged, OutcomeDenied, OutcomeError} {
				want := 0.0
				if o == tc.wantOutcome {
					want = 1
				}
				if got := testutil.ToFloat64(metrics.reviews.WithLabelValues(o)); got != want {
					t.Errorf("reviews{outcome=%q} = %v, want %v", o, got, want)
				}
			}
		})
	}
}

func runtimeRaw(b []byte) runtime.RawExtension { return runtime.RawExtension{Raw: b} }
