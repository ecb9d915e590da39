package emulator

import (
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/go-logr/logr/funcr"
)

// TestLogsHoldNoSecrets runs traffic with the most verbose logger and checks that no
// secret value, client secret or access token reaches the log.
func TestLogsHoldNoSecrets(t *testing.T) {
	var mu sync.Mutex
	var log strings.Builder
	logger := funcr.New(func(prefix, args string) {
		mu.Lock()
		defer mu.Unlock()
		log.WriteString(prefix + " " + args + "\n")
	}, funcr.Options{Verbosity: 10})
	seed, err := LoadSeed("testdata/sdk.yaml")
	if err != nil {
		t.Fatal(err)
	}
	e := startWith(t, Options{Seed: seed, Logger: logger})
	cred := secretCred(t, e, tenant1, readerID, "reader-secret")
	tok, err := cred.GetToken(t.Context(), policy.TokenRequestOptions{Scopes: []string{"https://vault.azure.net/.default"}})
	if err != nil {
		t.Fatal(err)
	}
	c := secretsClient(t, e, testVault, cred)
	if _, err := c.GetSecret(t.Context(), "plain", "", nil); err != nil {
		t.Fatal(err)
	}
	_, _ = c.GetSecret(t.Context(), "disabled", "", nil)
	_, _ = secretsClient(t, e, testVault, secretCred(t, e, tenant1, readerID, "wrong-secret")).GetSecret(t.Context(), "plain", "", nil)
	_, _ = secretsClient(t, e, testVault, staticToken(tok.Token+"x")).GetSecret(t.Context(), "plain", "", nil)
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, "http://169.254.169.254/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https://vault.azure.net", nil)
	req.Header.Set("Metadata", "true")
	resp, err := e.HTTPClient().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()

	mu.Lock()
	out := log.String()
	mu.Unlock()
	if !strings.Contains(out, "Key Vault request refused") || !strings.Contains(out, "Entra token issued") {
		t.Fatalf("expected log lines missing:\n%s", out)
	}
	signature := tok.Token[strings.LastIndex(tok.Token, ".")+1:]
	for _, secret := range []string{"plain-value", "hidden", "reader-secret", "wrong-secret", signature} {
		if strings.Contains(out, secret) {
			t.Errorf("log contains %q", secret)
		}
	}
}
