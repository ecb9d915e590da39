package emulator

import (
	"crypto/x509"
	"encoding/pem"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParseSeed(t *testing.T) {
	const base = "tenants: [{id: t1}]\n"
	tests := []struct {
		name    string
		yaml    string
		wantErr string // "" = valid
	}{
		{name: "empty", yaml: ""},
		{name: "minimal vault", yaml: base + "vaults: [{name: kv1, tenant: t1, secrets: [{name: s, value: v}]}]"},
		{name: "unknown field", yaml: "tenant: [{id: t1}]", wantErr: `decode seed: error unmarshaling JSON: while decoding JSON: json: unknown field "tenant"`},
		{name: "bad tenant id", yaml: "tenants: [{id: 'a b'}]", wantErr: `tenants[0]: invalid id "a b"`},
		{name: "duplicate tenant", yaml: "tenants: [{id: t1}, {id: t1}]", wantErr: `tenants[1]: duplicate id "t1"`},
		{name: "vault name too short", yaml: base + "vaults: [{name: kv, tenant: t1}]",
			wantErr: `vaults[0]: invalid vault name "kv" (3-24 of [0-9A-Za-z-], starting with a letter)`},
		{name: "vault with unknown tenant", yaml: base + "vaults: [{name: kv1, tenant: t2}]", wantErr: `vaults[0]: unknown tenant "t2"`},
		{name: "duplicate vault", yaml: base + "vaults: [{name: kv1, tenant: t1}, {name: KV1, tenant: t1}]", wantErr: `vaults[1]: duplicate vault "KV1"`},
		{name: "unknown cloud", yaml: base + "vaults: [{name: kv1, tenant: t1, cloud: Mars}]", wantErr: `vaults[0]: unknown cloud "Mars"`},
		{name: "bad secret name", yaml: base + "vaults: [{name: kv1, tenant: t1, secrets: [{name: a_b}]}]",
			wantErr: `vaults[0].secrets[0]: invalid object name "a_b" (1-127 of [0-9A-Za-z-])`},
		{name: "bad version", yaml: base + "vaults: [{name: kv1, tenant: t1, secrets: [{name: s, versions: [{version: ABC, value: x}]}]}]",
			wantErr: `vaults[0].secrets[0].versions[0]: invalid version "ABC" (32 lowercase hex digits)`},
		{name: "bad key type", yaml: base + "vaults: [{name: kv1, tenant: t1, keys: [{name: k, type: oct}]}]",
			wantErr: `vaults[0].keys[0]: unknown key type "oct" (RSA or EC)`},
		{name: "bad curve", yaml: base + "vaults: [{name: kv1, tenant: t1, keys: [{name: k, type: EC, curve: P-192}]}]",
			wantErr: `vaults[0].keys[0]: unknown curve "P-192" (P-256, P-384 or P-521)`},
		{name: "bad certificate content type", yaml: base + "vaults: [{name: kv1, tenant: t1, certificates: [{name: c, contentType: text/plain}]}]",
			wantErr: `vaults[0].certificates[0]: contentType "text/plain" is neither application/x-pkcs12 nor application/x-pem-file`},
		{name: "policy for unknown principal", yaml: base + "vaults: [{name: kv1, tenant: t1, accessPolicies: [{principal: p, secrets: [get]}]}]",
			wantErr: `vaults[0].accessPolicies[0]: unknown principal "p"`},
		{name: "unknown permission", yaml: base + "principals: [{name: p, clientID: c, tenant: t1}]\nvaults: [{name: kv1, tenant: t1, accessPolicies: [{principal: p, keys: [set]}]}]",
			wantErr: `vaults[0].accessPolicies[0]: unknown keys permission "set" (one of get, list, all)`},
		{name: "principal in unknown tenant", yaml: base + "principals: [{clientID: c, tenant: t9}]", wantErr: `principals[0]: unknown tenant "t9"`},
		{name: "federated credential without keys", yaml: base + "principals: [{clientID: c, tenant: t1}]\nfederatedCredentials: [{clientID: c, issuer: i, subject: s}]",
			wantErr: `federatedCredentials[0]: no issuer keys (jwksFile, publicKeyFiles, jwks or publicKeysPEM)`},
		{name: "federated credential for unknown app", yaml: base + "federatedCredentials: [{clientID: c, issuer: i, subject: s, jwksFile: f}]",
			wantErr: `federatedCredentials[0]: unknown clientID "c"`},
		{name: "pod identity without namespace", yaml: "podIdentities: [{clientID: c}]", wantErr: `podIdentities[0]: namespace is required`},
		{name: "bad pod glob", yaml: "podIdentities: [{namespace: n, pod: '[', clientID: c}]", wantErr: `podIdentities[0]: invalid pod glob "[": syntax error in pattern`},
		{name: "several errors at once", yaml: "tenants: [{id: 'a b'}]\npodIdentities: [{clientID: c}]",
			wantErr: "tenants[0]: invalid id \"a b\"\npodIdentities[0]: namespace is required"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := ParseSeed([]byte(tc.yaml))
			if tc.wantErr == "" {
				if err != nil || s == nil {
					t.Fatalf("unexpected error %v", err)
				}
				return
			}
			if err == nil || err.Error() != tc.wantErr {
				t.Fatalf("error %v\nwant  %s", err, tc.wantErr)
			}
		})
	}
}

func TestLoadSeedFiles(t *testing.T) {
	s, err := LoadSeed("testdata/tutorial.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Vaults) != 1 || s.Vaults[0].Name != "az-key-vault-demo" || len(s.Vaults[0].Secrets) != 2 ||
		s.Vaults[0].Secrets[1].Value != "MyP@ssword123456" || s.PodIdentities[0].Pod != "*" {
		t.Errorf("tutorial seed %+v", s)
	}
	// Key files are resolved against the seed's directory and read at start.
	dir := t.TempDir()
	iss, err := NewIssuer("https://issuer.example")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "jwks.json"), iss.JWKS(), 0o644); err != nil {
		t.Fatal(err)
	}
	seedYAML := "tenants: [{id: t1}]\nprincipals: [{clientID: c, tenant: t1}]\n" +
		"federatedCredentials: [{clientID: c, issuer: 'https://issuer.example', subject: 'system:serviceaccount:a:b', jwksFile: jwks.json}," +
		" {clientID: c, issuer: 'https://issuer.example', subject: s2, jwksFile: missing.json}]\n"
	if err := os.WriteFile(filepath.Join(dir, "seed.yaml"), []byte(seedYAML), 0o644); err != nil {
		t.Fatal(err)
	}
	s, err = LoadSeed(filepath.Join(dir, "seed.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = Start(t.Context(), Options{Seed: s})
	if err == nil || !strings.Contains(err.Error(), "missing.json: no such file or directory") {
		t.Fatalf("start with a missing key file: %v", err)
	}
	// A PEM key file: tokens verify whatever their kid (the kube-apiserver's kid is not
	// derivable from the PEM alone).
	der, err := x509.MarshalPKIXPublicKey(iss.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "sa.pub"), pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	s.FederatedCredentials[1] = FederatedCredential{ClientID: "c", Issuer: "https://issuer.example", Subject: "system:serviceaccount:pem:sa", PublicKeyFiles: []string{"sa.pub"}}
	e := startWith(t, Options{Seed: s})
	if fcs := e.state.federatedFor("c"); len(fcs) != 2 || fcs[0].keys.count() != 1 || len(fcs[1].keys.loose) != 1 {
		t.Fatalf("federated credentials: %+v", fcs)
	}
	for _, sa := range []string{"a:b", "pem:sa"} {
		ns, name, _ := strings.Cut(sa, ":")
		now := time.Now()
		assertion, err := iss.ServiceAccountToken(ns, name, "", now, now.Add(time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		status, eb, _ := postToken(t, e, "t1", url.Values{"grant_type": {"client_credentials"}, "client_id": {"c"},
			"scope": {"https://vault.azure.net/.default"}, "client_assertion_type": {assertionTypeJWTBearer}, "client_assertion": {assertion}})
		if status != 200 {
			t.Errorf("%s: status %d %s", sa, status, eb.Description)
		}
	}
}

// FuzzParseSeed checks that the seed parser never panics and that every seed it
// accepts also passes validation again and starts-up structures consistently.
// The corpus is testdata/*.yaml plus testdata/fuzz/FuzzParseSeed.
func FuzzParseSeed(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.yaml")
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := ParseSeed(data)
		if err != nil {
			if s != nil {
				t.Fatalf("seed returned with error %v", err)
			}
			return
		}
		if err := s.Validate(); err != nil {
			t.Fatalf("accepted seed fails validation: %v", err)
		}
	})
}
