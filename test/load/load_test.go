package load

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	admissionv1 "k8s.io/api/admission/v1"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/kvinject/kvinject/internal/testcerts"
	"github.com/kvinject/kvinject/test/framework"
	"github.com/kvinject/kvinject/test/load/fixture"
)

func TestMain(m *testing.M) {
	ctrllog.SetLogger(logr.Discard())
	os.Exit(m.Run())
}

// TestLocalLoad runs the load generator for about a second against the webhook's Run
// in this process: every review must be answered with the fixture's patch, over
// HTTP/1.1, and there must be reviews to count.
func TestLocalLoad(t *testing.T) {
	local, err := StartLocal(t.Context(), framework.Assets(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := local.Stop(); err != nil {
			t.Errorf("stop: %v", err)
		}
	})
	body, err := fixture.Review()
	if err != nil {
		t.Fatal(err)
	}
	checkPatch(t, local.Target, body)

	r, err := Drive(t.Context(), local.Target, body, 4, 100*time.Millisecond, 500*time.Millisecond, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var report strings.Builder
	WriteHeader(&report)
	WriteRow(&report, r)
	t.Logf("\n%s", report.String())
	if r.Proto != "HTTP/1.1" {
		t.Errorf("protocol %s, want HTTP/1.1", r.Proto)
	}
	if r.Errors != 0 || r.Reviews() == 0 {
		t.Errorf("%d reviews, %d errors (first: %s)", r.Reviews(), r.Errors, r.FirstError)
	}
}

// TestRemoteTarget drives the in-process webhook as an outside one, through -url and
// -ca-file, and rejects a CA that did not sign its certificate.
func TestRemoteTarget(t *testing.T) {
	local, err := StartLocal(t.Context(), framework.Assets(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = local.Stop() })
	caFile := filepath.Join(t.TempDir(), "ca.crt")
	if err := os.WriteFile(caFile, local.CAPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	err = Main(t.Context(), []string{"-url", local.Target.URL, "-ca-file", caFile, "-duration", "200ms", "-warmup", "0s", "-concurrency", "2"}, &out)
	if err != nil || !strings.Contains(out.String(), local.Target.URL) {
		t.Fatalf("Main: %v\n%s", err, out.String())
	}
	t.Logf("\n%s", out.String())

	other, err := testcerts.NewCA("not-the-webhook's")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(caFile, other.CertPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	err = Main(t.Context(), []string{"-url", local.Target.URL, "-ca-file", caFile, "-duration", "100ms", "-warmup", "0s", "-concurrency", "1"}, &out)
	if err == nil || !strings.Contains(out.String(), "certificate") {
		t.Fatalf("a foreign CA was accepted: %v\n%s", err, out.String())
	}
}

// checkPatch posts one review and checks the whole answer: allowed, a JSON patch of
// fixture.Operations operations, the request's UID.
func checkPatch(t *testing.T, target *Target, body []byte) {
	t.Helper()
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: target.TLS.Clone()}}
	defer client.CloseIdleConnections()
	resp, err := client.Post(target.URL, "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var review admissionv1.AdmissionReview
	if err := json.NewDecoder(resp.Body).Decode(&review); err != nil || review.Response == nil {
		t.Fatalf("HTTP %d: no review (%v)", resp.StatusCode, err)
	}
	r := review.Response
	var ops []map[string]any
	if err := json.Unmarshal(r.Patch, &ops); err != nil {
		t.Fatal(err)
	}
	if !r.Allowed || r.PatchType == nil || *r.PatchType != admissionv1.PatchTypeJSONPatch || len(ops) != fixture.Operations || r.UID != "705ab4f5-6393-11e8-b7cc-42010a800002" {
		t.Fatalf("response: allowed %v, patch type %v, %d operations (want %d), uid %q", r.Allowed, r.PatchType, len(ops), fixture.Operations, r.UID)
	}
}

func TestPercentile(t *testing.T) {
	r := &Result{Duration: time.Second}
	for i := 100; i >= 1; i-- {
		r.Latencies = append(r.Latencies, time.Duration(i)*time.Millisecond)
	}
	r.sort()
	for _, c := range []struct {
		p    float64
		want time.Duration
	}{{0, time.Millisecond}, {50, 50 * time.Millisecond}, {90, 90 * time.Millisecond}, {99, 99 * time.Millisecond}, {99.9, 100 * time.Millisecond}, {100, 100 * time.Millisecond}} {
		if got := r.Percentile(c.p); got != c.want {
			t.Errorf("p%v = %v, want %v", c.p, got, c.want)
		}
	}
	if r.Rate() != 100 {
		t.Errorf("rate %v, want 100", r.Rate())
	}
	if got := (&Result{}).Percentile(50); got != 0 {
		t.Errorf("empty p50 = %v", got)
	}
}

func TestOptionsValidate(t *testing.T) {
	o := DefaultOptions()
	if err := o.Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	o.Duration, o.Concurrency, o.URL = 0, []int{0}, "http://x"
	err := o.Validate()
	for _, want := range []string{"-duration", "-concurrency: 0", "-url"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not mention %s", err, want)
		}
	}
}
