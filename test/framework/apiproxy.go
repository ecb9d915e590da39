package framework

import (
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"k8s.io/client-go/rest"

	"github.com/kvinject/kvinject/internal/testcerts"
)

// APIProxy is an HTTPS reverse proxy in front of the control plane's API server,
// authenticating as its admin, that holds the requests a test picks until Release: a
// slow API server, for tests of what a client does meanwhile. Clients reach it with
// Kubeconfig.
type APIProxy struct {
	// Kubeconfig is a kubeconfig file for the proxy.
	Kubeconfig string
	// Held receives the path of each request the proxy starts holding.
	Held chan string

	release chan struct{}
	once    sync.Once
}

// Release lets every held request, and every later one, through.
func (p *APIProxy) Release() { p.once.Do(func() { close(p.release) }) }

// StartAPIProxy starts a proxy that holds the requests for which hold returns true. It
// stops when the test ends.
func (cp *ControlPlane) StartAPIProxy(t *testing.T, hold func(*http.Request) bool) *APIProxy {
	t.Helper()
	upstream, err := url.Parse(cp.Config.Host)
	if err != nil {
		t.Fatal(err)
	}
	transport, err := rest.TransportFor(cp.Config)
	if err != nil {
		t.Fatal(err)
	}
	p := &APIProxy{Held: make(chan string, 16), release: make(chan struct{})}
	rp := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(upstream)
			r.Out.Header.Del("Authorization")
		},
		Transport:     transport,
		FlushInterval: -1, // watches stream
	}
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if hold(r) {
			select {
			case p.Held <- r.URL.Path:
			default:
			}
			select {
			case <-p.release:
			case <-r.Context().Done():
				return
			}
		}
		rp.ServeHTTP(w, r)
	})
	ca, err := testcerts.NewCA("kvinject-apiproxy")
	if err != nil {
		t.Fatal(err)
	}
	pair, err := ca.Issue("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	cert, err := pair.TLSCertificate()
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: handler}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() {
		p.Release()
		_ = srv.Close()
	})
	p.Kubeconfig = filepath.Join(t.TempDir(), "proxy.kubeconfig")
	caFile := filepath.Join(filepath.Dir(p.Kubeconfig), "ca.crt")
	if err := os.WriteFile(caFile, ca.CertPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	kc := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters: [{name: proxy, cluster: {server: "https://%s", certificate-authority: %q}}]
users: [{name: proxy, user: {token: proxied}}]
contexts: [{name: proxy, context: {cluster: proxy, user: proxy}}]
current-context: proxy
`, ln.Addr().(*net.TCPAddr).String(), caFile)
	if err := os.WriteFile(p.Kubeconfig, []byte(kc), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}
