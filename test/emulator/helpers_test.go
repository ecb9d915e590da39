package emulator

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azsecrets"
)

const (
	tenant1   = "11111111-1111-1111-1111-111111111111"
	tenant2   = "22222222-2222-2222-2222-222222222222"
	readerID  = "aaaaaaaa-0000-0000-0000-000000000001"
	readerOID = "bbbbbbbb-0000-0000-0000-000000000001"
	outsider  = "aaaaaaaa-0000-0000-0000-000000000002"
	workload  = "aaaaaaaa-0000-0000-0000-000000000003"
	managedID = "aaaaaaaa-0000-0000-0000-000000000004"
	testVault = "kvtest"
)

// startSDK starts an emulator from testdata/sdk.yaml, closed at the end of the test.
func startSDK(t *testing.T) *Emulator {
	t.Helper()
	seed, err := LoadSeed("testdata/sdk.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return startWith(t, Options{Seed: seed})
}

func startWith(t *testing.T, opts Options) *Emulator {
	t.Helper()
	e, err := Start(t.Context(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Close() })
	return e
}

// clientOptions are the SDK defaults apart from the transport.
func clientOptions(e *Emulator) azcore.ClientOptions {
	return azcore.ClientOptions{Transport: e.HTTPClient()}
}

// credOptions are the SDK defaults apart from transport, authority host and instance
// discovery.
func credOptions(e *Emulator) azcore.ClientOptions {
	return azcore.ClientOptions{
		Transport: e.HTTPClient(),
		Cloud:     cloud.Configuration{ActiveDirectoryAuthorityHost: e.AuthorityHost()},
	}
}

func secretCred(t *testing.T, e *Emulator, tenant, clientID, secret string) azcore.TokenCredential {
	t.Helper()
	c, err := azidentity.NewClientSecretCredential(tenant, clientID, secret, &azidentity.ClientSecretCredentialOptions{
		ClientOptions: credOptions(e), DisableInstanceDiscovery: true})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func secretsClient(t *testing.T, e *Emulator, vault string, cred azcore.TokenCredential) *azsecrets.Client {
	t.Helper()
	c, err := azsecrets.NewClient(e.VaultURL(vault), cred, &azsecrets.ClientOptions{ClientOptions: clientOptions(e)})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// responseError unwraps an *azcore.ResponseError or fails the test.
func responseError(t *testing.T, err error) *azcore.ResponseError {
	t.Helper()
	var re *azcore.ResponseError
	if !errors.As(err, &re) {
		t.Fatalf("error %v (%T) is not an *azcore.ResponseError", err, err)
	}
	return re
}

// staticToken is a credential that always returns the same (possibly bad) token.
type staticToken string

func (s staticToken) GetToken(context.Context, policy.TokenRequestOptions) (azcore.AccessToken, error) {
	return azcore.AccessToken{Token: string(s), ExpiresOn: time.Now().Add(time.Hour)}, nil
}

// deref returns *p, or the zero value for nil.
func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}
