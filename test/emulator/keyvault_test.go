package emulator

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// kvGet sends a raw GET to the test vault with an optional bearer token.
func kvGet(t *testing.T, e *Emulator, path, token string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, "https://kvtest.vault.azure.net"+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := e.HTTPClient().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, body
}

func TestAccessTokenValidation(t *testing.T) {
	e := startSDK(t)
	foreign, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	mint := func(o TokenOptions) string {
		if o.Tenant == "" {
			o.Tenant = tenant1
		}
		o.ClientID = readerID
		tok, err := e.MintToken(o)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	foreignToken := mint(TokenOptions{SignWith: foreign})
	challenge := `Bearer authorization="https://login.windows.net/` + tenant1 + `", resource="https://vault.azure.net"`
	tests := []struct {
		name        string
		token       string
		wantStatus  int
		wantMessage string
	}{
		{name: "valid", token: mint(TokenOptions{}), wantStatus: 200},
		{name: "audience with slash", token: mint(TokenOptions{Audience: "https://vault.azure.net/"}), wantStatus: 200},
		{name: "no token", wantStatus: 401, wantMessage: "AKV10000: Request is missing a Bearer or PoP token."},
		{name: "not a JWT", token: "not-a-jwt", wantStatus: 401, wantMessage: "AKV10000: Request is missing a Bearer or PoP token."},
		{name: "other tenant", token: mint(TokenOptions{Tenant: tenant2}), wantStatus: 401,
			wantMessage: "AKV10032: Invalid issuer. Expected one of https://sts.windows.net/" + tenant1 + "/, found https://sts.windows.net/" + tenant2 + "/."},
		{name: "issuer of the vault tenant, tid of another", token: mint(TokenOptions{Tenant: tenant2, Issuer: "https://sts.windows.net/" + tenant1 + "/"}), wantStatus: 401,
			wantMessage: "AKV10032: Invalid issuer. Expected one of https://sts.windows.net/" + tenant1 + "/, found https://sts.windows.net/" + tenant1 + "/."},
		{name: "other audience", token: mint(TokenOptions{Audience: "https://storage.azure.com"}), wantStatus: 401,
			wantMessage: "AKV10022: Invalid audience. Expected https://vault.azure.net, found: https://storage.azure.com."},
		{name: "expired", token: mint(TokenOptions{IssuedAt: time.Now().Add(-2 * time.Hour), Expiry: time.Now().Add(-time.Hour)}), wantStatus: 401,
			wantMessage: "[TokenExpired] Error validating token: 'S2S12086'."},
		{name: "not yet valid", token: mint(TokenOptions{IssuedAt: time.Now().Add(time.Hour)}), wantStatus: 401,
			wantMessage: "Token not yet valid."},
		{name: "foreign key", token: foreignToken, wantStatus: 401,
			wantMessage: "AKV10046: Unable to resolve the key used for signature validation. EncodedJwtHeader: '" + strings.Split(foreignToken, ".")[0] + "'."},
		{name: "foreign key with the Entra key ID", token: mint(TokenOptions{SignWith: foreign, KeyID: e.signer.kid}), wantStatus: 401,
			wantMessage: "AKV10000: Token signature validation failed."},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := kvGet(t, e, "/secrets/plain/?api-version=2025-07-01", tc.token)
			if resp.StatusCode != tc.wantStatus {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.wantStatus, body)
			}
			if resp.Header.Get("x-ms-keyvault-region") != "westeurope" || len(resp.Header.Get("x-ms-request-id")) != 36 {
				t.Errorf("headers %v", resp.Header)
			}
			if tc.wantStatus == 200 {
				return
			}
			code, inner, msg := kvErrorInner(t, body)
			if code != "Unauthorized" || inner != "" || msg != tc.wantMessage {
				t.Errorf("error %s/%s %q\nwant Unauthorized %q", code, inner, msg, tc.wantMessage)
			}
			if got := resp.Header.Get("WWW-Authenticate"); got != challenge {
				t.Errorf("WWW-Authenticate = %q, want %q", got, challenge)
			}
		})
	}
}

func TestKeyVaultRouting(t *testing.T) {
	e := startSDK(t)
	tok, err := e.MintToken(TokenOptions{Tenant: tenant1, ClientID: readerID})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		url        string
		wantStatus int
		wantCode   string
	}{
		{name: "unknown vault", url: "https://nosuchvault.vault.azure.net/secrets/plain/", wantStatus: 404, wantCode: "VaultNotFound"},
		{name: "vault of another cloud", url: "https://kvtest.vault.azure.cn/secrets/plain/", wantStatus: 404, wantCode: "VaultNotFound"},
		{name: "unsupported path", url: "https://kvtest.vault.azure.net/storage/x", wantStatus: 400, wantCode: "BadParameter"},
		{name: "bad maxresults", url: "https://kvtest.vault.azure.net/secrets/multi/versions?maxresults=0", wantStatus: 400, wantCode: "BadParameter"},
		{name: "bad skiptoken", url: "https://kvtest.vault.azure.net/secrets/multi/versions?$skiptoken=zz", wantStatus: 400, wantCode: "BadParameter"},
		{name: "versions of unknown secret are an empty list", url: "https://kvtest.vault.azure.net/secrets/nope/versions", wantStatus: 200},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, tc.url, nil)
			req.Header.Set("Authorization", "Bearer "+tok)
			resp, err := e.HTTPClient().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tc.wantStatus {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.wantStatus, body)
			}
			if tc.wantCode != "" {
				if code, _, _ := kvErrorInner(t, body); code != tc.wantCode {
					t.Errorf("code %s, want %s", code, tc.wantCode)
				}
			} else if string(body) != `{"value":[],"nextLink":null}` {
				t.Errorf("body %s", body)
			}
		})
	}
}

func TestListPagingRaw(t *testing.T) {
	e := startSDK(t)
	tok, err := e.MintToken(TokenOptions{Tenant: tenant1, ClientID: readerID})
	if err != nil {
		t.Fatal(err)
	}
	path := "/secrets/multi/versions?api-version=2025-07-01&maxresults=5"
	var pages []int
	for path != "" {
		resp, body := kvGet(t, e, path, tok)
		if resp.StatusCode != 200 {
			t.Fatalf("status %d: %s", resp.StatusCode, body)
		}
		var page struct {
			Value    []json.RawMessage
			NextLink *string
		}
		if err := json.Unmarshal(body, &page); err != nil {
			t.Fatal(err)
		}
		pages = append(pages, len(page.Value))
		path = ""
		if page.NextLink != nil {
			next, ok := strings.CutPrefix(*page.NextLink, "https://kvtest.vault.azure.net")
			if !ok || !strings.Contains(next, "api-version=2025-07-01") || !strings.Contains(next, "maxresults=5") {
				t.Fatalf("nextLink %s", *page.NextLink)
			}
			path = next
		}
	}
	if !equalSlices(pages, []int{5, 2}) {
		t.Errorf("page sizes %v, want [5 2]", pages)
	}
}
