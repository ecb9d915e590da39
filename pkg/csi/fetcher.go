package csi

import (
	"context"
	"fmt"
	"net/http"

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
