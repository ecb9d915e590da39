package emulator

import (
	"context"
	"crypto"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
)

const saIssuer = "https://kubernetes.default.svc.cluster.local"

// withFederation adds a federated credential for the workload principal trusting a new
// issuer for system:serviceaccount:default:workload-sa.
func withFederation(t *testing.T, e *Emulator) *Issuer {
	t.Helper()
	iss, err := NewIssuer(saIssuer)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.AddFederatedCredential(FederatedCredential{Name: "wl", ClientID: workload, Issuer: saIssuer,
		Subject: "system:serviceaccount:default:workload-sa", Keys: []crypto.PublicKey{iss.PublicKey()}}); err != nil {
		t.Fatal(err)
	}
	return iss
}

func assertionFunc(iss *Issuer, ns, sa string) func(context.Context) (string, error) {
	return func(context.Context) (string, error) {
		now := time.Now()
		return iss.ServiceAccountToken(ns, sa, "", now, now.Add(time.Hour))
	}
}

func TestCredentials(t *testing.T) {
	e := startSDK(t)
	iss := withFederation(t, e)
	tokenFile := filepath.Join(t.TempDir(), "token")
	tok, err := iss.ServiceAccountToken("default", "workload-sa", "", time.Now(), time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(tokenFile, []byte(tok), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		cred func() (azcore.TokenCredential, error)
	}{
		{name: "client secret", cred: func() (azcore.TokenCredential, error) {
			return azidentity.NewClientSecretCredential(tenant1, readerID, "reader-secret",
				&azidentity.ClientSecretCredentialOptions{ClientOptions: credOptions(e), DisableInstanceDiscovery: true})
		}},
		{name: "client assertion", cred: func() (azcore.TokenCredential, error) {
			return azidentity.NewClientAssertionCredential(tenant1, workload, assertionFunc(iss, "default", "workload-sa"),
				&azidentity.ClientAssertionCredentialOptions{ClientOptions: credOptions(e), DisableInstanceDiscovery: true})
		}},
		{name: "workload identity token file", cred: func() (azcore.TokenCredential, error) {
			return azidentity.NewWorkloadIdentityCredential(&azidentity.WorkloadIdentityCredentialOptions{
				ClientOptions: credOptions(e), DisableInstanceDiscovery: true,
				TenantID: tenant1, ClientID: workload, TokenFilePath: tokenFile})
		}},
		{name: "managed identity (IMDS, default identity)", cred: func() (azcore.TokenCredential, error) {
			return azidentity.NewManagedIdentityCredential(&azidentity.ManagedIdentityCredentialOptions{
				ClientOptions: azcore.ClientOptions{Transport: e.HTTPClient()}})
		}},
		{name: "managed identity (IMDS, client ID)", cred: func() (azcore.TokenCredential, error) {
			return azidentity.NewManagedIdentityCredential(&azidentity.ManagedIdentityCredentialOptions{
				ClientOptions: azcore.ClientOptions{Transport: e.HTTPClient()}, ID: azidentity.ClientID(managedID)})
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cred, err := tc.cred()
			if err != nil {
				t.Fatal(err)
			}
			resp, err := secretsClient(t, e, testVault, cred).GetSecret(t.Context(), "plain", "", nil)
			if err != nil {
				t.Fatal(err)
			}
			if *resp.Value != "plain-value" {
				t.Errorf("value = %q", *resp.Value)
			}
		})
	}
}

// entraErrorOf extracts the AADSTS code from an azidentity error.
func entraErrorOf(t *testing.T, err error) (int, entraErrorBody) {
	t.Helper()
	var afe *azidentity.AuthenticationFailedError
	if !errors.As(err, &afe) || afe.RawResponse == nil {
		t.Fatalf("error %v (%T) is not an AuthenticationFailedError with a response", err, err)
	}
	body, err := io.ReadAll(afe.RawResponse.Body)
	if err != nil {
		t.Fatal(err)
	}
	var b entraErrorBody
	if err := json.Unmarshal(body, &b); err != nil {
		t.Fatalf("body %q: %v", body, err)
	}
	return afe.RawResponse.StatusCode, b
}

func TestClientAssertionRefused(t *testing.T) {
	e := startSDK(t)
	iss := withFederation(t, e)
	foreign, err := NewIssuer(saIssuer)
	if err != nil {
		t.Fatal(err)
	}
	otherIssuer, err := NewIssuer("https://other.example.com")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	tests := []struct {
		name       string
		assertion  func() (string, error)
		wantStatus int
		wantError  string
		wantCode   int
		wantPrefix string
	}{
		{name: "other service account", assertion: func() (string, error) {
			return iss.ServiceAccountToken("default", "other-sa", "", now, now.Add(time.Hour))
		}, wantStatus: 400, wantError: "invalid_request", wantCode: 70021,
			wantPrefix: "AADSTS70021: No matching federated identity record found for presented assertion. Assertion Issuer: 'https://kubernetes.default.svc.cluster.local'. Assertion Subject: 'system:serviceaccount:default:other-sa'. Assertion Audience: 'api://AzureADTokenExchange'."},
		{name: "other namespace", assertion: func() (string, error) {
			return iss.ServiceAccountToken("kube-system", "workload-sa", "", now, now.Add(time.Hour))
		}, wantStatus: 400, wantError: "invalid_request", wantCode: 70021},
		{name: "other audience", assertion: func() (string, error) {
			return iss.ServiceAccountToken("default", "workload-sa", "https://kubernetes.default.svc", now, now.Add(time.Hour))
		}, wantStatus: 400, wantError: "invalid_request", wantCode: 70021},
		{name: "unknown issuer", assertion: func() (string, error) {
			return otherIssuer.ServiceAccountToken("default", "workload-sa", "", now, now.Add(time.Hour))
		}, wantStatus: 400, wantError: "invalid_client", wantCode: 700211},
		{name: "signed by another key", assertion: func() (string, error) {
			return foreign.ServiceAccountToken("default", "workload-sa", "", now, now.Add(time.Hour))
		}, wantStatus: 401, wantError: "invalid_client", wantCode: 50013},
		{name: "expired", assertion: func() (string, error) {
			return iss.ServiceAccountToken("default", "workload-sa", "", now.Add(-2*time.Hour), now.Add(-time.Hour))
		}, wantStatus: 400, wantError: "invalid_client", wantCode: 700024},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cred, err := azidentity.NewClientAssertionCredential(tenant1, workload,
				func(context.Context) (string, error) { return tc.assertion() },
				&azidentity.ClientAssertionCredentialOptions{ClientOptions: credOptions(e), DisableInstanceDiscovery: true})
			if err != nil {
				t.Fatal(err)
			}
			_, err = cred.GetToken(t.Context(), policy.TokenRequestOptions{Scopes: []string{"https://vault.azure.net/.default"}})
			status, body := entraErrorOf(t, err)
			if status != tc.wantStatus || body.Error != tc.wantError || len(body.ErrorCodes) != 1 || body.ErrorCodes[0] != tc.wantCode {
				t.Fatalf("got %d %s %v, want %d %s [%d]: %s", status, body.Error, body.ErrorCodes, tc.wantStatus, tc.wantError, tc.wantCode, body.Description)
			}
			if tc.wantPrefix != "" && !strings.HasPrefix(body.Description, tc.wantPrefix) {
				t.Errorf("description = %q\nwant prefix   %q", body.Description, tc.wantPrefix)
			}
		})
	}
}

// postToken sends a raw token request.
func postToken(t *testing.T, e *Emulator, tenant string, form url.Values) (int, entraErrorBody, tokenResponse) {
	t.Helper()
	resp, err := e.HTTPClient().PostForm("https://login.microsoftonline.com/"+tenant+"/oauth2/v2.0/token", form)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	var eb entraErrorBody
	var tr tokenResponse
	if resp.StatusCode == http.StatusOK {
		if err := json.Unmarshal(data, &tr); err != nil {
			t.Fatal(err)
		}
	} else if err := json.Unmarshal(data, &eb); err != nil {
		t.Fatalf("body %q: %v", data, err)
	}
	return resp.StatusCode, eb, tr
}

func TestTokenEndpoint(t *testing.T) {
	e := startSDK(t)
	form := func(kv ...string) url.Values {
		v := url.Values{"grant_type": {"client_credentials"}, "scope": {"https://vault.azure.net/.default openid offline_access profile"}}
		for i := 0; i < len(kv); i += 2 {
			if kv[i+1] == "" {
				v.Del(kv[i])
			} else {
				v.Set(kv[i], kv[i+1])
			}
		}
		return v
	}
	tests := []struct {
		name       string
		tenant     string
		form       url.Values
		wantStatus int
		wantError  string
		wantCode   int
	}{
		{name: "ok", tenant: tenant1, form: form("client_id", readerID, "client_secret", "reader-secret"), wantStatus: 200},
		{name: "ok by tenant v1 resource", tenant: tenant1, form: form("scope", "", "resource", "https://vault.azure.net", "client_id", readerID, "client_secret", "reader-secret"), wantStatus: 200},
		{name: "unknown tenant", tenant: "33333333-3333-3333-3333-333333333333", form: form("client_id", readerID, "client_secret", "reader-secret"),
			wantStatus: 400, wantError: "invalid_request", wantCode: 90002},
		{name: "app in another tenant", tenant: tenant2, form: form("client_id", readerID, "client_secret", "reader-secret"),
			wantStatus: 400, wantError: "unauthorized_client", wantCode: 700016},
		{name: "unknown app", tenant: tenant1, form: form("client_id", "nobody", "client_secret", "x"),
			wantStatus: 400, wantError: "unauthorized_client", wantCode: 700016},
		{name: "wrong secret", tenant: tenant1, form: form("client_id", readerID, "client_secret", "wrong"),
			wantStatus: 401, wantError: "invalid_client", wantCode: 7000215},
		{name: "no credential", tenant: tenant1, form: form("client_id", readerID),
			wantStatus: 401, wantError: "invalid_client", wantCode: 7000218},
		{name: "no scope", tenant: tenant1, form: form("scope", "", "client_id", readerID, "client_secret", "reader-secret"),
			wantStatus: 400, wantError: "invalid_request", wantCode: 900144},
		{name: "scope without .default", tenant: tenant1, form: form("scope", "https://vault.azure.net/user_impersonation", "client_id", readerID, "client_secret", "reader-secret"),
			wantStatus: 400, wantError: "invalid_scope", wantCode: 1002012},
		{name: "other grant", tenant: tenant1, form: form("grant_type", "password", "client_id", readerID),
			wantStatus: 400, wantError: "unsupported_grant_type", wantCode: 70003},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			status, eb, tr := postToken(t, e, tc.tenant, tc.form)
			if status != tc.wantStatus {
				t.Fatalf("status %d, want %d (%s)", status, tc.wantStatus, eb.Description)
			}
			if status == 200 {
				if tr.TokenType != "Bearer" || tr.ExpiresIn != 3599 || tr.AccessToken == "" {
					t.Fatalf("token response %+v", tr)
				}
				var c accessClaims
				if err := verifyJWT(tr.AccessToken, e.entraKeys(), time.Now(), &c); err != nil {
					t.Fatal(err)
				}
				if c.Audience[0] != "https://vault.azure.net" || c.Issuer != "https://sts.windows.net/"+tenant1+"/" ||
					c.TID != tenant1 || c.AppID != readerID || c.OID != readerOID {
					t.Errorf("claims %+v", c)
				}
				return
			}
			if eb.Error != tc.wantError || len(eb.ErrorCodes) != 1 || eb.ErrorCodes[0] != tc.wantCode {
				t.Errorf("got %s %v, want %s [%d]: %s", eb.Error, eb.ErrorCodes, tc.wantError, tc.wantCode, eb.Description)
			}
			if !strings.HasPrefix(eb.Description, "AADSTS") || !strings.Contains(eb.Description, "\r\nTrace ID: ") || eb.TraceID == "" || eb.CorrelationID == "" {
				t.Errorf("error shape: %+v", eb)
			}
		})
	}
	// Counted: the two successes, the wrong secret and the missing credential (the
	// others fail before the application is identified).
	if got := e.TokenRequests(tenant1, readerID); got != 4 {
		t.Errorf("TokenRequests = %d, want 4", got)
	}
}

func TestOpenIDConfiguration(t *testing.T) {
	e := startSDK(t)
	get := func(path string) (int, map[string]any) {
		resp, err := e.HTTPClient().Get("https://login.microsoftonline.com" + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var m map[string]any
		if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, m
	}
	status, cfg := get("/" + tenant1 + "/v2.0/.well-known/openid-configuration")
	if status != 200 {
		t.Fatalf("status %d", status)
	}
	base := "https://login.microsoftonline.com/" + tenant1
	for k, want := range map[string]string{
		"issuer": base + "/v2.0", "token_endpoint": base + "/oauth2/v2.0/token",
		"authorization_endpoint": base + "/oauth2/v2.0/authorize", "jwks_uri": base + "/discovery/v2.0/keys",
	} {
		if cfg[k] != want {
			t.Errorf("%s = %v, want %s", k, cfg[k], want)
		}
	}
	status, keys := get("/" + tenant1 + "/discovery/v2.0/keys")
	if status != 200 {
		t.Fatalf("keys status %d", status)
	}
	set, _ := json.Marshal(keys)
	parsed, err := parseJWKS(set)
	if err != nil || len(parsed) != 1 {
		t.Fatalf("JWKS %s: %v", set, err)
	}
	if _, ok := parsed[e.signer.kid]; !ok {
		t.Errorf("JWKS lacks kid %s", e.signer.kid)
	}
	if status, m := get("/nope/v2.0/.well-known/openid-configuration"); status != 400 || !strings.HasPrefix(m["error_description"].(string), "AADSTS90002: Tenant 'nope' not found.") {
		t.Errorf("unknown tenant: %d %v", status, m)
	}
}
