package keyvault

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"

	"github.com/kvinject/kvinject/pkg/contract"
)

func responseError(status int, body string) error {
	resp := &http.Response{StatusCode: status, Header: http.Header{}, Body: io.NopCloser(strings.NewReader(body)),
		Request: &http.Request{Method: http.MethodGet}}
	resp.Request.URL = mustURL("https://az-key-vault-demo.vault.azure.net/secrets/DatabasePassword/")
	return runtime.NewResponseError(resp)
}

func TestClassify(t *testing.T) {
	t.Parallel()
	who := `workload identity (client ID "abc")`
	kvErr := func(code, inner string) string {
		if inner == "" {
			return fmt.Sprintf(`{"error":{"code":%q,"message":"m"}}`, code)
		}
		return fmt.Sprintf(`{"error":{"code":%q,"message":"m","innererror":{"code":%q}}}`, code, inner)
	}
	cases := []struct {
		name  string
		obj   contract.Object
		err   error
		class error
		msg   string
	}{
		{"not found", contract.Object{Name: "DatabasePassword"}, responseError(404, kvErr("SecretNotFound", "")), ErrNotFound,
			`vault "az-key-vault-demo": secret "DatabasePassword": Key Vault answered 404 SecretNotFound: there is no secret named "DatabasePassword" in vault "az-key-vault-demo"; check objectName and objectType`},
		{"forbidden by policy", contract.Object{Name: "DatabasePassword"}, responseError(403, kvErr("Forbidden", "ForbiddenByPolicy")), ErrForbidden,
			`vault "az-key-vault-demo": secret "DatabasePassword": Key Vault answered 403 ForbiddenByPolicy: workload identity (client ID "abc") lacks get permission on secrets in vault "az-key-vault-demo"; grant it get on secrets (access policy) or a Key Vault Secrets User role`},
		{"forbidden by RBAC on a key", contract.Object{Name: "k", Type: contract.TypeKey}, responseError(403, kvErr("Forbidden", "ForbiddenByRbac")), ErrForbidden,
			`vault "az-key-vault-demo": key "k": Key Vault answered 403 ForbiddenByRbac: workload identity (client ID "abc") lacks get permission on keys in vault "az-key-vault-demo"; grant it get on keys (access policy) or a Key Vault Crypto User role`},
		{"disabled", contract.Object{Name: "DatabasePassword", Version: "0123456789abcdef0123456789abcdef"}, responseError(403, kvErr("Forbidden", "SecretDisabled")), ErrDisabled,
			`vault "az-key-vault-demo": secret "DatabasePassword" version 0123456789abcdef0123456789abcdef: Key Vault answered 403 SecretDisabled: the secret is disabled in vault "az-key-vault-demo"; enable it, or set objectVersion to an enabled version`},
		{"throttled", contract.Object{Name: "s"}, responseError(429, kvErr("Throttled", "")), ErrThrottled,
			`vault "az-key-vault-demo": secret "s": Key Vault answered 429 Throttled: Key Vault throttles the node's requests to vault "az-key-vault-demo"; the node waits as Key Vault asks and the next refresh retries`},
		{"unauthorized", contract.Object{Name: "s"}, responseError(401, kvErr("Unauthorized", "AKV10032")), ErrAuth,
			`Key Vault answered 401 AKV10032: Key Vault rejected the token of workload identity (client ID "abc"); check that tenantId is the vault's tenant and that the identity exists there`},
		{"server error", contract.Object{Name: "s"}, responseError(503, "not json"), ErrUnavailable,
			`Key Vault answered 503 : vault "az-key-vault-demo" did not answer successfully; the node backs off and the next refresh retries`},
		{"backing off after 429", contract.Object{Name: "s"}, &BackoffError{Host: "az-key-vault-demo.vault.azure.net", Until: time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC), Throttled: true}, ErrThrottled,
			`vault "az-key-vault-demo": secret "s": not sent: az-key-vault-demo.vault.azure.net throttled the node (429) and the node is backing off until 2026-11-30T12:00:00Z: Key Vault throttles`},
		{"wrong tenant", contract.Object{Name: "s"}, errors.New(`ClientAssertionCredential isn't configured to acquire tokens for tenant "t2". To enable...`), ErrWrongTenant,
			`vault "az-key-vault-demo": secret "s": the vault's challenge names another tenant: vault "az-key-vault-demo" is not in the tenant the volume names; set tenantId to the vault's tenant`},
		{"an error that says nothing more", contract.Object{Name: "s"}, errors.New("something else\nmore detail"), nil,
			`vault "az-key-vault-demo": secret "s": something else`},
		{"connection refused", contract.Object{Name: "s"}, &url.Error{Op: "Get", URL: "https://az-key-vault-demo.vault.azure.net/secrets/s", Err: &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}}, ErrUnavailable,
			`vault "az-key-vault-demo": secret "s": Get "https://az-key-vault-demo.vault.azure.net/secrets/s": dial tcp: connection refused: vault "az-key-vault-demo" did not answer successfully; the node backs off and the next refresh retries`},
		{"no such vault in DNS", contract.Object{Name: "s"}, &url.Error{Op: "Get", URL: "https://az-key-vault-demo.vault.azure.net/secrets/s", Err: &net.OpError{Op: "dial", Net: "tcp", Err: &net.DNSError{Err: "no such host", Name: "az-key-vault-demo.vault.azure.net", IsNotFound: true}}}, ErrUnavailable,
			`vault "az-key-vault-demo": secret "s": az-key-vault-demo.vault.azure.net does not resolve (no such host): check keyvaultName and cloudName: vault "az-key-vault-demo" did not answer successfully`},
		{"a response cut short", contract.Object{Name: "s"}, fmt.Errorf("read body: %w", io.ErrUnexpectedEOF), ErrUnavailable,
			`vault "az-key-vault-demo": secret "s": read body: unexpected EOF: vault "az-key-vault-demo" did not answer successfully`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			oe := classify("az-key-vault-demo", tc.obj, who, tc.err)
			if tc.class != nil && !errors.Is(oe, tc.class) {
				t.Errorf("class: errors.Is(%v) false", tc.class)
			}
			if !strings.Contains(oe.Error(), tc.msg) {
				t.Errorf("message\n%s\nwant it to contain\n%s", oe.Error(), tc.msg)
			}
		})
	}
}

func TestLookupCloud(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, want, suffix string
		err                bool
	}{
		{"", contract.CloudPublic, "vault.azure.net", false},
		{"azurepubliccloud", contract.CloudPublic, "vault.azure.net", false},
		{"AzureUSGovernmentCloud", contract.CloudUSGovernment, "vault.usgovcloudapi.net", false},
		{"AzureChinaCloud", contract.CloudChina, "vault.azure.cn", false},
		{"AzureStackCloud", "", "", true},
		{"Mars", "", "", true},
	} {
		c, err := LookupCloud(tc.name)
		if tc.err != (err != nil) || c.Name != tc.want || c.VaultSuffix != tc.suffix {
			t.Errorf("LookupCloud(%q) = %+v, %v", tc.name, c, err)
		}
		if err != nil {
			// The plugin refuses a cloud with the webhook's words.
			_, want := contract.CanonicalCloud(tc.name)
			if !errors.Is(err, ErrUnsupportedCloud) || want == nil || !strings.HasSuffix(err.Error(), want.Error()) {
				t.Errorf("LookupCloud(%q): %v, want ErrUnsupportedCloud ending in %v", tc.name, err, want)
			}
		}
	}
}

func mustURL(s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil {
		panic(err)
	}
	return u
}
