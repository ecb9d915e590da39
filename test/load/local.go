package load

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/kvinject/kvinject/internal/testcerts"
	"github.com/kvinject/kvinject/pkg/mutate"
	"github.com/kvinject/kvinject/pkg/webhook"
)

// Local is the webhook served in-process on 127.0.0.1.
type Local struct {
	// Target reaches the server; its TLS config trusts the throw-away CA.
	Target *Target
	// CAPEM is the throw-away CA, for clients outside this process.
	CAPEM []byte

	cancel context.CancelFunc
	done   chan error
	dir    string
}

// StartLocal serves the webhook in-process: webhook.Serve (the program's server, TLS
// settings and certificate reloading) on a free port of 127.0.0.1, with a certificate
// issued by a throw-away CA into a temporary directory, and a handler whose lookups
// find no namespace or service-account annotations. It returns once the server
// answers TLS handshakes. Call Stop to shut it down.
func StartLocal(ctx context.Context) (*Local, error) {
	dir, err := os.MkdirTemp("", "kvinject-load-")
	if err != nil {
		return nil, err
	}
	l := &Local{dir: dir, done: make(chan error, 1)}
	if err := l.start(ctx); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return l, nil
}

func (l *Local) start(ctx context.Context) error {
	ca, err := testcerts.NewCA("kvinject-load-ca")
	if err != nil {
		return err
	}
	pair, err := ca.Issue("127.0.0.1")
	if err != nil {
		return err
	}
	if err := pair.WriteFiles(l.dir); err != nil {
		return err
	}
	port, err := freePort()
	if err != nil {
		return err
	}
	cfg := webhook.DefaultConfig()
	cfg.Host, cfg.Port, cfg.CertDir = "127.0.0.1", port, l.dir
	metrics, err := webhook.NewMetrics(prometheus.NewRegistry())
	if err != nil {
		return err
	}
	h := webhook.NewHandler(mutate.NewMutator(mutate.DefaultConfig(), noLookup{}), metrics, logr.Discard())

	ctx, l.cancel = context.WithCancel(ctx)
	go func() { l.done <- webhook.Serve(ctx, cfg, h) }()

	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca.CertPEM)
	l.CAPEM = ca.CertPEM
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	l.Target = &Target{
		URL:       "https://" + addr + webhook.Path,
		TLS:       &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool, ServerName: "127.0.0.1"},
		InProcess: true,
	}
	if err := waitTLS(ctx, addr, l.Target.TLS, l.done); err != nil {
		l.cancel()
		return err
	}
	return nil
}

// Stop shuts the server down, waits for it, and removes its certificate.
func (l *Local) Stop() error {
	l.cancel()
	err := <-l.done
	if rerr := os.RemoveAll(l.dir); err == nil {
		err = rerr
	}
	return err
}

// waitTLS returns when addr completes a TLS handshake, or after 10 s, or when the
// server ends (done).
func waitTLS(ctx context.Context, addr string, cfg *tls.Config, done <-chan error) error {
	deadline := time.Now().Add(10 * time.Second)
	dialer := &tls.Dialer{Config: cfg, NetDialer: &net.Dialer{Timeout: time.Second}}
	for {
		conn, err := dialer.DialContext(ctx, "tcp", addr)
		if err == nil {
			return conn.Close()
		}
		select {
		case serr := <-done:
			return fmt.Errorf("webhook server ended: %w", errors.Join(serr, err))
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("webhook server not serving on %s after 10s: %w", addr, err)
		}
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// noLookup finds no namespace or service-account annotations: the fixture pod names
// its vault, tenant and identity itself.
type noLookup struct{}

func (noLookup) NamespaceAnnotations(context.Context, string) (map[string]string, error) {
	return nil, nil
}

func (noLookup) ServiceAccountAnnotations(context.Context, string, string) (map[string]string, error) {
	return nil, nil
}
