package cluster

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
)

// writeServiceAccountKeys writes sa.key (RSA, the API server's token signing key) and
// sa.pub (its public key, which the emulator's federated credential trusts).
func writeServiceAccountKeys(dir string) error {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return err
	}
	priv, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	pub, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "sa.key"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: priv}), 0o600); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "sa.pub"), pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}), 0o644)
}

// writeKubeconfig writes a kubeconfig for the API server at server that authenticates
// with the client certificate <pki>/<cred>.crt.
func writeKubeconfig(file, server, pkiDir, cred string) error {
	cfg := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: kvinject-e2e
  cluster:
    server: %s
    certificate-authority: %s
users:
- name: %s
  user:
    client-certificate: %s
    client-key: %s
contexts:
- name: kvinject-e2e
  context:
    cluster: kvinject-e2e
    user: %s
current-context: kvinject-e2e
`, server, filepath.Join(pkiDir, "ca.crt"), cred, filepath.Join(pkiDir, cred+".crt"), filepath.Join(pkiDir, cred+".key"), cred)
	return os.WriteFile(file, []byte(cfg), 0o600)
}
