package emulator

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"time"
)

// File names written to Options.StateDir.
const (
	CAFileName        = "ca.crt"
	EndpointsFileName = "endpoints.json"
)

// IMDSHost is the address clients use for IMDS; Dialer sends it to the IMDS listener.
const IMDSHost = "169.254.169.254"

// Endpoints says where a running emulator listens; endpoints.json holds it as JSON.
type Endpoints struct {
	// HTTPS is the host:port of the Key Vault and Entra ID listener.
	HTTPS string `json:"https"`
	// NMI is the host:port of the NMI listener and NMIURL its token URL ("" = none).
	NMI    string `json:"nmi,omitempty"`
	NMIURL string `json:"nmiURL,omitempty"`
	// IMDS is the host:port of the IMDS listener ("" = none).
	IMDS string `json:"imds,omitempty"`
	// Proxy is the host:port of the CONNECT proxy for HTTPS_PROXY ("" = none).
	Proxy string `json:"proxy,omitempty"`
	// CAFile is the PEM file of the test CA.
	CAFile string `json:"caFile,omitempty"`
	// AuthorityHost is the Entra ID authority host to give credentials.
	AuthorityHost string `json:"authorityHost"`
	// Vaults maps vault names to their URLs.
	Vaults map[string]string `json:"vaults,omitempty"`
}

// WriteEndpoints writes e as indented JSON to file.
func WriteEndpoints(file string, e Endpoints) error {
	data, err := json.MarshalIndent(e, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(file, append(data, '\n'), 0o644); err != nil {
		return fmt.Errorf("write endpoints: %w", err)
	}
	return nil
}

// LoadEndpoints reads an endpoints.json file.
func LoadEndpoints(file string) (Endpoints, error) {
	var e Endpoints
	data, err := os.ReadFile(file)
	if err != nil {
		return e, fmt.Errorf("read endpoints: %w", err)
	}
	if err := json.Unmarshal(data, &e); err != nil {
		return e, fmt.Errorf("decode endpoints %s: %w", file, err)
	}
	return e, nil
}

// Dialer returns a DialContext that connects every address to httpsAddr, with two
// exceptions: the IMDS address 169.254.169.254 (any port) goes to imdsAddr when it is
// set, and loopback addresses (127.0.0.0/8, ::1, localhost) are dialled as given, so
// the same client also reaches NMI and the listeners by their own addresses.
func Dialer(httpsAddr, imdsAddr string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	d := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		return d.DialContext(ctx, "tcp", dialTarget(httpsAddr, imdsAddr, addr))
	}
}

// dialTarget is where Dialer connects for addr.
func dialTarget(httpsAddr, imdsAddr, addr string) string {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return httpsAddr
	}
	if host == IMDSHost && imdsAddr != "" {
		return imdsAddr
	}
	if ip := net.ParseIP(host); (ip != nil && ip.IsLoopback()) || host == "localhost" {
		return addr
	}
	return httpsAddr
}

// NewTransport is an HTTP/1.1 transport that dials the emulator (see Dialer) and
// trusts roots (the test CA) for TLS, with normal server-name verification.
func NewTransport(httpsAddr, imdsAddr string, roots *x509.CertPool) *http.Transport {
	return &http.Transport{
		DialContext:         Dialer(httpsAddr, imdsAddr),
		TLSClientConfig:     &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12},
		ForceAttemptHTTP2:   false,
		MaxIdleConnsPerHost: 16,
		IdleConnTimeout:     90 * time.Second,
		TLSHandshakeTimeout: 5 * time.Second,
	}
}

// NewHTTPClient is a client over NewTransport.
func NewHTTPClient(httpsAddr, imdsAddr string, roots *x509.CertPool) *http.Client {
	return &http.Client{Transport: NewTransport(httpsAddr, imdsAddr, roots)}
}

// ClientFromEndpoints builds the emulator client of another process from its
// endpoints.json and CA file.
func ClientFromEndpoints(e Endpoints) (*http.Client, error) {
	pem, err := os.ReadFile(e.CAFile)
	if err != nil {
		return nil, fmt.Errorf("read CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("no certificate in %s", e.CAFile)
	}
	return NewHTTPClient(e.HTTPS, e.IMDS, pool), nil
}
