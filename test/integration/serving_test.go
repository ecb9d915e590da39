package integration

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"

	"github.com/kvinject/kvinject/internal/testcerts"
	"github.com/kvinject/kvinject/internal/testkit"
	"github.com/kvinject/kvinject/pkg/contract"
	"github.com/kvinject/kvinject/pkg/webhook"
	"github.com/kvinject/kvinject/test/framework"
	"github.com/kvinject/kvinject/test/load/fixture"
)

// These tests drive the webhook program's own Run (what the binary runs after its
// flags are parsed), each on its own port, and post AdmissionReviews to it over HTTPS
// as the API server does.

// servingOptions are Options for a webhook on a free port of 127.0.0.1 serving the
// certificate in certDir, reaching the API server through kubeconfig.
func servingOptions(t *testing.T, certDir, kubeconfig string) *webhook.Options {
	t.Helper()
	o := webhook.NewOptions()
	o.Host, o.Port, o.CertDir = "127.0.0.1", testkit.MustFreePort(t), certDir
	o.MetricsBindAddress = "0"
	o.HealthProbeBindAddress = testkit.FreeAddr(t)
	o.Kubeconfig = kubeconfig
	o.ShutdownTimeout = 20 * time.Second
	o.Cluster.TenantID = tenant
	return o
}

// admissionReview encodes an AdmissionReview of a pod CREATE in namespace.
func admissionReview(t *testing.T, namespace string, pod any) []byte {
	t.Helper()
	b, err := fixture.ReviewOf(namespace, pod)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func clientFor(ca *testcerts.CA, serverName string, keepAlive bool) *http.Client {
	return &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{
		TLSClientConfig:   &tls.Config{RootCAs: ca.Pool(), ServerName: serverName, MinVersion: tls.VersionTLS12},
		DisableKeepAlives: !keepAlive,
	}}
}

// TestShutdownDrainsInFlightReviews stops Run while a review is in flight (its namespace
// lookup is held by a slow API server): the review still gets its patch, new
// connections are refused, and Run returns once the review is done.
func TestShutdownDrainsInFlightReviews(t *testing.T) {
	const ns = "created-a-moment-ago"
	proxy := cp.StartAPIProxy(t, func(r *http.Request) bool {
		return r.Method == http.MethodGet && r.URL.Path == "/api/v1/namespaces/"+ns
	})
	o := servingOptions(t, certDir, proxy.Kubeconfig)
	run := framework.RunWebhook(t, o, testr.New(t))

	pod := tutorialPod(ns, "in-flight")
	delete(pod.Annotations, contract.AnnotationVault) // needs the namespace's annotations
	addr := fmt.Sprintf("127.0.0.1:%d", o.Port)
	type result struct {
		status int
		body   []byte
		err    error
	}
	inFlight := make(chan result, 1)
	go func() {
		resp, err := clientFor(ca, "127.0.0.1", true).Post("https://"+addr+webhook.Path, "application/json", bytes.NewReader(admissionReview(t, ns, pod)))
		if err != nil {
			inFlight <- result{err: err}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		inFlight <- result{resp.StatusCode, b, err}
	}()
	// The namespace is not in the informers' cache: the webhook reads it live, and the
	// proxy holds that read.
	select {
	case path := <-proxy.Held:
		t.Logf("held %s", path)
	case <-time.After(20 * time.Second):
		t.Fatal("the webhook never read the uncached namespace from the API server")
	}
	go run.Stop()

	testkit.Eventually(t, 10*time.Second, "the listener closes while the review waits", func(context.Context) error {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return nil
		}
		c.Close()
		return fmt.Errorf("still accepting connections")
	})
	select {
	case err := <-run.Done():
		t.Fatalf("Run returned (%v) before the in-flight review finished", err)
	default:
	}
	proxy.Release()
	r := <-inFlight
	// The namespace does not exist: the pod is denied for want of a vault, which proves
	// the review ran to its end.
	if r.err != nil || r.status != http.StatusOK || !bytes.Contains(r.body, []byte(`no Key Vault: annotate the pod or namespace \"created-a-moment-ago\"`)) {
		t.Fatalf("in-flight review: HTTP %d, %v: %s", r.status, r.err, r.body)
	}
	select {
	case err := <-run.Done():
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Run did not return after the last review finished")
	}
}

// TestCertificateSwap serves reviews over real TLS while the certificate is renewed on
// disk the way the kubelet updates a Secret volume: every request before, during and
// after the swap succeeds, and new connections get the new certificate without a
// restart.
func TestCertificateSwap(t *testing.T) {
	first, err := ca.Issue("127.0.0.1", "kvinject-webhook.kvinject.svc")
	if err != nil {
		t.Fatal(err)
	}
	second, err := ca.Issue("127.0.0.1", "kvinject-webhook.kvinject.svc")
	if err != nil {
		t.Fatal(err)
	}
	vol := &secretVolume{dir: t.TempDir()}
	vol.write(t, first)
	o := servingOptions(t, vol.dir, cp.Kubeconfig)
	o.CertPollInterval = 200 * time.Millisecond
	framework.RunWebhook(t, o, testr.New(t))

	url := fmt.Sprintf("https://127.0.0.1:%d%s", o.Port, webhook.Path)
	body := admissionReview(t, "default", tutorialPod("default", "swap"))
	client := clientFor(ca, "kvinject-webhook.kvinject.svc", false)
	// call makes one review on a new connection and returns the serial it was served.
	call := func() (string, error) {
		resp, err := client.Post(url, "application/json", bytes.NewReader(body))
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK || !bytes.Contains(b, []byte(`"allowed":true`)) || !bytes.Contains(b, []byte(`"patch"`)) {
			return "", fmt.Errorf("HTTP %d: %s", resp.StatusCode, b)
		}
		return resp.TLS.PeerCertificates[0].SerialNumber.String(), nil
	}
	serialIs := func(want *x509.Certificate) func(context.Context) error {
		return func(context.Context) error {
			got, err := call()
			if err != nil {
				return err
			}
			if got != want.SerialNumber.String() {
				return fmt.Errorf("serial %s, want %s", got, want.SerialNumber)
			}
			return nil
		}
	}
	testkit.Eventually(t, 10*time.Second, "before the swap, the first certificate", serialIs(first.Cert))

	// Keep reviews flowing on a second goroutine through the swap; none may fail.
	var failures, calls atomic.Int64
	stop := make(chan struct{})
	var load sync.WaitGroup
	load.Add(1)
	go func() {
		defer load.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			calls.Add(1)
			if _, err := call(); err != nil {
				failures.Add(1)
				t.Errorf("review during the swap: %v", err)
			}
		}
	}()
	vol.write(t, second)
	testkit.Eventually(t, 10*time.Second, "after the swap, the second certificate", serialIs(second.Cert))
	close(stop)
	load.Wait()
	if calls.Load() == 0 || failures.Load() != 0 {
		t.Fatalf("%d of %d reviews during the swap failed", failures.Load(), calls.Load())
	}
}

// TestServesHTTP1Only: a client offering HTTP/2 first still gets HTTP/1.1; the
// admission port never speaks HTTP/2 (the target of the rapid-reset attacks).
func TestServesHTTP1Only(t *testing.T) {
	o := servingOptions(t, certDir, cp.Kubeconfig)
	framework.RunWebhook(t, o, testr.New(t))
	conn, err := tls.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", o.Port), &tls.Config{
		RootCAs: ca.Pool(), ServerName: "127.0.0.1", NextProtos: []string{"h2", "http/1.1"}, MinVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if got := conn.ConnectionState().NegotiatedProtocol; got != "http/1.1" {
		t.Fatalf("negotiated %q, want http/1.1", got)
	}
	h2 := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool(), ServerName: "127.0.0.1"}, ForceAttemptHTTP2: true}}
	resp, err := h2.Post(fmt.Sprintf("https://127.0.0.1:%d%s", o.Port, webhook.Path), "application/json", bytes.NewReader(admissionReview(t, "default", tutorialPod("default", "h2"))))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.Proto != "HTTP/1.1" || resp.StatusCode != http.StatusOK {
		t.Fatalf("%s %d", resp.Proto, resp.StatusCode)
	}
}

// secretVolume lays out files the way the kubelet projects a Secret: visible names are
// links into ..data, itself a link to a timestamped directory, swapped by one rename.
type secretVolume struct {
	dir string
	n   int
}

func (v *secretVolume) write(t *testing.T, pair *testcerts.Pair) {
	t.Helper()
	v.n++
	ts := fmt.Sprintf("..2026_11_27_%06d", v.n)
	if err := os.Mkdir(filepath.Join(v.dir, ts), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string][]byte{"tls.crt": pair.CertPEM, "tls.key": pair.KeyPEM} {
		if err := os.WriteFile(filepath.Join(v.dir, ts, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
		link := filepath.Join(v.dir, name)
		if _, err := os.Lstat(link); os.IsNotExist(err) {
			if err := os.Symlink(filepath.Join("..data", name), link); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := os.Symlink(ts, filepath.Join(v.dir, "..data_tmp")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(v.dir, "..data_tmp"), filepath.Join(v.dir, "..data")); err != nil {
		t.Fatal(err)
	}
}
