package csi

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"

	"github.com/kvinject/kvinject/pkg/identity"
	"github.com/kvinject/kvinject/pkg/keyvault"
)

// ObjectFetcher fetches and renders a volume's objects with the pod's identity. It
// returns every file or none. Implementations are safe for concurrent use.
type ObjectFetcher interface {
	Fetch(ctx context.Context, p Parameters, id identity.Request) ([]keyvault.File, error)
}

// AzureFetcherOptions configures NewAzureFetcher. The zero value talks to Azure with
// azcore's defaults.
type AzureFetcherOptions struct {
	// Transport carries every request to Entra ID and Key Vault; nil uses azcore's
	// default. Tests route it to the emulator.
	Transport policy.Transporter
	// NMIEndpoint and NMIClient reach AAD Pod Identity's NMI.
	NMIEndpoint string
	NMIClient   *http.Client
	// Concurrency bounds the Key Vault requests in flight per volume.
	Concurrency int
	// Metrics receives the Key Vault request metrics; nil records nothing.
	Metrics *Metrics
	// Retry overrides azcore's retry options when non-nil.
	Retry *policy.RetryOptions
	// NewCredential is the token source seam (nil = identity.NewCredential).
	NewCredential func(identity.Request, identity.Options) (azcore.TokenCredential, error)
	// NewSource is the Key Vault client seam (nil = keyvault.NewSource).
	NewSource func(vault string, cred azcore.TokenCredential, opts keyvault.SourceOptions) (keyvault.Source, error)
}

// NewAzureFetcher returns the ObjectFetcher that uses azidentity or NMI for the token
// and the Azure SDK's Key Vault clients for the objects.
func NewAzureFetcher(opts AzureFetcherOptions) ObjectFetcher {
	if opts.NewCredential == nil {
		opts.NewCredential = identity.NewCredential
	}
	if opts.NewSource == nil {
		opts.NewSource = keyvault.NewSource
	}
	if opts.Concurrency < 1 {
		opts.Concurrency = DefaultMaxConcurrentFetches
	}
	return &azureFetcher{opts: opts}
}

type azureFetcher struct{ opts AzureFetcherOptions }

func (f *azureFetcher) Fetch(ctx context.Context, p Parameters, id identity.Request) ([]keyvault.File, error) {
	cred, err := f.opts.NewCredential(id, identity.Options{
		Cloud:       p.Cloud.Configuration,
		Transport:   f.opts.Transport,
		NMIEndpoint: f.opts.NMIEndpoint,
		NMIClient:   f.opts.NMIClient,
	})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", id.Describe(), err)
	}
	var perRetry []policy.Policy
	if f.opts.Metrics != nil {
		perRetry = append(perRetry, f.opts.Metrics.RequestPolicy())
	}
	src, err := f.opts.NewSource(p.Vault, cred, keyvault.SourceOptions{
		Cloud:            p.Cloud,
		Transport:        f.opts.Transport,
		PerRetryPolicies: perRetry,
		Retry:            f.opts.Retry,
	})
	if err != nil {
		return nil, err
	}
	files, err := keyvault.Fetch(ctx, src, p.Objects, keyvault.FetchOptions{
		Vault:       p.Vault,
		Identity:    id.Describe(),
		Concurrency: f.opts.Concurrency,
	})
	if err != nil {
		// NMI tells which identity it used: name it, so the message says whom to grant.
		if c, ok := cred.(interface{ ClientID() string }); ok && c.ClientID() != "" {
			who := fmt.Sprintf("pod identity (client ID %q) of pod %s/%s", c.ClientID(), id.PodNamespace, id.PodName)
			forEachObjectError(err, func(oe *keyvault.ObjectError) { oe.Identity = who })
		}
	}
	return files, err
}

// forEachObjectError calls fn on every *keyvault.ObjectError in err's tree.
func forEachObjectError(err error, fn func(*keyvault.ObjectError)) {
	switch e := err.(type) {
	case *keyvault.ObjectError:
		fn(e)
	case interface{ Unwrap() []error }:
		for _, x := range e.Unwrap() {
			forEachObjectError(x, fn)
		}
	case interface{ Unwrap() error }:
		forEachObjectError(e.Unwrap(), fn)
	}
}

// AzureHTTPOptions configures NewAzureHTTPClient.
type AzureHTTPOptions struct {
	// IdleConnsPerHost is how many idle connections per host are kept for reuse by
	// later publishes; set it to the fetch concurrency bound.
	IdleConnsPerHost int
	// DialAddress (test only) sends every dial to this host:port; host names, and so
	// TLS names and Key Vault's challenge checks, stay real.
	DialAddress string
	// CAFile (test only) is a PEM file of CAs trusted besides the system's.
	CAFile string
}

// NewAzureHTTPClient returns the HTTP client for Entra ID and Key Vault: HTTP/2 when
// the server offers it, and enough idle connections kept per host that a volume's
// concurrent fetches reuse connections from one publish to the next.
func NewAzureHTTPClient(opts AzureHTTPOptions) (*http.Client, error) {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.ForceAttemptHTTP2 = true
	if opts.IdleConnsPerHost > 0 {
		t.MaxIdleConnsPerHost = opts.IdleConnsPerHost
		t.MaxIdleConns = 4 * opts.IdleConnsPerHost
	}
	if opts.DialAddress != "" {
		d := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
		addr := opts.DialAddress
		t.DialContext = func(ctx context.Context, network, _ string) (net.Conn, error) {
			return d.DialContext(ctx, network, addr)
		}
	}
	if opts.CAFile != "" {
		pem, err := os.ReadFile(opts.CAFile)
		if err != nil {
			return nil, fmt.Errorf("read --azure-ca-file: %w", err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil || pool == nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--azure-ca-file %s holds no PEM certificate", opts.CAFile)
		}
		t.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	return &http.Client{Transport: t}, nil
}
