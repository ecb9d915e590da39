package webhook

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/kvinject/kvinject/internal/testcerts"
	"github.com/kvinject/kvinject/pkg/mutate"
)

// blockingLookup holds every namespace lookup until release is closed.
type blockingLookup struct {
	entered chan struct{}
	release chan struct{}
}

func (b blockingLookup) NamespaceAnnotations(context.Context, string) (map[string]string, error) {
	b.entered <- struct{}{}
	<-b.release
	return map[string]string{mutate.AnnotationVault: "team-vault"}, nil
}

func (b blockingLookup) ServiceAccountAnnotations(context.Context, string, string) (map[string]string, error) {
	return nil, nil
}

// TestShutdownDrainsInFlightReviews stops the server while a review is in flight: the
// review still gets its patch, new connections are refused, and Serve returns.
func TestShutdownDrainsInFlightReviews(t *testing.T) {
	ca, err := testcerts.NewCA("kvinject-test-ca")
	if err != nil {
		t.Fatal(err)
	}
	pair, err := ca.Issue("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := pair.WriteFiles(dir); err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.Host, cfg.Port, cfg.CertDir = "127.0.0.1", freePort(t), dir
	lookup := blockingLookup{entered: make(chan struct{}, 1), release: make(chan struct{})}
	h, _ := newTestHandler(t, lookup)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	stopped := make(chan error, 1)
	go func() { stopped <- Serve(ctx, cfg, h) }()

	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca.CertPEM)
	client := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	addr := fmt.Sprintf("127.0.0.1:%d", cfg.Port)
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond)
	}

	pod := tutorialPod()
	delete(pod.Annotations, mutate.AnnotationVault) // forces the (blocking) namespace lookup
	type result struct {
		status int
		body   []byte
		err    error
	}
	inFlight := make(chan result, 1)
	go func() {
		resp, err := client.Post("https://"+addr+Path, "application/json", bytes.NewReader(review(t, pod, nil)))
		if err != nil {
			inFlight <- result{err: err}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		inFlight <- result{resp.StatusCode, b, err}
	}()
	<-lookup.entered
	cancel() // shut down with the review in flight

	// The listener closes: new connections are refused while the review waits.
	deadline = time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			break
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatal("the server still accepts connections after shutdown began")
		}
		time.Sleep(10 * time.Millisecond)
	}
	select {
	case err := <-stopped:
		t.Fatalf("Serve returned (%v) before the in-flight review finished", err)
	default:
	}
	close(lookup.release)
	r := <-inFlight
	if r.err != nil || r.status != http.StatusOK || !bytes.Contains(r.body, []byte(`"patch"`)) {
		t.Fatalf("in-flight review: HTTP %d, %v: %s", r.status, r.err, r.body)
	}
	select {
	case err := <-stopped:
		if err != nil {
			t.Fatalf("Serve: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after the last review finished")
	}
}
