package emulator

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"net"
	"time"
)

// tlsMaterial is the test CA and the HTTPS server certificate it issued.
type tlsMaterial struct {
	caPEM  []byte
	ca     *x509.Certificate
	server tls.Certificate
}

// serverNames are the DNS SANs of the HTTPS certificate: every host the listener serves.
func serverNames() []string {
	names := []string{"localhost"}
	for _, c := range clouds {
		names = append(names, "*."+c.VaultSuffix, c.LoginHost)
	}
	return names
}

// newTLSMaterial generates a CA (ECDSA P-256, valid for a day around now) and a server
// certificate for serverNames and 127.0.0.1. ECDSA keeps start-up fast.
func newTLSMaterial(now time.Time) (*tlsMaterial, error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          randomSerial(),
		Subject:               pkix.Name{CommonName: "kvinject Azure emulator test CA", Organization: []string{"kvinject"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(7 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, caKey.Public(), caKey)
	if err != nil {
		return nil, fmt.Errorf("create CA: %w", err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: randomSerial(),
		Subject:      pkix.Name{CommonName: "*." + PublicCloud.VaultSuffix},
		DNSNames:     serverNames(),
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(7 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, key.Public(), caKey)
	if err != nil {
		return nil, fmt.Errorf("create server certificate: %w", err)
	}
	return &tlsMaterial{
		caPEM:  pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		ca:     ca,
		server: tls.Certificate{Certificate: [][]byte{der, caDER}, PrivateKey: key},
	}, nil
}

func (m *tlsMaterial) pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(m.ca)
	return p
}

func (m *tlsMaterial) serverConfig() *tls.Config {
	return &tls.Config{
		Certificates: []tls.Certificate{m.server},
		MinVersion:   tls.VersionTLS12,
		NextProtos:   []string{"http/1.1"},
	}
}
