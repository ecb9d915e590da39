package keyvault

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azcertificates"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azsecrets"

	"github.com/kvinject/kvinject/pkg/contract"
)

// Secret is a Key Vault secret as fetched: the value and what rendering needs.
type Secret struct {
	// Value is the secret's value, exactly as Key Vault returned it.
	Value string
	// ContentType is the secret's content type; "application/x-pkcs12" or
	// "application/x-pem-file" for a secret backing a certificate.
	ContentType string
	// KeyID is non-empty when the secret backs a certificate (Key Vault's kid).
	KeyID string
	// Version is the version that was read.
	Version string
}

// Key is the public part of a Key Vault key, as a JSON Web Key.
type Key struct {
	// Kty is the key type: RSA, RSA-HSM, EC, EC-HSM.
	Kty string
	// N and E are the RSA modulus and exponent.
	N, E []byte
	// Crv, X and Y are the EC curve and point.
	Crv  string
	X, Y []byte
	// Version is the version that was read.
	Version string
}

// Certificate is a Key Vault certificate: its leaf in DER.
type Certificate struct {
	// CER is the DER encoding of the leaf certificate.
	CER []byte
	// Version is the version that was read.
	Version string
}

// Source reads objects from one vault. The version "" means the latest. Errors for a
// Key Vault answer wrap an *azcore.ResponseError. Implementations are safe for
// concurrent use.
type Source interface {
	GetSecret(ctx context.Context, name, version string) (Secret, error)
	GetKey(ctx context.Context, name, version string) (Key, error)
	GetCertificate(ctx context.Context, name, version string) (Certificate, error)
}

// SourceOptions configures NewSource.
type SourceOptions struct {
	// Cloud selects the vault's DNS suffix and the token audience.
	Cloud Cloud
	// Transport sends the HTTP requests; nil uses azcore's default. Tests route it to
	// the emulator.
	Transport policy.Transporter
	// PerRetryPolicies run on every HTTP attempt (retries and challenges included); the
	// plugin's request metrics hang here.
	PerRetryPolicies []policy.Policy
	// Retry overrides azcore's retry options when non-nil.
	Retry *policy.RetryOptions
}

// sdkSource is the Source backed by the unmodified Azure SDK clients, each built on
// first use: most volumes read secrets only, and a node holds a source per vault and
// identity (with pod identity, per pod).
type sdkSource struct {
	url  string
	cred azcore.TokenCredential
	co   azcore.ClientOptions

	secretsOnce, keysOnce, certsOnce sync.Once
	secrets                          *azsecrets.Client
	keys                             *azkeys.Client
	certs                            *azcertificates.Client
	secretsErr, keysErr, certsErr    error
}

// NewSource returns a Source for the named vault that authenticates with cred. It sends
// no request until asked for an object.
func NewSource(vault string, cred azcore.TokenCredential, opts SourceOptions) (Source, error) {
	if err := contract.ValidateVaultName(vault); err != nil {
		return nil, fmt.Errorf("keyvaultName: %w", err)
	}
	if cred == nil {
		return nil, errors.New("keyvault: nil credential")
	}
	co := azcore.ClientOptions{
		Cloud:            opts.Cloud.Configuration,
		Transport:        opts.Transport,
		PerRetryPolicies: opts.PerRetryPolicies,
	}
	if opts.Retry != nil {
		co.Retry = *opts.Retry
	}
	return &sdkSource{url: opts.Cloud.VaultURL(vault), cred: cred, co: co}, nil
}

func (s *sdkSource) GetSecret(ctx context.Context, name, version string) (Secret, error) {
	s.secretsOnce.Do(func() {
		if s.secrets, s.secretsErr = azsecrets.NewClient(s.url, s.cred, &azsecrets.ClientOptions{ClientOptions: s.co}); s.secretsErr != nil {
			s.secretsErr = fmt.Errorf("secrets client: %w", s.secretsErr)
		}
	})
	if s.secretsErr != nil {
		return Secret{}, s.secretsErr
	}
	resp, err := s.secrets.GetSecret(ctx, name, version, nil)
	if err != nil {
		return Secret{}, err
	}
	out := Secret{Value: deref(resp.Value), ContentType: deref(resp.ContentType)}
	if resp.ID != nil {
		out.Version = resp.ID.Version()
	}
	if resp.KID != nil {
		out.KeyID = string(*resp.KID)
	}
	return out, nil
}

func (s *sdkSource) GetKey(ctx context.Context, name, version string) (Key, error) {
	s.keysOnce.Do(func() {
		if s.keys, s.keysErr = azkeys.NewClient(s.url, s.cred, &azkeys.ClientOptions{ClientOptions: s.co}); s.keysErr != nil {
			s.keysErr = fmt.Errorf("keys client: %w", s.keysErr)
		}
	})
	if s.keysErr != nil {
		return Key{}, s.keysErr
	}
	resp, err := s.keys.GetKey(ctx, name, version, nil)
	if err != nil {
		return Key{}, err
	}
	jwk := resp.Key
	if jwk == nil {
		return Key{}, errors.New("Key Vault returned no key material")
	}
	out := Key{N: jwk.N, E: jwk.E, X: jwk.X, Y: jwk.Y}
	if jwk.Kty != nil {
		out.Kty = string(*jwk.Kty)
	}
	if jwk.Crv != nil {
		out.Crv = string(*jwk.Crv)
	}
	if jwk.KID != nil {
		out.Version = jwk.KID.Version()
	}
	return out, nil
}

func (s *sdkSource) GetCertificate(ctx context.Context, name, version string) (Certificate, error) {
	s.certsOnce.Do(func() {
		if s.certs, s.certsErr = azcertificates.NewClient(s.url, s.cred, &azcertificates.ClientOptions{ClientOptions: s.co}); s.certsErr != nil {
			s.certsErr = fmt.Errorf("certificates client: %w", s.certsErr)
		}
	})
	if s.certsErr != nil {
		return Certificate{}, s.certsErr
	}
	resp, err := s.certs.GetCertificate(ctx, name, version, nil)
	if err != nil {
		return Certificate{}, err
	}
	out := Certificate{CER: resp.CER}
	if resp.ID != nil {
		out.Version = resp.ID.Version()
	}
	return out, nil
}

func deref(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}
