package emulator

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"sync/atomic"

	"github.com/kvinject/kvinject/internal/testcerts"
)

// tlsMaterial is the test CA and the HTTPS server certificate it issued.
type tlsMaterial struct {
	ca     *testcerts.CA
	server tls.Certificate
	// handshakes counts TLS handshakes begun on the HTTPS listener (a ClientHello
	// received): one per new connection, so a client that reuses its connections
	// adds none.
	handshakes atomic.Int64
	http2      bool
}

// serverNames are the DNS SANs of the HTTPS certificate: every host the listener serves.
func serverNames() []string {
	names := []string{"localhost", "127.0.0.1", "::1"}
	for _, c := range clouds {
		names = append(names, "*."+c.VaultSuffix, c.LoginHost)
	}
	return names
}

// newTLSMaterial issues the HTTPS certificate for serverNames from ca, or from a new
// CA when ca is nil.
func newTLSMaterial(ca *testcerts.CA, http2 bool) (*tlsMaterial, error) {
	if ca == nil {
		var err error
		if ca, err = testcerts.NewCA("kvinject Azure emulator test CA"); err != nil {
			return nil, err
		}
	}
	pair, err := ca.Issue(serverNames()...)
	if err != nil {
		return nil, fmt.Errorf("create server certificate: %w", err)
	}
	cert, err := pair.TLSCertificate()
	if err != nil {
		return nil, err
	}
	return &tlsMaterial{ca: ca, server: cert, http2: http2}, nil
}

func (m *tlsMaterial) pool() *x509.CertPool { return m.ca.Pool() }

// serverConfig serves HTTP/1.1 only, or HTTP/2 as well when the emulator was started
// with Options.HTTP2 (the real service offers both).
func (m *tlsMaterial) serverConfig() *tls.Config {
	protos := []string{"http/1.1"}
	if m.http2 {
		protos = []string{"h2", "http/1.1"}
	}
	return &tls.Config{
		Certificates: []tls.Certificate{m.server},
		MinVersion:   tls.VersionTLS12,
		NextProtos:   protos,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			m.handshakes.Add(1)
			return nil, nil
		},
	}
}
