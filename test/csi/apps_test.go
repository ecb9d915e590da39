package csi

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	csiapi "github.com/container-storage-interface/spec/lib/go/csi"

	"github.com/kvinject/kvinject/pkg/contract"
	"github.com/kvinject/kvinject/test/emulator"
)

// secondVault is the other vault of the node-scale tests.
const secondVault = "kv-second"

// app is one application of the node-scale tests: a workload identity (its own client
// ID, trusted for its own service account) reading its own objects from one vault.
type app struct {
	name, clientID, serviceAccount, vault string
	objects                               []contract.Object
}

// addApps adds n applications with objects secrets each (values of size bytes, or
// short ones when size is 0), their vault alternating between the tutorial's vault and
// secondVault, each identity allowed get on its own vault only.
func (w *world) addApps(t testing.TB, n, objects, size int) []app {
	t.Helper()
	if err := w.emu.AddVault(emulator.VaultSeed{Name: secondVault, Tenant: tenant}); err != nil {
		t.Fatal(err)
	}
	var out []app
	for i := range n {
		a := app{
			name:           fmt.Sprintf("app-%d", i),
			clientID:       fmt.Sprintf("a%07d-0000-4000-8000-000000000000", i),
			serviceAccount: fmt.Sprintf("app-%d-sa", i),
			vault:          []string{vault, secondVault}[i%2],
		}
		if err := w.emu.AddPrincipal(emulator.Principal{Name: a.name, ClientID: a.clientID, Tenant: tenant}); err != nil {
			t.Fatal(err)
		}
		if err := w.emu.AddFederatedCredential(emulator.FederatedCredential{
			Name: a.name, ClientID: a.clientID, Issuer: saIssuer,
			Subject: "system:serviceaccount:" + saNamespace + ":" + a.serviceAccount, JWKS: w.issuer.JWKS(),
		}); err != nil {
			t.Fatal(err)
		}
		if err := w.emu.SetAccessPolicy(a.vault, emulator.AccessPolicy{Principal: a.name, Secrets: []string{"get"}}); err != nil {
			t.Fatal(err)
		}
		for j := range objects {
			name := fmt.Sprintf("%s-secret-%02d", a.name, j)
			value := "value-of-" + name
			if size > 0 {
				value = fmt.Sprintf("%0*d", size, j)
			}
			if _, err := w.emu.SetSecret(a.vault, name, value, emulator.SecretOptions{}); err != nil {
				t.Fatal(err)
			}
			a.objects = append(a.objects, contract.Object{Name: name})
		}
		out = append(out, a)
	}
	return out
}

// tokensFor is the kubelet's serviceAccount.tokens value for a service account.
func (w *world) tokensFor(t testing.TB, serviceAccount string) string {
	t.Helper()
	return w.tokensIn(t, saNamespace, serviceAccount)
}

// tokensIn is tokensFor for a service account of another namespace.
func (w *world) tokensIn(t testing.TB, namespace, serviceAccount string) string {
	t.Helper()
	now := time.Now()
	tok, err := w.issuer.ServiceAccountToken(namespace, serviceAccount, "", now, now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(map[string]any{contract.DefaultTokenAudience: map[string]string{"token": tok, "expirationTimestamp": now.Add(time.Hour).UTC().Format(time.RFC3339)}})
	return string(b)
}

// volumeOf is pod i's volume of application a (workload identity).
func (w *world) volumeOf(t testing.TB, a app, i int) volume {
	return volume{
		name:    "kvinject-secrets",
		podUID:  fmt.Sprintf("%s-pod-%03d", a.name, i),
		objects: a.objects,
		attrs: map[string]string{
			contract.AttrKeyVaultName: a.vault, contract.AttrUsePodIdentity: "false", contract.AttrClientID: a.clientID,
			contract.ContextServiceAccount: a.serviceAccount, contract.ContextTokens: w.tokensFor(t, a.serviceAccount),
		},
	}
}

// kvRequests sums the emulator's Key Vault request counters: the authenticated ones
// (reads) and the unauthenticated ones (challenges).
func (w *world) kvRequests() (reads, challenges int) {
	for k, n := range w.emu.Counters() {
		if k.Caller == "" {
			challenges += n
		} else {
			reads += n
		}
	}
	return reads, challenges
}

// tokenRequests sums the Entra ID token requests of apps.
func (w *world) tokenRequests(apps []app) int {
	n := 0
	for _, a := range apps {
		n += w.emu.TokenRequests(tenant, a.clientID)
	}
	return n
}

// publishAll publishes reqs with workers concurrent callers, as the kubelet's sync
// loops do, and returns the first error.
func publishAll(t testing.TB, p *plugin, reqs []*csiapi.NodePublishVolumeRequest, workers int) error {
	t.Helper()
	work := make(chan *csiapi.NodePublishVolumeRequest)
	errc := make(chan error, workers)
	for range workers {
		go func() {
			var first error
			for req := range work {
				if _, err := p.NodePublishVolume(t.Context(), req); err != nil && first == nil {
					first = fmt.Errorf("%s: %w", req.TargetPath, err)
				}
			}
			errc <- first
		}()
	}
	for _, r := range reqs {
		work <- r
	}
	close(work)
	var first error
	for range workers {
		if err := <-errc; err != nil && first == nil {
			first = err
		}
	}
	return first
}
