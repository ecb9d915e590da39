package emulator

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha1"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"io"
	"math/big"
	"regexp"
	"strings"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azcertificates"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azsecrets"
	"software.sslmate.com/src/go-pkcs12"
)

var versionedID = regexp.MustCompile(`^https://kvtest\.vault\.azure\.net/(secrets|keys|certificates)/[A-Za-z0-9-]+/[0-9a-f]{32}$`)

func TestSDKGetSecret(t *testing.T) {
	e := startSDK(t)
	c := secretsClient(t, e, testVault, secretCred(t, e, tenant1, readerID, "reader-secret"))
	tests := []struct {
		name, secret, version string
		wantValue             string
		wantID                string // "" = any versioned ID
		wantContentType       string
		wantTags              map[string]string
	}{
		{name: "latest", secret: "plain", wantValue: "plain-value"},
		{name: "content type and tags", secret: "typed", wantValue: `{"user":"app"}`,
			wantContentType: "application/json", wantTags: map[string]string{"team": "payments"}},
		{name: "latest of many", secret: "multi", wantValue: "v7",
			wantID: "https://kvtest.vault.azure.net/secrets/multi/a0000000000000000000000000000007"},
		{name: "versioned", secret: "multi", version: "a0000000000000000000000000000002", wantValue: "v2",
			wantID: "https://kvtest.vault.azure.net/secrets/multi/a0000000000000000000000000000002"},
		{name: "name is case-insensitive", secret: "PLAIN", wantValue: "plain-value"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := c.GetSecret(t.Context(), tc.secret, tc.version, nil)
			if err != nil {
				t.Fatal(err)
			}
			if got := *resp.Value; got != tc.wantValue {
				t.Errorf("value = %q, want %q", got, tc.wantValue)
			}
			id := string(*resp.ID)
			if tc.wantID != "" && id != tc.wantID {
				t.Errorf("id = %q, want %q", id, tc.wantID)
			}
			if !versionedID.MatchString(id) {
				t.Errorf("id %q is not a versioned secret URL", id)
			}
			if got := deref(resp.ContentType); got != tc.wantContentType {
				t.Errorf("contentType = %q, want %q", got, tc.wantContentType)
			}
			if len(resp.Tags) != len(tc.wantTags) {
				t.Errorf("tags = %v, want %v", resp.Tags, tc.wantTags)
			}
			for k, v := range tc.wantTags {
				if deref(resp.Tags[k]) != v {
					t.Errorf("tag %s = %q, want %q", k, deref(resp.Tags[k]), v)
				}
			}
			if !*resp.Attributes.Enabled || resp.Attributes.Created == nil || *resp.Attributes.RecoveryLevel != "Recoverable+Purgeable" {
				t.Errorf("attributes = %+v", resp.Attributes)
			}
		})
	}
}

func TestSDKListSecretVersionsPaging(t *testing.T) {
	e := startSDK(t)
	c := secretsClient(t, e, testVault, secretCred(t, e, tenant1, readerID, "reader-secret"))
	pager := c.NewListSecretPropertiesVersionsPager("multi", nil)
	var ids []string
	var enabled []bool
	pages := 0
	for pager.More() {
		page, err := pager.NextPage(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		pages++
		for _, p := range page.Value {
			ids = append(ids, p.ID.Version())
			enabled = append(enabled, *p.Attributes.Enabled)
		}
	}
	want := []string{"a0000000000000000000000000000001", "a0000000000000000000000000000002", "a0000000000000000000000000000003",
		"a0000000000000000000000000000004", "a0000000000000000000000000000005", "a0000000000000000000000000000006", "a0000000000000000000000000000007"}
	if strings.Join(ids, ",") != strings.Join(want, ",") {
		t.Fatalf("versions = %v, want %v", ids, want)
	}
	if wantEnabled := []bool{true, true, false, true, true, true, true}; !equalSlices(enabled, wantEnabled) {
		t.Errorf("enabled = %v, want %v", enabled, wantEnabled)
	}
	if pages != 3 {
		t.Errorf("pages = %d, want 3 (page size %d)", pages, DefaultPageSize)
	}
	if got := e.Requests(Key{Vault: testVault, Object: "multi", Caller: readerID}); got != 3 {
		t.Errorf("authenticated requests = %d, want 3 (one per page)", got)
	}
	if got := e.Requests(Key{Vault: testVault, Object: "multi", Caller: ""}); got != 1 {
		t.Errorf("challenge requests = %d, want 1", got)
	}

	// All secrets, latest versions, including the certificates' backing secrets.
	var names []string
	all := c.NewListSecretPropertiesPager(nil)
	for all.More() {
		page, err := all.NextPage(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range page.Value {
			names = append(names, p.ID.Name())
		}
	}
	if got, want := strings.Join(names, ","), "disabled,multi,plain,typed,web-pem,web-pfx"; got != want {
		t.Errorf("secrets = %s, want %s", got, want)
	}
}

func equalSlices[T comparable](a, b []T) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestSDKGetKey(t *testing.T) {
	e := startSDK(t)
	c, err := azkeys.NewClient(e.VaultURL(testVault), secretCred(t, e, tenant1, readerID, "reader-secret"),
		&azkeys.ClientOptions{ClientOptions: clientOptions(e)})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, key   string
		wantKty     azkeys.KeyType
		wantCrv     azkeys.CurveName
		wantBits    int
		wantManaged bool
	}{
		{name: "RSA", key: "rsa-key", wantKty: azkeys.KeyTypeRSA, wantBits: 2048},
		{name: "EC", key: "ec-key", wantKty: azkeys.KeyTypeEC, wantCrv: azkeys.CurveNameP256, wantBits: 256},
		{name: "certificate key", key: "web-pfx", wantKty: azkeys.KeyTypeEC, wantCrv: azkeys.CurveNameP256, wantBits: 256, wantManaged: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := c.GetKey(t.Context(), tc.key, "", nil)
			if err != nil {
				t.Fatal(err)
			}
			k := resp.Key
			if *k.Kty != tc.wantKty {
				t.Fatalf("kty = %s, want %s", *k.Kty, tc.wantKty)
			}
			if !versionedID.MatchString(string(*k.KID)) || k.KID.Name() != tc.key {
				t.Errorf("kid = %s", *k.KID)
			}
			if deref(resp.Managed) != tc.wantManaged {
				t.Errorf("managed = %v, want %v", deref(resp.Managed), tc.wantManaged)
			}
			switch tc.wantKty {
			case azkeys.KeyTypeRSA:
				if got := len(k.N) * 8; got != tc.wantBits {
					t.Errorf("modulus bits = %d, want %d", got, tc.wantBits)
				}
				if e := new(big.Int).SetBytes(k.E).Int64(); e != 65537 {
					t.Errorf("e = %d", e)
				}
			case azkeys.KeyTypeEC:
				if *k.Crv != tc.wantCrv {
					t.Errorf("crv = %s, want %s", *k.Crv, tc.wantCrv)
				}
				point := append([]byte{4}, append(k.X, k.Y...)...)
				if _, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), point); err != nil {
					t.Errorf("EC point: %v", err)
				}
			}
		})
	}
}

func TestSDKGetCertificate(t *testing.T) {
	e := startSDK(t)
	cred := secretCred(t, e, tenant1, readerID, "reader-secret")
	certs, err := azcertificates.NewClient(e.VaultURL(testVault), cred, &azcertificates.ClientOptions{ClientOptions: clientOptions(e)})
	if err != nil {
		t.Fatal(err)
	}
	secrets := secretsClient(t, e, testVault, cred)
	tests := []struct {
		name, cert      string
		wantContentType string
		wantChain       int
		wantCN          string
	}{
		{name: "PKCS#12 with chain", cert: "web-pfx", wantContentType: ContentTypePKCS12, wantChain: 2, wantCN: "web.example.com"},
		{name: "PEM self-signed", cert: "web-pem", wantContentType: ContentTypePEM, wantChain: 1, wantCN: "web-pem"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := certs.GetCertificate(t.Context(), tc.cert, "", nil)
			if err != nil {
				t.Fatal(err)
			}
			leaf, err := x509.ParseCertificate(resp.CER)
			if err != nil {
				t.Fatal(err)
			}
			if leaf.Subject.CommonName != tc.wantCN {
				t.Errorf("CN = %q, want %q", leaf.Subject.CommonName, tc.wantCN)
			}
			sum := sha1.Sum(resp.CER)
			if string(resp.X509Thumbprint) != string(sum[:]) {
				t.Errorf("x5t does not match the certificate")
			}
			version := resp.ID.Version()
			// The explicit version answers the same.
			byVersion, err := certs.GetCertificate(t.Context(), tc.cert, version, nil)
			if err != nil {
				t.Fatal(err)
			}
			if string(byVersion.CER) != string(resp.CER) {
				t.Errorf("versioned certificate differs from latest")
			}
			if got, want := string(*resp.SID), "https://kvtest.vault.azure.net/secrets/"+tc.cert+"/"+version; got != want {
				t.Errorf("sid = %s, want %s", got, want)
			}
			sec, err := secrets.GetSecret(t.Context(), tc.cert, version, nil)
			if err != nil {
				t.Fatal(err)
			}
			if deref(sec.ContentType) != tc.wantContentType || !deref(sec.Managed) || sec.KID == nil {
				t.Errorf("backing secret: contentType=%q managed=%v kid=%v", deref(sec.ContentType), deref(sec.Managed), sec.KID)
			}
			var chain []*x509.Certificate
			switch tc.wantContentType {
			case ContentTypePKCS12:
				pfx, err := base64.StdEncoding.DecodeString(*sec.Value)
				if err != nil {
					t.Fatal(err)
				}
				key, cert, cas, err := pkcs12.DecodeChain(pfx, "")
				if err != nil {
					t.Fatal(err)
				}
				if _, ok := key.(*ecdsa.PrivateKey); !ok {
					t.Errorf("key %T", key)
				}
				chain = append([]*x509.Certificate{cert}, cas...)
			case ContentTypePEM:
				rest := []byte(*sec.Value)
				var types []string
				for {
					var b *pem.Block
					if b, rest = pem.Decode(rest); b == nil {
						break
					}
					types = append(types, b.Type)
					if b.Type == "CERTIFICATE" {
						c, err := x509.ParseCertificate(b.Bytes)
						if err != nil {
							t.Fatal(err)
						}
						chain = append(chain, c)
					} else if _, err := x509.ParsePKCS8PrivateKey(b.Bytes); err != nil {
						t.Fatal(err)
					}
				}
				if got := strings.Join(types, ","); got != "PRIVATE KEY,CERTIFICATE" {
					t.Errorf("PEM blocks = %s", got)
				}
			}
			if len(chain) != tc.wantChain || !chain[0].Equal(leaf) {
				t.Fatalf("chain of %d, leaf matches: %v", len(chain), len(chain) > 0 && chain[0].Equal(leaf))
			}
			if tc.wantChain == 2 {
				if err := leaf.CheckSignatureFrom(chain[1]); err != nil {
					t.Errorf("leaf not issued by chain[1]: %v", err)
				}
			}
		})
	}
}

// kvErrorInner reads error.innererror.code from a Key Vault error body.
func kvErrorInner(t *testing.T, body []byte) (code, inner, message string) {
	t.Helper()
	var b struct {
		Error struct {
			Code       string
			Message    string
			InnerError *struct{ Code string }
		}
	}
	if err := json.Unmarshal(body, &b); err != nil {
		t.Fatalf("error body %q: %v", body, err)
	}
	if b.Error.InnerError != nil {
		inner = b.Error.InnerError.Code
	}
	return b.Error.Code, inner, b.Error.Message
}

func TestSDKErrors(t *testing.T) {
	e := startSDK(t)
	reader := secretCred(t, e, tenant1, readerID, "reader-secret")
	wrongAudience, err := e.MintToken(TokenOptions{Tenant: tenant1, ClientID: readerID, Audience: "https://management.azure.com/"})
	if err != nil {
		t.Fatal(err)
	}
	sec := secretsClient(t, e, testVault, reader)
	keys, _ := azkeys.NewClient(e.VaultURL(testVault), reader, &azkeys.ClientOptions{ClientOptions: clientOptions(e)})
	certs, _ := azcertificates.NewClient(e.VaultURL(testVault), reader, &azcertificates.ClientOptions{ClientOptions: clientOptions(e)})
	outsiderClient := secretsClient(t, e, testVault, secretCred(t, e, tenant1, outsider, "outsider-secret"))
	badTokenClient := secretsClient(t, e, testVault, staticToken(wrongAudience))
	outsiderOID := derivedID("oid", outsider)
	forbidden := func(perm string) string {
		return "The user, group or application 'appid=" + outsider + ";oid=" + outsiderOID +
			";iss=https://sts.windows.net/" + tenant1 + "/' does not have secrets " + perm +
			" permission on key vault 'kvtest;location=westeurope'. For help resolving this issue, please see https://go.microsoft.com/fwlink/?linkid=2125287"
	}
	tests := []struct {
		name        string
		call        func() error
		wantStatus  int
		wantCode    string
		wantInner   string
		wantMessage string // "" = not checked
	}{
		{name: "secret not found", call: func() error { _, err := sec.GetSecret(t.Context(), "nope", "", nil); return err },
			wantStatus: 404, wantCode: "SecretNotFound",
			wantMessage: "A secret with (name/id) nope was not found in this key vault. If you recently deleted this secret you may be able to recover it using the correct recovery command. For help resolving this issue, please see https://go.microsoft.com/fwlink/?linkid=2125182"},
		{name: "secret version not found", call: func() error {
			_, err := sec.GetSecret(t.Context(), "plain", "ffffffffffffffffffffffffffffffff", nil)
			return err
		}, wantStatus: 404, wantCode: "SecretNotFound"},
		{name: "key not found", call: func() error { _, err := keys.GetKey(t.Context(), "nope", "", nil); return err },
			wantStatus: 404, wantCode: "KeyNotFound"},
		{name: "certificate not found", call: func() error { _, err := certs.GetCertificate(t.Context(), "nope", "", nil); return err },
			wantStatus: 404, wantCode: "CertificateNotFound"},
		{name: "disabled secret", call: func() error { _, err := sec.GetSecret(t.Context(), "disabled", "", nil); return err },
			wantStatus: 403, wantCode: "Forbidden", wantInner: "SecretDisabled", wantMessage: "Operation get is not allowed on a disabled secret."},
		{name: "disabled version", call: func() error {
			_, err := sec.GetSecret(t.Context(), "multi", "a0000000000000000000000000000003", nil)
			return err
		}, wantStatus: 403, wantCode: "Forbidden", wantInner: "SecretDisabled"},
		{name: "no get permission", call: func() error { _, err := outsiderClient.GetSecret(t.Context(), "plain", "", nil); return err },
			wantStatus: 403, wantCode: "Forbidden", wantInner: "ForbiddenByPolicy", wantMessage: forbidden("get")},
		{name: "no list permission", call: func() error {
			_, err := outsiderClient.NewListSecretPropertiesVersionsPager("multi", nil).NextPage(t.Context())
			return err
		}, wantStatus: 403, wantCode: "Forbidden", wantInner: "ForbiddenByPolicy", wantMessage: forbidden("list")},
		{name: "token for another audience", call: func() error { _, err := badTokenClient.GetSecret(t.Context(), "plain", "", nil); return err },
			wantStatus: 401, wantCode: "Unauthorized",
			wantMessage: "AKV10022: Invalid audience. Expected https://vault.azure.net, found: https://management.azure.com/."},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			re := responseError(t, tc.call())
			if re.StatusCode != tc.wantStatus || re.ErrorCode != tc.wantCode {
				t.Fatalf("got %d %s, want %d %s", re.StatusCode, re.ErrorCode, tc.wantStatus, tc.wantCode)
			}
			body, err := io.ReadAll(re.RawResponse.Body)
			if err != nil {
				t.Fatal(err)
			}
			code, inner, msg := kvErrorInner(t, body)
			if code != tc.wantCode || inner != tc.wantInner {
				t.Errorf("body code %q inner %q, want %q %q", code, inner, tc.wantCode, tc.wantInner)
			}
			if tc.wantMessage != "" && msg != tc.wantMessage {
				t.Errorf("message = %q\nwant      %q", msg, tc.wantMessage)
			}
		})
	}
}

func TestSDKListKeysAndCertificates(t *testing.T) {
	e := startSDK(t)
	cred := secretCred(t, e, tenant1, readerID, "reader-secret")
	keys, _ := azkeys.NewClient(e.VaultURL(testVault), cred, &azkeys.ClientOptions{ClientOptions: clientOptions(e)})
	certs, _ := azcertificates.NewClient(e.VaultURL(testVault), cred, &azcertificates.ClientOptions{ClientOptions: clientOptions(e)})
	var keyNames []string
	for p := keys.NewListKeyPropertiesPager(nil); p.More(); {
		page, err := p.NextPage(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range page.Value {
			keyNames = append(keyNames, k.KID.Name())
		}
	}
	if got, want := strings.Join(keyNames, ","), "ec-key,rsa-key,web-pem,web-pfx"; got != want {
		t.Errorf("keys = %s, want %s", got, want)
	}
	var certNames []string
	for p := certs.NewListCertificatePropertiesPager(nil); p.More(); {
		page, err := p.NextPage(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range page.Value {
			if len(c.X509Thumbprint) != 20 {
				t.Errorf("%s: x5t of %d bytes", c.ID.Name(), len(c.X509Thumbprint))
			}
			certNames = append(certNames, c.ID.Name())
		}
	}
	if got, want := strings.Join(certNames, ","), "web-pem,web-pfx"; got != want {
		t.Errorf("certificates = %s, want %s", got, want)
	}
	page, err := certs.NewListCertificatePropertiesVersionsPager("web-pfx", nil).NextPage(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Value) != 1 || !versionedID.MatchString(string(*page.Value[0].ID)) {
		t.Errorf("certificate versions %d", len(page.Value))
	}
	kpage, err := keys.NewListKeyPropertiesVersionsPager("ec-key", nil).NextPage(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(kpage.Value) != 1 || !versionedID.MatchString(string(*kpage.Value[0].KID)) {
		t.Errorf("key versions %d", len(kpage.Value))
	}
}

func TestSDKSetSecret(t *testing.T) {
	e := startSDK(t)
	c := secretsClient(t, e, testVault, secretCred(t, e, tenant1, readerID, "reader-secret"))
	params := azsecrets.SetSecretParameters{Value: to("new"), ContentType: to("text/plain")}
	_, err := c.SetSecret(t.Context(), "fresh", params, nil)
	if re := responseError(t, err); re.StatusCode != 403 || re.ErrorCode != "Forbidden" {
		t.Fatalf("set without permission: %d %s", re.StatusCode, re.ErrorCode)
	}
	if err := e.SetAccessPolicy(testVault, AccessPolicy{Principal: "reader", Secrets: []string{"get", "set"}}); err != nil {
		t.Fatal(err)
	}
	set, err := c.SetSecret(t.Context(), "fresh", params, nil)
	if err != nil {
		t.Fatal(err)
	}
	got, err := c.GetSecret(t.Context(), "fresh", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	if *got.Value != "new" || *got.ID != *set.ID || deref(got.ContentType) != "text/plain" {
		t.Errorf("got %q %s, set %s", *got.Value, *got.ID, *set.ID)
	}
}

func TestSovereignCloud(t *testing.T) {
	seed, err := ParseSeed([]byte(`
tenants: [{id: gov-tenant}]
principals: [{name: app, clientID: gov-app, tenant: gov-tenant, clientSecret: s}]
vaults:
  - name: govvault
    tenant: gov-tenant
    cloud: AzureUSGovernmentCloud
    secrets: [{name: s1, value: gov-value}]
    accessPolicies: [{principal: app, secrets: [get]}]
`))
	if err != nil {
		t.Fatal(err)
	}
	e := startWith(t, Options{Seed: seed})
	if got := e.VaultURL("govvault"); got != "https://govvault.vault.usgovcloudapi.net/" {
		t.Fatalf("vault URL %s", got)
	}
	cred, err := azidentity.NewClientSecretCredential("gov-tenant", "gov-app", "s", &azidentity.ClientSecretCredentialOptions{
		DisableInstanceDiscovery: true, ClientOptions: azcore.ClientOptions{Transport: e.HTTPClient(),
			Cloud: cloud.Configuration{ActiveDirectoryAuthorityHost: "https://" + USGovCloud.LoginHost + "/"}}})
	if err != nil {
		t.Fatal(err)
	}
	s, err := secretsClient(t, e, "govvault", cred).GetSecret(t.Context(), "s1", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	if *s.Value != "gov-value" {
		t.Errorf("value %q", *s.Value)
	}
}

func to[T any](v T) *T { return &v }
