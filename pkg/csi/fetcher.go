package csi

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"

	"github.com/kvinject/kvinject/pkg/identity"
	"github.com/kvinject/kvinject/pkg/keyvault"
)

// ObjectFetcher fetches and renders a volume's objects with the pod's identity. It
// returns every file or none. Implementations are safe for concurrent use.
type ObjectFetcher interface {
	Fetch(ctx context.Context, p Parameters, id identity.Request, o FetchOptions) (*keyvault.Fetched, error)
}

// FetchOptions are a fetch's per-call settings.
type FetchOptions struct {
	// Fresh reads every object from Key Vault now (a first publish, or changed
	// parameters); otherwise an object the same identity read within the rotation
	// interval serves.
	Fresh bool
	// MaxBytes bounds the files in pages (0 = none).
	MaxBytes int64
}

// AzureFetcherOptions configures NewAzureFetcher. The zero value talks to Azure with
// the package defaults.
type AzureFetcherOptions struct {
	// Transport carries every request to Entra ID and Key Vault: one per node. Nil
	// uses azcore's default. Tests route it to the emulator.
	Transport policy.Transporter
	// NMIEndpoint and NMIClient reach AAD Pod Identity's NMI.
	NMIEndpoint string
	NMIClient   *http.Client
	// Concurrency bounds the Key Vault requests in flight per volume.
	Concurrency int
	// MaxRequestsInFlight and MaxBytesInFlight bound the node as a whole.
	MaxRequestsInFlight int
	MaxBytesInFlight    int64
	// ObjectTTL is how long an object read serves refreshes of the same identity: the
	// rotation interval.
	ObjectTTL time.Duration
	// Metrics receives the Key Vault request metrics; nil records nothing.
	Metrics *Metrics
	// Retry overrides the Key Vault clients' retry options (nil = none: the node's
	// per-vault backoff decides when a vault is asked again).
	Retry *policy.RetryOptions
	// NewSource is the Key Vault client seam (nil = keyvault.NewSource).
	NewSource func(vault string, cred azcore.TokenCredential, opts keyvault.SourceOptions) (keyvault.Source, error)
	// Now is the clock of the caches and of the per-vault backoff (nil = time.Now).
	Now func() time.Time
}

// AzureFetcher is the ObjectFetcher of the running plugin: credentials cached per
// identity (identity.Cache) and Key Vault read through the node's pool
// (keyvault.Pool), so that tokens, clients, connections and objects are reused across
// publishes and volumes, and never across identities.
type AzureFetcher struct {
	opts  AzureFetcherOptions
	creds *identity.Cache
	pool  *keyvault.Pool
	gate  *keyvault.Gate
}

// NewAzureFetcher returns the fetcher.
func NewAzureFetcher(opts AzureFetcherOptions) *AzureFetcher {
	if opts.Concurrency < 1 {
		opts.Concurrency = DefaultMaxConcurrentFetches
	}
	gate := keyvault.NewGate(keyvault.GateOptions{MaxRequestsInFlight: opts.MaxRequestsInFlight, OnSkip: opts.Metrics.backoffSkip, Now: opts.Now})
	var perRetry []policy.Policy
	if opts.Metrics != nil {
		perRetry = append(perRetry, opts.Metrics.RequestPolicy())
	}
	return &AzureFetcher{
		opts:  opts,
		creds: identity.NewCache(identity.CacheOptions{Transport: opts.Transport, NMIEndpoint: opts.NMIEndpoint, NMIClient: opts.NMIClient, Now: opts.Now}),
		gate:  gate,
		pool: keyvault.NewPool(keyvault.PoolOptions{
			Transport: opts.Transport, Gate: gate, PerRetryPolicies: perRetry, ObjectTTL: opts.ObjectTTL,
			MaxBytesInFlight: opts.MaxBytesInFlight, Retry: opts.Retry, NewSource: opts.NewSource, Now: opts.Now,
		}),
	}
}

// Pool is the fetcher's Key Vault pool (for its statistics).
func (f *AzureFetcher) Pool() *keyvault.Pool { return f.pool }

// Fetch implements ObjectFetcher.
func (f *AzureFetcher) Fetch(ctx context.Context, p Parameters, id identity.Request, o FetchOptions) (*keyvault.Fetched, error) {
	key, cred, err := f.creds.Credential(id, p.Cloud.Configuration)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", id.Describe(), err)
	}
	fetched, err := f.pool.Fetch(ctx, keyvault.FetchRequest{
		Vault: p.Vault, Cloud: p.Cloud, Identity: key, Credential: cred, Describe: id.Describe(),
		Objects: p.Objects, Fresh: o.Fresh, MaxBytes: o.MaxBytes, Concurrency: f.opts.Concurrency,
	})
	if err != nil {
		// NMI tells which identity it used: name it, so the message says whom to grant.
		if c, ok := cred.(interface{ ClientID() string }); ok && c.ClientID() != "" {
			who := fmt.Sprintf("pod identity (client ID %q) of pod %s/%s", c.ClientID(), id.PodNamespace, id.PodName)
			forEachObjectError(err, func(oe *keyvault.ObjectError) { oe.Identity = who })
		}
	}
	return fetched, err
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
