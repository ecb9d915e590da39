package webhook

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	jsonpatch "github.com/evanphx/json-patch/v5"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/kvinject/kvinject/pkg/contract"
)

// FuzzHandler posts arbitrary bodies to the admission endpoint: it must never panic,
// must always answer, and a patch it returns must apply to the request's pod and give
// a volume whose objects obey the grammar. Seeds: testdata/fuzz/FuzzHandler.
func FuzzHandler(f *testing.F) {
	f.Add(review(f, tutorialPod(), nil))
	bad := tutorialPod()
	bad.Annotations[contract.AnnotationSecrets] = "a=..,b"
	f.Add(review(f, bad, nil))
	f.Add([]byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"1","kind":{"version":"v1","kind":"Pod"},"operation":"CREATE","object":{"metadata":{"annotations":{"kvinject.io/secrets":"x"}}}}}`))
	f.Add([]byte(`{}`))
	h, _ := newTestHandler(f, staticLookup{})
	wh := &admission.Webhook{Handler: h}
	f.Fuzz(func(t *testing.T, body []byte) {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest(http.MethodPost, Path, bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		wh.ServeHTTP(rec, req)
		var out admissionv1.AdmissionReview
		if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil || out.Response == nil {
			t.Fatalf("no admission response (HTTP %d): %s", rec.Code, rec.Body)
		}
		if len(out.Response.Patch) == 0 {
			return
		}
		var in admissionv1.AdmissionReview
		if err := json.Unmarshal(body, &in); err != nil || in.Request == nil {
			t.Fatalf("patched a request that does not decode: %v", err)
		}
		patch, err := jsonpatch.DecodePatch(out.Response.Patch)
		if err != nil {
			t.Fatalf("invalid patch: %v", err)
		}
		doc, err := patch.Apply(in.Request.Object.Raw)
		if err != nil {
			t.Fatalf("patch does not apply to the request's object: %v", err)
		}
		var pod corev1.Pod
		if err := json.Unmarshal(doc, &pod); err != nil {
			t.Fatalf("patched object is not a pod: %v", err)
		}
		for _, v := range pod.Spec.Volumes {
			if v.Name != contract.VolumeName || v.CSI == nil {
				continue
			}
			if _, err := contract.ParseObjects(v.CSI.VolumeAttributes[contract.AttrObjects], contract.MaxObjectsLimit); err != nil {
				t.Fatalf("injected objects violate the grammar: %v", err)
			}
			return
		}
		if pod.Annotations[contract.AnnotationStatus] != contract.StatusInjected {
			t.Fatalf("patched pod is not marked injected")
		}
	})
}
