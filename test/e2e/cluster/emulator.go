package cluster

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"k8s.io/klog/v2/textlogger"

	"github.com/kvinject/kvinject/internal/testcerts"
	"github.com/kvinject/kvinject/test/emulator"
)

// The tutorial's names, and the e2e-only identities added to its seed.
const (
	Vault    = "az-key-vault-demo"
	TenantID = "72f988bf-86f1-41af-91ab-2d7cd011db47"
	// ClientID is the tutorial identity azure-kv (pod identity and workload identity).
	ClientID = "2c1e5f3a-9b7d-4e2f-8a61-0d3c4b5a6e71"
	// WorkloadServiceAccount is the service account the seed's federated credential
	// names (namespace default).
	WorkloadServiceAccount = "workload-identity-sa"
	// DeniedNamespace holds pods whose pod identity (selector DeniedSelector, client
	// DeniedClientID) may list but not get secrets.
	DeniedNamespace = "kvinject-denied"
	DeniedSelector  = "azure-kv-noget"
	DeniedClientID  = "7a4c2e90-5b1d-4f3e-9c8a-1e2d3c4b5a60"
)

// EmulatorOptions configure RunEmulator.
type EmulatorOptions struct {
	// SeedFile is the tutorial seed (test/emulator/testdata/tutorial.yaml).
	SeedFile string
	// SAPublicKey is the API server's service-account public key (PEM): the federated
	// credential trusts it, so the kubelet's tokens are valid client assertions.
	SAPublicKey string
	// StateDir receives ca.crt, endpoints.json and admin-address.
	StateDir string
	// CADir holds the cluster CA (ca.crt, ca.key), which issues the HTTPS certificate.
	CADir string
}

// RunEmulator is the cluster's Azure emulator process: the tutorial seed with the
// federated credential pointed at this cluster's issuer key and the identity without
// get, the NMI and HTTPS listeners on random loopback ports, and a small admin API on
// loopback for what tests change at run time (POST /secrets/{vault}/{name} sets a new
// version; the body is the value). It serves until ctx ends.
func RunEmulator(ctx context.Context, o EmulatorOptions, stderr io.Writer) error {
	seed, err := emulator.LoadSeed(o.SeedFile)
	if err != nil {
		return err
	}
	pemBytes, err := os.ReadFile(o.SAPublicKey)
	if err != nil {
		return err
	}
	if _, err := parsePublicKey(pemBytes); err != nil {
		return fmt.Errorf("%s: %w", o.SAPublicKey, err)
	}
	if len(seed.FederatedCredentials) == 0 {
		return errors.New("seed has no federated credential")
	}
	for i := range seed.FederatedCredentials {
		fc := &seed.FederatedCredentials[i]
		if fc.Issuer != ServiceAccountIssuer {
			return fmt.Errorf("seed federated credential issuer %q is not the cluster's %q", fc.Issuer, ServiceAccountIssuer)
		}
		fc.PublicKeyFiles, fc.JWKSFile, fc.JWKS, fc.Keys = nil, "", nil, nil
		fc.PublicKeysPEM = string(pemBytes)
	}
	seed.Principals = append(seed.Principals, emulator.Principal{Name: DeniedSelector, ClientID: DeniedClientID, Tenant: TenantID})
	for i := range seed.Vaults {
		if seed.Vaults[i].Name == Vault {
			seed.Vaults[i].AccessPolicies = append(seed.Vaults[i].AccessPolicies, emulator.AccessPolicy{Principal: DeniedSelector, Secrets: []string{"list"}})
		}
	}
	seed.PodIdentities = append(seed.PodIdentities, emulator.PodIdentity{Namespace: DeniedNamespace, Pod: "*", Selector: DeniedSelector, ClientID: DeniedClientID})
	if err := seed.Validate(); err != nil {
		return err
	}

	ca, err := testcerts.LoadCA(o.CADir, "ca")
	if err != nil {
		return fmt.Errorf("the cluster CA: %w", err)
	}
	logger := textlogger.NewLogger(textlogger.NewConfig(textlogger.Output(stderr)))
	// The proxy listens on the node's address, which host-network and pod-network
	// clients both reach; NMI, like the real one, on the node's loopback.
	e, err := emulator.Start(ctx, emulator.Options{Seed: seed, Listen: "127.0.0.1:0", NMIListen: "127.0.0.1:0", IMDSListen: emulator.Disabled,
		ProxyListen: NodeIP + ":0", CA: ca, StateDir: o.StateDir, Logger: logger})
	if err != nil {
		return err
	}
	defer e.Close()

	mux := http.NewServeMux()
	mux.HandleFunc("POST /secrets/{vault}/{name}", func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		v, err := e.SetSecret(r.PathValue("vault"), r.PathValue("name"), string(body), emulator.SecretOptions{})
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]string{"version": v})
	})
	// GET /totals reads the request counters (test/emulator.Totals); POST /totals/reset
	// sets them to zero.
	mux.HandleFunc("GET /totals", func(w http.ResponseWriter, _ *http.Request) { _ = json.NewEncoder(w).Encode(e.Totals()) })
	mux.HandleFunc("POST /totals/reset", func(w http.ResponseWriter, _ *http.Request) { e.ResetTotals() })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()
	if err := os.WriteFile(filepath.Join(o.StateDir, "admin-address"), []byte(ln.Addr().String()+"\n"), 0o644); err != nil {
		return err
	}
	fmt.Fprintf(stderr, "emulator ready: https %s, proxy %s, nmi %s, admin %s\n", e.Addr(), e.ProxyAddr(), e.NMIAddr(), ln.Addr())
	<-ctx.Done()
	return nil
}

func parsePublicKey(b []byte) (any, error) {
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, errors.New("no PEM block")
	}
	return x509.ParsePKIXPublicKey(blk.Bytes)
}

// EmulatorTotals reads the running emulator's request counters; reset first sets them to
// zero (and returns zeros).
func (c *Cluster) EmulatorTotals(ctx context.Context, reset bool) (emulator.Totals, error) {
	var t emulator.Totals
	method, path := http.MethodGet, "/totals"
	if reset {
		method, path = http.MethodPost, "/totals/reset"
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://"+c.EmulatorAdmin+path, nil)
	if err != nil {
		return t, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return t, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return t, fmt.Errorf("emulator %s: %s", path, resp.Status)
	}
	if reset {
		return t, nil
	}
	return t, json.NewDecoder(resp.Body).Decode(&t)
}

// SetSecret adds a new version of a secret in the running emulator and returns its
// version ID.
func (c *Cluster) SetSecret(ctx context.Context, vault, name, value string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+c.EmulatorAdmin+"/secrets/"+vault+"/"+name, strings.NewReader(value))
	if err != nil {
		return "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var out struct{ Version string }
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("set secret: %s: %s", resp.Status, body)
	}
	if err := json.Unmarshal(body, &out); err != nil {
		return "", err
	}
	return out.Version, nil
}
