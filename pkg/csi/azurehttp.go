package csi

import (
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"net/url"
)

// AzureHTTPOptions configures NewAzureHTTPClient.
type AzureHTTPOptions struct {
	// IdleConnsPerHost is how many idle connections per host are kept for reuse by
	// later publishes; set it to the fetch concurrency bound.
	IdleConnsPerHost int
	// Proxy chooses the proxy of a request (nil = http.ProxyFromEnvironment:
	// HTTPS_PROXY and NO_PROXY).
	Proxy func(*http.Request) (*url.URL, error)
	// RootCAs are the CAs trusted for Entra ID and Key Vault (nil = the system's, which
	// SSL_CERT_FILE and SSL_CERT_DIR replace).
	RootCAs *x509.CertPool
}

// NewAzureHTTPClient returns the HTTP client for Entra ID and Key Vault. It reaches
// Azure the way any Go program behind a corporate proxy does: through HTTPS_PROXY
// unless NO_PROXY exempts the host, trusting the system's CAs or SSL_CERT_FILE's. It
// speaks HTTP/2 when the server offers it, and keeps enough idle connections per host
// that a volume's concurrent fetches reuse connections from one publish to the next.
func NewAzureHTTPClient(opts AzureHTTPOptions) *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.ForceAttemptHTTP2 = true
	if opts.Proxy != nil {
		t.Proxy = opts.Proxy
	}
	if opts.IdleConnsPerHost > 0 {
		t.MaxIdleConnsPerHost = opts.IdleConnsPerHost
		t.MaxIdleConns = 4 * opts.IdleConnsPerHost
	}
	t.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: opts.RootCAs}
	return &http.Client{Transport: t}
}
