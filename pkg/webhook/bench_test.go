package webhook

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	jsonpatch "github.com/evanphx/json-patch/v5"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/kvinject/kvinject/test/load/fixture"
)

// benchReview is the realistic review the benchmarks serve: fixture.Pod (3 containers,
// 20 aliases, about 6 KB of JSON) in namespace fixture.Namespace.
func benchReview(b *testing.B) []byte {
	b.Helper()
	return review(b, fixture.Pod(), func(r *admissionv1.AdmissionRequest) { r.Namespace = fixture.Namespace })
}

// BenchmarkHandler serves the realistic review through controller-runtime's
// admission.Webhook.ServeHTTP, as the server does: read and decode the review, decode
// the pod, mutate, build and encode the patch response. Only TLS and the network are
// left out (the load generator in test/load measures those).
func BenchmarkHandler(b *testing.B) {
	h, _ := newTestHandler(b, staticLookup{})
	wh := &admission.Webhook{Handler: h}
	body := benchReview(b)
	b.ReportMetric(float64(len(body)), "review-bytes")

	resp := post(b, h, body)
	if !resp.Allowed || resp.PatchType == nil {
		b.Fatalf("not a patch: %+v", resp)
	}
	var ops []map[string]any
	if err := json.Unmarshal(resp.Patch, &ops); err != nil || len(ops) != fixture.Operations {
		b.Fatalf("patch has %d operations (%v), want %d: %s", len(ops), err, fixture.Operations, resp.Patch)
	}

	rec := httptest.NewRecorder()
	rd := bytes.NewReader(body)
	req := httptest.NewRequest(http.MethodPost, Path, rd)
	req.Header.Set("Content-Type", "application/json")
	b.ReportAllocs()
	for b.Loop() {
		rd.Reset(body)
		req.Body = io.NopCloser(rd)
		rec.Body.Reset()
		wh.ServeHTTP(rec, req)
	}
	if rec.Code != http.StatusOK || rec.Body.Len() == 0 {
		b.Fatalf("HTTP %d: %s", rec.Code, rec.Body)
	}
}

// BenchmarkHandlerParts times the steps of BenchmarkHandler one by one, each on the
// output of the previous one, to show where a review's time goes.
func BenchmarkHandlerParts(b *testing.B) {
	h, _ := newTestHandler(b, staticLookup{})
	body := benchReview(b)

	scheme := runtime.NewScheme()
	if err := admissionv1.AddToScheme(scheme); err != nil {
		b.Fatal(err)
	}
	decoder := serializer.NewCodecFactory(scheme).UniversalDeserializer()
	var ar admissionv1.AdmissionReview
	if _, _, err := decoder.Decode(body, nil, &ar); err != nil {
		b.Fatal(err)
	}
	req := admission.Request{AdmissionRequest: *ar.Request}
	var pod corev1.Pod
	if err := json.Unmarshal(req.Object.Raw, &pod); err != nil {
		b.Fatal(err)
	}
	res, err := h.mutator.Mutate(b.Context(), &pod, req.Namespace)
	if err != nil {
		b.Fatal(err)
	}
	resp := h.Handle(b.Context(), req)
	if err := resp.Complete(req); err != nil {
		b.Fatal(err)
	}

	b.Run("DecodeReview", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var ar admissionv1.AdmissionReview
			if _, _, err := decoder.Decode(body, nil, &ar); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("DecodePod", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var pod corev1.Pod
			if err := json.Unmarshal(req.Object.Raw, &pod); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("Mutate", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := h.mutator.Mutate(b.Context(), &pod, req.Namespace); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("Handle", func(b *testing.B) { // DecodePod + Mutate + metrics
		b.ReportAllocs()
		for b.Loop() {
			h.Handle(b.Context(), req)
		}
	})
	b.Run("MarshalPatch", func(b *testing.B) { // Response.Complete
		b.ReportAllocs()
		for b.Loop() {
			if _, err := json.Marshal(res.Patch); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("EncodeResponse", func(b *testing.B) {
		out := admissionv1.AdmissionReview{Response: &resp.AdmissionResponse}
		out.SetGroupVersionKind(admissionv1.SchemeGroupVersion.WithKind("AdmissionReview"))
		var buf bytes.Buffer
		b.ReportAllocs()
		for b.Loop() {
			buf.Reset()
			if err := json.NewEncoder(&buf).Encode(out); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkPatch compares the patch Mutate builds directly with the one
// admission.PatchResponseFromRaw computes by diffing the pod's JSON before and after,
// both from the decoded pod to the marshalled operations. It first checks that both
// patches give the same pod.
func BenchmarkPatch(b *testing.B) {
	h, _ := newTestHandler(b, staticLookup{})
	pod := fixture.Pod()
	raw, err := json.Marshal(pod)
	if err != nil {
		b.Fatal(err)
	}
	direct := func() []byte {
		res, err := h.mutator.Mutate(b.Context(), pod, fixture.Namespace)
		if err != nil {
			b.Fatal(err)
		}
		out, err := json.Marshal(res.Patch)
		if err != nil {
			b.Fatal(err)
		}
		return out
	}
	diffed := func() []byte {
		res, err := h.mutator.Mutate(b.Context(), pod, fixture.Namespace)
		if err != nil {
			b.Fatal(err)
		}
		mutated, err := json.Marshal(res.Pod)
		if err != nil {
			b.Fatal(err)
		}
		resp := admission.PatchResponseFromRaw(raw, mutated)
		if !resp.Allowed {
			b.Fatalf("PatchResponseFromRaw: %v", resp.Result)
		}
		out, err := json.Marshal(resp.Patches)
		if err != nil {
			b.Fatal(err)
		}
		return out
	}
	if a, d := applyJSONPatch(b, raw, direct()), applyJSONPatch(b, raw, diffed()); !jsonpatch.Equal(a, d) {
		b.Fatalf("the patches differ in effect:\n%s\n%s", a, d)
	}

	b.Run("Direct", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			direct()
		}
	})
	b.Run("PatchResponseFromRaw", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			diffed()
		}
	})
}

func applyJSONPatch(b *testing.B, doc, patch []byte) []byte {
	b.Helper()
	p, err := jsonpatch.DecodePatch(patch)
	if err != nil {
		b.Fatal(err)
	}
	out, err := p.Apply(doc)
	if err != nil {
		b.Fatal(err)
	}
	return out
}
