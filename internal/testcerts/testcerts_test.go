package testcerts

import (
	"crypto/x509"
	"testing"
)

func TestIssueVerifyAndReload(t *testing.T) {
	t.Parallel()
	ca, err := NewCA("t")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := ca.WriteFiles(dir, "ca"); err != nil {
		t.Fatal(err)
	}
	again, err := LoadCA(dir, "ca")
	if err != nil {
		t.Fatal(err)
	}
	server, err := again.Issue("*.vault.azure.net", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := server.Cert.Verify(x509.VerifyOptions{Roots: ca.Pool(), DNSName: "kv.vault.azure.net"}); err != nil {
		t.Fatalf("a server certificate issued by the reloaded CA does not verify against the original: %v", err)
	}
	client, err := ca.IssueSpec(Spec{CommonName: "admin", Organizations: []string{"system:masters"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := client.Cert.Verify(x509.VerifyOptions{Roots: ca.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Fatalf("client certificate: %v", err)
	}
	if _, err := server.TLSCertificate(); err != nil {
		t.Fatal(err)
	}
}
