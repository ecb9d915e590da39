package emulator

import (
	"crypto/tls"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// proxiedClient reaches the emulator the way the node plugin does in every test: through
// the CONNECT proxy (HTTPS_PROXY) and trusting the test CA (SSL_CERT_FILE), with the
// real host names and no dial rewriting.
func proxiedClient(t *testing.T, e *Emulator) *http.Client {
	t.Helper()
	u, err := url.Parse(e.ProxyURL())
	if err != nil {
		t.Fatal(err)
	}
	return &http.Client{Transport: &http.Transport{
		Proxy:             http.ProxyURL(u),
		TLSClientConfig:   &tls.Config{RootCAs: e.CertPool(), MinVersion: tls.VersionTLS12},
		ForceAttemptHTTP2: true,
	}}
}

// TestProxyTunnelsAndCountsConnections: a client behind the proxy reaches Key Vault by
// its real name (the unauthenticated GET gets Key Vault's challenge); a reused
// connection adds no TLS handshake; a tunnel elsewhere is refused.
func TestProxyTunnelsAndCountsConnections(t *testing.T) {
	t.Parallel()
	for _, http2 := range []bool{false, true} {
		e := startWith(t, Options{Seed: &Seed{Tenants: []TenantSeed{{ID: tenant1}}, Vaults: []VaultSeed{{Name: testVault, Tenant: tenant1}}}, HTTP2: http2})
		c := proxiedClient(t, e)
		for i := range 3 {
			resp, err := c.Get(e.VaultURL(testVault) + "secrets/x/?api-version=7.5")
			if err != nil {
				t.Fatalf("http2=%v request %d: %v", http2, i, err)
			}
			_, _ = io.Copy(io.Discard, resp.Body) // drained, so the connection is reused
			resp.Body.Close()
			want := map[bool]string{false: "HTTP/1.1", true: "HTTP/2.0"}[http2]
			if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(resp.Header.Get("WWW-Authenticate"), "authorization=") || resp.Proto != want {
				t.Fatalf("http2=%v: %s %d, %q", http2, resp.Proto, resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
			}
		}
		if got := e.Connections(); got != (Connections{TLSHandshakes: 1, ProxyTunnels: 1}) {
			t.Fatalf("http2=%v: connections %+v, want one tunnel and one handshake for three requests", http2, got)
		}
		if _, err := c.Get("https://example.com/"); err == nil {
			t.Fatal("the proxy tunnelled to a host the emulator does not serve")
		}
		if got := e.Connections().ProxyRefusals; got != 1 {
			t.Fatalf("refusals %d", got)
		}
		e.ResetConnections()
		if got := e.Connections(); got != (Connections{}) {
			t.Fatalf("after reset: %+v", got)
		}
	}
}
