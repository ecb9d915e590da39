package emulator

import (
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys"
)

func TestRotation(t *testing.T) {
	e := startSDK(t)
	c := secretsClient(t, e, testVault, secretCred(t, e, tenant1, readerID, "reader-secret"))
	get := func() (string, string, error) {
		resp, err := c.GetSecret(t.Context(), "plain", "", nil)
		if err != nil {
			return "", "", err
		}
		return *resp.Value, resp.ID.Version(), nil
	}
	_, oldVersion, err := get()
	if err != nil {
		t.Fatal(err)
	}
	v2, err := e.SetSecret(testVault, "plain", "rotated", SecretOptions{ContentType: "text/plain"})
	if err != nil {
		t.Fatal(err)
	}
	if !versionRE.MatchString(v2) || v2 == oldVersion {
		t.Fatalf("new version %q", v2)
	}
	if val, ver, err := get(); err != nil || val != "rotated" || ver != v2 {
		t.Fatalf("after rotation: %q %q %v", val, ver, err)
	}
	if old, err := c.GetSecret(t.Context(), "plain", oldVersion, nil); err != nil || *old.Value != "plain-value" {
		t.Fatalf("old version: %v", err)
	}
	// Disable the latest: the latest is refused, not the previous one served.
	if err := e.SetEnabled(testVault, ObjectSecret, "plain", "", false); err != nil {
		t.Fatal(err)
	}
	if _, _, err := get(); responseError(t, err).StatusCode != http.StatusForbidden {
		t.Fatalf("disabled latest: %v", err)
	}
	if err := e.SetEnabled(testVault, ObjectSecret, "plain", v2, true); err != nil {
		t.Fatal(err)
	}
	if val, _, err := get(); err != nil || val != "rotated" {
		t.Fatalf("re-enabled: %q %v", val, err)
	}
	// Revoke the reader's access.
	if err := e.SetAccessPolicy(testVault, AccessPolicy{Principal: "reader"}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := get(); responseError(t, err).StatusCode != http.StatusForbidden {
		t.Fatalf("revoked: %v", err)
	}
	if err := e.SetAccessPolicy(testVault, AccessPolicy{Principal: readerOID, Secrets: []string{"all"}, Keys: []string{"get"}}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := get(); err != nil {
		t.Fatalf("granted again: %v", err)
	}

	// Errors of the run-time API.
	errTests := []struct {
		name string
		err  error
		want string
	}{
		{"unknown vault", func() error { _, err := e.SetSecret("nope", "x", "y", SecretOptions{}); return err }(), `vault "nope": not found`},
		{"bad name", func() error { _, err := e.SetSecret(testVault, "a_b", "y", SecretOptions{}); return err }(), `invalid object name "a_b"`},
		{"duplicate version", func() error {
			_, err := e.SetSecret(testVault, "plain", "y", SecretOptions{Version: v2})
			return err
		}(), "secrets plain version " + v2 + " exists"},
		{"disable unknown", e.SetEnabled(testVault, ObjectKey, "nope", "", false), `keys "nope": not found`},
		{"unknown principal", e.SetAccessPolicy(testVault, AccessPolicy{Principal: "ghost", Secrets: []string{"get"}}), `access policy: unknown principal "ghost"`},
		{"unknown permission", e.SetAccessPolicy(testVault, AccessPolicy{Principal: "reader", Secrets: []string{"purge"}}), `unknown secrets permission "purge" (one of get, list, set, all)`},
	}
	for _, tc := range errTests {
		if tc.err == nil || tc.err.Error() != tc.want {
			t.Errorf("%s: error %v, want %q", tc.name, tc.err, tc.want)
		}
	}
	if err := e.SetEnabled(testVault, ObjectSecret, "nope", "", false); !errors.Is(err, errNotFound) {
		t.Errorf("errors.Is(not found) = false for %v", err)
	}
}

func TestAddKeyAndCertificate(t *testing.T) {
	e := startSDK(t)
	cred := secretCred(t, e, tenant1, readerID, "reader-secret")
	kv, err := e.AddKey(testVault, "rsa-3072", KeyOptions{Type: KeyRSA, Size: 3072, Tags: map[string]string{"k": "v"}})
	if err != nil {
		t.Fatal(err)
	}
	keys, _ := azkeys.NewClient(e.VaultURL(testVault), cred, &azkeys.ClientOptions{ClientOptions: clientOptions(e)})
	k, err := keys.GetKey(t.Context(), "rsa-3072", kv, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(k.Key.N)*8 != 3072 || deref(k.Tags["k"]) != "v" {
		t.Errorf("key: %d bits, tags %v", len(k.Key.N)*8, k.Tags)
	}
	cv, err := e.AddCertificate(testVault, "api", CertificateOptions{Key: KeyOptions{Type: KeyRSA}, ContentType: ContentTypePEM, DNSNames: []string{"api.local"}})
	if err != nil {
		t.Fatal(err)
	}
	sec, err := secretsClient(t, e, testVault, cred).GetSecret(t.Context(), "api", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	if sec.ID.Version() != cv {
		t.Errorf("secret version %s, want %s", sec.ID.Version(), cv)
	}
	block, rest := pem.Decode([]byte(*sec.Value))
	key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	cblock, _ := pem.Decode(rest)
	cert, err := x509.ParseCertificate(cblock.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if !key.(*rsa.PrivateKey).PublicKey.Equal(cert.PublicKey) || cert.DNSNames[0] != "api.local" {
		t.Errorf("key does not match certificate %v", cert.DNSNames)
	}
	if _, err := e.AddKey(testVault, "bad", KeyOptions{Type: "oct"}); err == nil || err.Error() != `unknown key type "oct" (RSA or EC)` {
		t.Errorf("AddKey oct: %v", err)
	}
}

func TestNMI(t *testing.T) {
	e := startSDK(t)
	for _, p := range []PodIdentity{
		{Namespace: "default", Pod: "*", Selector: "azure-kv", ClientID: readerID},
		{Namespace: "apps", Pod: "web-*", ClientID: workload},
		{Namespace: "ghost", ClientID: "no-such-principal"},
	} {
		if err := e.AddPodIdentity(p); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name, ns, pod, resource string
		wantStatus              int
		wantClientID            string
	}{
		{name: "any pod in namespace", ns: "default", pod: "demo-7d9f", resource: "https://vault.azure.net", wantStatus: 200, wantClientID: readerID},
		{name: "pod name glob", ns: "apps", pod: "web-0", resource: "https://vault.azure.net", wantStatus: 200, wantClientID: workload},
		{name: "pod not matching the glob", ns: "apps", pod: "db-0", resource: "https://vault.azure.net", wantStatus: 404},
		{name: "namespace without identity", ns: "kube-system", pod: "x", resource: "https://vault.azure.net", wantStatus: 404},
		{name: "identity without principal", ns: "ghost", pod: "x", resource: "https://vault.azure.net", wantStatus: 403},
		{name: "missing podname", ns: "default", resource: "https://vault.azure.net", wantStatus: 400},
		{name: "missing podns", pod: "x", resource: "https://vault.azure.net", wantStatus: 400},
		{name: "missing resource", ns: "default", pod: "x", wantStatus: 400},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, e.NMIURL()+"?resource="+url.QueryEscape(tc.resource), nil)
			if tc.ns != "" {
				req.Header.Set("podns", tc.ns)
			}
			if tc.pod != "" {
				req.Header.Set("podname", tc.pod)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tc.wantStatus {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.wantStatus, body)
			}
			if tc.wantStatus != 200 {
				return
			}
			var r nmiResponse
			if err := json.Unmarshal(body, &r); err != nil {
				t.Fatal(err)
			}
			if r.ClientID != tc.wantClientID || r.Token.Type != "Bearer" || r.Token.Resource != tc.resource ||
				r.Token.ExpiresIn != "3599" || r.Token.RefreshToken != "" || r.Token.AccessToken == "" {
				t.Fatalf("response %+v", r)
			}
			// The token opens the vault.
			if resp, body := kvGet(t, e, "/secrets/plain/", r.Token.AccessToken); resp.StatusCode != 200 {
				t.Errorf("Key Vault with NMI token: %d %s", resp.StatusCode, body)
			}
		})
	}
	if got := e.NMIRequests("default", "demo-7d9f"); got != 1 {
		t.Errorf("NMIRequests = %d, want 1", got)
	}
	// Callers not on loopback are refused (the listener binds to loopback, so call the
	// handler directly).
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodGet, "/host/token/?resource=https://vault.azure.net", nil)
	req.RemoteAddr = "10.244.0.7:41000"
	req.Header.Set("podns", "default")
	req.Header.Set("podname", "x")
	e.nmiHandler().ServeHTTP(rec, req)
	if rec.Code != http.StatusForbidden {
		t.Errorf("non-loopback caller: %d", rec.Code)
	}
}

func TestIMDS(t *testing.T) {
	e := startSDK(t)
	tests := []struct {
		name       string
		query      string
		metadata   bool
		wantStatus int
		wantDesc   string
		wantClient string
	}{
		{name: "default identity", query: "api-version=2018-02-01&resource=https://vault.azure.net", metadata: true, wantStatus: 200, wantClient: managedID},
		{name: "by client ID", query: "api-version=2018-02-01&resource=https://vault.azure.net&client_id=" + managedID, metadata: true, wantStatus: 200, wantClient: managedID},
		{name: "by object ID", query: "api-version=2018-02-01&resource=https://vault.azure.net&object_id=" + derivedID("oid", managedID), metadata: true, wantStatus: 200, wantClient: managedID},
		{name: "no Metadata header", query: "api-version=2018-02-01&resource=https://vault.azure.net", wantStatus: 400, wantDesc: "Required metadata header not specified"},
		{name: "no resource", query: "api-version=2018-02-01", metadata: true, wantStatus: 400, wantDesc: "Required audience parameter not specified"},
		{name: "no api-version", query: "resource=https://vault.azure.net", metadata: true, wantStatus: 400, wantDesc: "Required query variable 'api-version' is missing"},
		{name: "unknown identity", query: "api-version=2018-02-01&resource=https://vault.azure.net&client_id=" + readerID + "x", metadata: true, wantStatus: 400, wantDesc: "Identity not found"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, "http://169.254.169.254/metadata/identity/oauth2/token?"+tc.query, nil)
			if tc.metadata {
				req.Header.Set("Metadata", "true")
			}
			resp, err := e.HTTPClient().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tc.wantStatus {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.wantStatus, body)
			}
			if tc.wantStatus != 200 {
				var ie imdsError
				if err := json.Unmarshal(body, &ie); err != nil || ie.Error != "invalid_request" || ie.Description != tc.wantDesc {
					t.Errorf("error %s, want %q", body, tc.wantDesc)
				}
				return
			}
			var r map[string]any
			if err := json.Unmarshal(body, &r); err != nil {
				t.Fatal(err)
			}
			for _, k := range []string{"access_token", "client_id", "expires_in", "expires_on", "ext_expires_in", "not_before", "resource", "token_type"} {
				if _, ok := r[k].(string); !ok {
					t.Errorf("%s is %T, want a string", k, r[k])
				}
			}
			if r["client_id"] != tc.wantClient || r["expires_in"] != "3599" || r["token_type"] != "Bearer" || r["resource"] != "https://vault.azure.net" {
				t.Errorf("response %s", body)
			}
		})
	}
}

func TestTutorialSeed(t *testing.T) {
	seed, err := LoadSeed("testdata/tutorial.yaml")
	if err != nil {
		t.Fatal(err)
	}
	e := startWith(t, Options{Seed: seed})
	// The tutorial's check, through NMI and the unmodified secrets client.
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, e.NMIURL()+"?resource=https://vault.azure.net", nil)
	req.Header.Set("podns", "default")
	req.Header.Set("podname", "nginx-secrets-store-inline")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var nr nmiResponse
	if err := json.NewDecoder(resp.Body).Decode(&nr); err != nil {
		t.Fatal(err)
	}
	c := secretsClient(t, e, "az-key-vault-demo", staticToken(nr.Token.AccessToken))
	got := map[string]string{}
	for _, name := range []string{"DatabaseLogin", "DatabasePassword"} {
		s, err := c.GetSecret(t.Context(), name, "", nil)
		if err != nil {
			t.Fatal(err)
		}
		got[name] = *s.Value
	}
	if got["DatabaseLogin"] != "MyDBLoginName" || got["DatabasePassword"] != "MyP@ssword123456" {
		t.Errorf("secrets %v", got)
	}
	// The pod identity has get but not list.
	_, err = c.NewListSecretPropertiesPager(nil).NextPage(t.Context())
	if re := responseError(t, err); re.StatusCode != 403 {
		t.Errorf("list: %d", re.StatusCode)
	}
	// The federated credential's key file was loaded.
	if fcs := e.state.federatedFor("2c1e5f3a-9b7d-4e2f-8a61-0d3c4b5a6e71"); len(fcs) != 1 || fcs[0].keys.count() != 1 {
		t.Errorf("federated credentials %d", len(fcs))
	}
	if !strings.HasSuffix(e.VaultURL("az-key-vault-demo"), ".vault.azure.net/") {
		t.Errorf("vault URL %s", e.VaultURL("az-key-vault-demo"))
	}
}
