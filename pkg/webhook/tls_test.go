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
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kvinject/kvinject/internal/testcerts"
)

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

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// TestCertificateSwap serves reviews over real TLS while the certificate is renewed on
// disk: every request before, during and after the swap succeeds, and new connections
// get the new certificate without a restart.
func TestCertificateSwap(t *testing.T) {
	ca, err := testcerts.NewCA("kvinject-test-ca")
	if err != nil {
		t.Fatal(err)
	}
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

	cfg := DefaultConfig()
	cfg.Host, cfg.Port, cfg.CertDir = "127.0.0.1", freePort(t), vol.dir
	cfg.CertPollInterval = 200 * time.Millisecond
	h, _ := newTestHandler(t, staticLookup{})
	ctx, cancel := context.WithCancel(t.Context())
	served := make(chan error, 1)
	go func() { served <- Serve(ctx, cfg, h) }()
	t.Cleanup(func() { cancel(); <-served })

	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca.CertPEM)
	url := fmt.Sprintf("https://127.0.0.1:%d%s", cfg.Port, Path)
	body := review(t, tutorialPod(), nil)
	// call makes one review on a new connection and returns the serial it was served.
	call := func() (string, error) {
		client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
			TLSClientConfig:   &tls.Config{RootCAs: pool, ServerName: "kvinject-webhook.kvinject.svc"},
			DisableKeepAlives: true,
		}}
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

	var serial string
	deadline := time.Now().Add(10 * time.Second)
	for serial, err = call(); err != nil && time.Now().Before(deadline); serial, err = call() {
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil || serial != first.Cert.SerialNumber.String() {
		t.Fatalf("before the swap: serial %s, %v; want %s", serial, err, first.Cert.SerialNumber)
	}

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
	deadline = time.Now().Add(10 * time.Second)
	for serial, err = call(); (err != nil || serial != second.Cert.SerialNumber.String()) && time.Now().Before(deadline); serial, err = call() {
		time.Sleep(50 * time.Millisecond)
	}
	close(stop)
	load.Wait()
	if err != nil || serial != second.Cert.SerialNumber.String() {
		t.Fatalf("after the swap: serial %s, %v; want %s", serial, err, second.Cert.SerialNumber)
	}
	if calls.Load() == 0 || failures.Load() != 0 {
		t.Fatalf("%d of %d reviews during the swap failed", failures.Load(), calls.Load())
	}
}
