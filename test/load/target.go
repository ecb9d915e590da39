package load

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/url"
	"os"
)

// Target is a webhook endpoint to drive.
type Target struct {
	// URL is the admission endpoint, https://host:port/mutate-pod.
	URL string
	// TLS verifies the webhook's certificate; clients clone it.
	TLS *tls.Config
	// InProcess says the server shares this process (and its CPU figures).
	InProcess bool
}

// RemoteTarget returns the target of a running webhook at rawURL whose certificate is
// signed by the PEM CA in caFile (empty: the system roots) for serverName (empty: the
// URL's host).
func RemoteTarget(rawURL, caFile, serverName string) (*Target, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("parse %q: %w", rawURL, err)
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: serverName}
	if serverName == "" {
		cfg.ServerName = u.Hostname()
	}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("read CA: %w", err)
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s holds no PEM certificate", caFile)
		}
	}
	return &Target{URL: rawURL, TLS: cfg}, nil
}
