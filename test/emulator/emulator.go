package emulator

import (
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/go-logr/logr"

	"github.com/kvinject/kvinject/internal/testcerts"
)

// Default listen addresses. Every listener binds to loopback.
const (
	// DefaultListen is the HTTPS listener (Key Vault and Entra ID): a random port.
	DefaultListen = "127.0.0.1:0"
	// DefaultNMIListen is where the NMI listener binds when Options.NMIListen is empty.
	// Tests get a random port; the binary's flag defaults to the real NMI port 2579.
	DefaultNMIListen = "127.0.0.1:0"
	// DefaultIMDSListen is where the IMDS listener binds when Options.IMDSListen is empty.
	DefaultIMDSListen = "127.0.0.1:0"
	// DefaultProxyListen is where the CONNECT proxy binds when Options.ProxyListen is empty.
	DefaultProxyListen = "127.0.0.1:0"
	// Disabled, given as a listen address, turns that listener off.
	Disabled = "off"

	// DefaultPageSize is the number of items per page of a list response when the client
	// does not send maxresults. It is small on purpose so that paging is exercised.
	DefaultPageSize = 3

	// DefaultTokenLifetime is the lifetime of access tokens issued by Entra ID, NMI and IMDS
	// (expires_in 3599, as the real service).
	DefaultTokenLifetime = 3599 * time.Second
)

// Options configures an Emulator. The zero value is usable: an empty seed, random
// loopback ports, a discarding logger and the wall clock.
type Options struct {
	// Seed is the initial state. Nil means an empty emulator (add state at run time).
	Seed *Seed
	// Listen is the HTTPS listener for Key Vault and Entra ID ("" = DefaultListen).
	Listen string
	// NMIListen is the plain-HTTP NMI listener ("" = DefaultNMIListen, Disabled = none).
	NMIListen string
	// IMDSListen is the plain-HTTP IMDS listener ("" = DefaultIMDSListen, Disabled = none).
	IMDSListen string
	// ProxyListen is the HTTP CONNECT proxy listener for HTTPS_PROXY ("" =
	// DefaultProxyListen, Disabled = none).
	ProxyListen string
	// CA issues the HTTPS listener's certificate (nil = a new test CA). Pass the CA a
	// test already trusts (the e2e cluster's) so one CA covers everything.
	CA *testcerts.CA
	// HTTP2 serves HTTP/2 besides HTTP/1.1 on the HTTPS listener, as Azure does. Off,
	// clients get HTTP/1.1 only (and injected connection resets stay simple).
	HTTP2 bool
	// StateDir, when set, receives ca.crt (the test CA, PEM) and endpoints.json
	// (see Endpoints) so that another process can reach the emulator.
	StateDir string
	// Logger receives structured logs. Token and secret values are never logged.
	Logger logr.Logger
	// Clock returns the current time (nil = time.Now). It drives token issue and expiry
	// checks and object timestamps.
	Clock func() time.Time
	// PageSize is the default page size of list responses (0 = DefaultPageSize).
	PageSize int
	// TokenLifetime is the lifetime of issued access tokens (0 = DefaultTokenLifetime).
	TokenLifetime time.Duration
}

// Emulator is a running Azure emulator: Key Vault and Entra ID on one HTTPS listener
// (routed by Host header), NMI and IMDS on their own plain-HTTP listeners.
// All methods are safe for concurrent use.
type Emulator struct {
	log      logr.Logger
	clock    func() time.Time
	pageSize int
	lifetime time.Duration

	tls      *tlsMaterial
	signer   *signingKey
	state    *state
	faults   *faultTable
	counters *counterTable
	// tokenCounts counts token endpoint requests by Key{Object: tenant, Caller: client ID}.
	tokenCounts *counterTable
	// nmiCounts counts NMI requests by Key{Vault: namespace, Object: pod}.
	nmiCounts *counterTable
	kvMux     *http.ServeMux
	entraMux  *http.ServeMux

	proxy proxyState

	httpsLn, nmiLn, imdsLn, proxyLn net.Listener
	servers                         []*http.Server
	wg                              sync.WaitGroup
	caFile                          string
	closeOnce                       sync.Once
}

// Start builds the state from opts.Seed, generates the test CA, the TLS certificate and
// the Entra signing key, and starts serving. The listeners are open when Start returns.
// Cancelling ctx closes the emulator, as does Close.
func Start(ctx context.Context, opts Options) (*Emulator, error) {
	e := &Emulator{
		log:         opts.Logger,
		clock:       opts.Clock,
		pageSize:    opts.PageSize,
		lifetime:    opts.TokenLifetime,
		faults:      newFaultTable(),
		counters:    newCounterTable(),
		tokenCounts: newCounterTable(),
		nmiCounts:   newCounterTable(),
	}
	if e.log.GetSink() == nil {
		e.log = logr.Discard()
	}
	if e.clock == nil {
		e.clock = time.Now
	}
	if e.pageSize <= 0 {
		e.pageSize = DefaultPageSize
	}
	if e.lifetime <= 0 {
		e.lifetime = DefaultTokenLifetime
	}
	var err error
	// The TLS certificate follows the wall clock: clients check it against theirs.
	if e.tls, err = newTLSMaterial(opts.CA, opts.HTTP2); err != nil {
		return nil, fmt.Errorf("generate TLS material: %w", err)
	}
	if e.signer, err = newSigningKey(); err != nil {
		return nil, fmt.Errorf("generate signing key: %w", err)
	}
	e.state = newState(e.clock)
	if opts.Seed != nil {
		if err := e.state.apply(opts.Seed); err != nil {
			return nil, fmt.Errorf("apply seed: %w", err)
		}
	}
	if err := e.listen(opts); err != nil {
		e.Close()
		return nil, err
	}
	if opts.StateDir != "" {
		if err := e.writeState(opts.StateDir); err != nil {
			e.Close()
			return nil, err
		}
	}
	e.serve()
	go func() {
		select {
		case <-ctx.Done():
			e.Close()
		case <-e.done():
		}
	}()
	e.log.Info("Azure emulator started", "https", e.Addr(), "nmi", e.NMIAddr(), "imds", e.IMDSAddr(), "proxy", e.ProxyAddr())
	return e, nil
}

func (e *Emulator) listen(opts Options) error {
	addr := opts.Listen
	if addr == "" {
		addr = DefaultListen
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen HTTPS on %s: %w", addr, err)
	}
	e.httpsLn = ln
	open := func(addr, def string) (net.Listener, error) {
		if addr == Disabled {
			return nil, nil
		}
		if addr == "" {
			addr = def
		}
		return net.Listen("tcp", addr)
	}
	if e.nmiLn, err = open(opts.NMIListen, DefaultNMIListen); err != nil {
		return fmt.Errorf("listen NMI on %s: %w", opts.NMIListen, err)
	}
	if e.imdsLn, err = open(opts.IMDSListen, DefaultIMDSListen); err != nil {
		return fmt.Errorf("listen IMDS on %s: %w", opts.IMDSListen, err)
	}
	if e.proxyLn, err = open(opts.ProxyListen, DefaultProxyListen); err != nil {
		return fmt.Errorf("listen proxy on %s: %w", opts.ProxyListen, err)
	}
	return nil
}

func (e *Emulator) writeState(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create state dir: %w", err)
	}
	e.caFile = filepath.Join(dir, CAFileName)
	if err := os.WriteFile(e.caFile, e.tls.ca.CertPEM, 0o644); err != nil {
		return fmt.Errorf("write CA file: %w", err)
	}
	return WriteEndpoints(filepath.Join(dir, EndpointsFileName), e.Endpoints())
}

// Close stops all listeners and waits for the servers to return. It is idempotent.
func (e *Emulator) Close() error {
	e.closeOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		for _, s := range e.servers {
			_ = s.Shutdown(ctx)
		}
		for _, ln := range []net.Listener{e.httpsLn, e.nmiLn, e.imdsLn, e.proxyLn} {
			if ln != nil {
				_ = ln.Close()
			}
		}
		e.proxy.closeTunnels()
		e.wg.Wait()
	})
	return nil
}

func (e *Emulator) done() <-chan struct{} {
	ch := make(chan struct{})
	go func() { e.wg.Wait(); close(ch) }()
	return ch
}

// Addr is the host:port of the HTTPS listener (Key Vault and Entra ID).
func (e *Emulator) Addr() string { return e.httpsLn.Addr().String() }

// NMIAddr is the host:port of the NMI listener, "" when disabled.
func (e *Emulator) NMIAddr() string { return addrOf(e.nmiLn) }

// NMIURL is the NMI token URL, "http://{NMIAddr}/host/token/", "" when disabled.
func (e *Emulator) NMIURL() string {
	if e.nmiLn == nil {
		return ""
	}
	return "http://" + e.NMIAddr() + nmiTokenPath
}

// IMDSAddr is the host:port of the IMDS listener, "" when disabled.
func (e *Emulator) IMDSAddr() string { return addrOf(e.imdsLn) }

// CAFile is the path of the PEM CA file written to Options.StateDir, "" without one.
func (e *Emulator) CAFile() string { return e.caFile }

// CAPEM is the PEM encoding of the test CA that issued the HTTPS certificate.
func (e *Emulator) CAPEM() []byte { return append([]byte(nil), e.tls.ca.CertPEM...) }

// CertPool is a new pool holding only the test CA.
func (e *Emulator) CertPool() *x509.CertPool { return e.tls.pool() }

// AuthorityHost is the Entra ID authority host for the public cloud,
// "https://login.microsoftonline.com/". Set it as the credential's
// Cloud.ActiveDirectoryAuthorityHost, with DisableInstanceDiscovery.
func (e *Emulator) AuthorityHost() string { return "https://" + PublicCloud.LoginHost + "/" }

// VaultURL is the URL of the named vault with its real host name, for example
// "https://az-key-vault-demo.vault.azure.net/" (the suffix follows the vault's cloud).
// It does not check that the vault exists.
func (e *Emulator) VaultURL(name string) string {
	return "https://" + name + "." + e.state.vaultCloud(name).VaultSuffix + "/"
}

// DialContext connects to the emulator whatever address is asked (see Dialer): the
// IMDS address 169.254.169.254 goes to the IMDS listener, loopback addresses (such as
// NMIURL's) are dialled as given, every other address goes to the HTTPS listener. Use
// it as an http.Transport's DialContext so that clients keep the real host names (and
// TLS server names) while talking to the emulator.
func (e *Emulator) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	return Dialer(e.Addr(), e.IMDSAddr())(ctx, network, addr)
}

// HTTPClient is a new client whose transport dials the emulator for every address
// (see DialContext) and trusts only the test CA. Pass it as azcore ClientOptions.Transport
// to the unmodified Key Vault clients and azidentity credentials.
func (e *Emulator) HTTPClient() *http.Client {
	return NewHTTPClient(e.Addr(), e.IMDSAddr(), e.CertPool())
}

// Endpoints describes where the emulator listens, as written to endpoints.json.
func (e *Emulator) Endpoints() Endpoints {
	return Endpoints{
		HTTPS:         e.Addr(),
		NMI:           e.NMIAddr(),
		NMIURL:        e.NMIURL(),
		IMDS:          e.IMDSAddr(),
		Proxy:         e.ProxyAddr(),
		CAFile:        e.caFile,
		AuthorityHost: e.AuthorityHost(),
		Vaults:        e.vaultURLs(),
	}
}

// --- run-time changes (rotation tests) -------------------------------------------

// SetSecret adds a new version of the secret (creating the secret if needed) and returns
// the new version ID. The new version becomes the latest.
func (e *Emulator) SetSecret(vault, name, value string, opts SecretOptions) (string, error) {
	return e.state.setSecret(vault, name, value, opts)
}

// SetEnabled enables or disables one version of an object ("" = latest version).
// Disabling a certificate also disables its backing secret and key version.
func (e *Emulator) SetEnabled(vault string, typ ObjectType, name, version string, enabled bool) error {
	return e.state.setEnabled(vault, typ, name, version, enabled)
}

// AddKey generates a new key version (RSA or EC, see KeyOptions) and returns its version ID.
func (e *Emulator) AddKey(vault, name string, opts KeyOptions) (string, error) {
	return e.state.addKey(vault, name, opts)
}

// AddCertificate generates a key and certificate and adds them as a new version of a
// certificate with its backing secret and key (same name and version). The secret holds
// PKCS#12 (empty password, legacy encryption) or PEM per opts.ContentType.
// It returns the version ID.
func (e *Emulator) AddCertificate(vault, name string, opts CertificateOptions) (string, error) {
	return e.state.addCertificate(vault, name, opts)
}

// SetAccessPolicy replaces the access policy of one principal on a vault. An empty policy
// (no permissions) removes it.
func (e *Emulator) SetAccessPolicy(vault string, policy AccessPolicy) error {
	return e.state.setAccessPolicy(vault, policy)
}

// AddPrincipal adds or replaces a service principal (by client ID).
func (e *Emulator) AddPrincipal(p Principal) error { return e.state.addPrincipal(p) }

// AddVault adds an empty vault; it is an error if it exists.
func (e *Emulator) AddVault(v VaultSeed) error { return e.state.addVault(v) }

// AddTenant adds a tenant; adding an existing tenant is a no-op.
func (e *Emulator) AddTenant(t TenantSeed) error { return e.state.addTenant(t) }

// AddPodIdentity adds an NMI mapping from pods to a client ID. Mappings are matched in
// the order added; the first match wins.
func (e *Emulator) AddPodIdentity(p PodIdentity) error { return e.state.addPodIdentity(p) }

// AddFederatedCredential adds a federated identity credential to an application.
func (e *Emulator) AddFederatedCredential(fc FederatedCredential) error {
	return e.state.addFederatedCredential(fc)
}

// AddManagedIdentity adds a managed identity served by IMDS.
func (e *Emulator) AddManagedIdentity(m ManagedIdentity) error {
	return e.state.addManagedIdentity(m)
}

// --- faults and counters ---------------------------------------------------------

// SetFault installs a fault for Key Vault requests matching target, replacing any fault
// for the same target. The most specific target wins (object, then type, then vault).
// Faults apply to authenticated requests (after the challenge), so the unauthenticated
// challenge round trip is never faulted.
func (e *Emulator) SetFault(target FaultTarget, f Fault) { e.faults.set(target, f) }

// ClearFaults removes all faults.
func (e *Emulator) ClearFaults() { e.faults.clear() }

// Requests is the number of Key Vault requests counted for key. Every request that
// reaches a vault is counted, including challenged, refused and faulted ones.
func (e *Emulator) Requests(key Key) int { return e.counters.get(key) }

// RequestsTotal sums the counters of a vault and object over all callers
// (object "" = requests not naming an object, such as list of all secrets).
func (e *Emulator) RequestsTotal(vault, object string) int {
	return e.counters.total(vault, object)
}

// Counters is a snapshot of all request counters.
func (e *Emulator) Counters() map[Key]int { return e.counters.snapshot() }

// ResetCounters sets all counters to zero.
func (e *Emulator) ResetCounters() { e.counters.reset() }

// --- tokens ----------------------------------------------------------------------

// MintToken makes an access token like the ones Entra ID issues, or a deliberately bad
// one (see TokenOptions). It does not check that the tenant or client exist.
func (e *Emulator) MintToken(opts TokenOptions) (string, error) {
	return e.mint(opts)
}

// SigningKey is the public key Entra ID signs access tokens with.
func (e *Emulator) SigningKey() crypto.PublicKey { return e.signer.key.Public() }

var errNotFound = errors.New("not found")

func addrOf(ln net.Listener) string {
	if ln == nil {
		return ""
	}
	return ln.Addr().String()
}
