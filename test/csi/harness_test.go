package csi

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	csiapi "github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/kvinject/kvinject/internal/testkit"
	"github.com/kvinject/kvinject/pkg/contract"
	"github.com/kvinject/kvinject/pkg/csi"
	"github.com/kvinject/kvinject/test/emulator"
)

// The emulated world: the tutorial's tenant, vault and identities, plus the objects
// and principals the error classes need.
const (
	tenant      = "72f988bf-86f1-41af-91ab-2d7cd011db47"
	otherTenant = "33333333-3333-3333-3333-333333333333"
	vault       = "az-key-vault-demo"
	podIDClient = "2c1e5f3a-9b7d-4e2f-8a61-0d3c4b5a6e71" // azure-kv, pod identity
	spClient    = "5d7e9f1a-2b3c-4d5e-8f6a-7b8c9d0e1f2a" // service principal
	spSecret    = "sp-client-secret-value-7f3a9"
	wiClient    = "6e8f0a2b-3c4d-4e5f-9a7b-8c9d0e1f2a3b" // workload identity
	outsider    = "7f9a1b3c-4d5e-4f6a-8b9c-0d1e2f3a4b5c" // list only: forbidden by policy
	outsiderKey = "outsider-client-secret-8c2d"
	foreigner   = "8a0b2c4d-5e6f-4a7b-9c8d-1e2f3a4b5c6d" // lives in otherTenant
	foreignKey  = "foreign-client-secret-9d3e"
	saIssuer    = "https://kubernetes.default.svc.cluster.local"
	saNamespace = "default"
	saName      = "workload-identity-sa"
	podUID      = "0f3e6c1a-1111-4aaa-8bbb-000000000001"
	podName     = "nginx-secrets-store"
	v1          = "0123456789abcdef0123456789abcdef"
	v2          = "fedcba9876543210fedcba9876543210"
)

// world is a started emulator and an issuer trusted for workload identity.
type world struct {
	emu    *emulator.Emulator
	issuer *emulator.Issuer
	ca     string // the emulator's CA, as a PEM file
}

func startWorld(t testing.TB, opts ...func(*emulator.Options)) *world {
	t.Helper()
	iss, err := emulator.NewIssuer(saIssuer)
	if err != nil {
		t.Fatal(err)
	}
	disabled := false
	all := []string{"get"}
	seed := &emulator.Seed{
		Tenants: []emulator.TenantSeed{{ID: tenant}, {ID: otherTenant}},
		Principals: []emulator.Principal{
			{Name: "azure-kv", ClientID: podIDClient, Tenant: tenant},
			{Name: "kvinject-sp", ClientID: spClient, Tenant: tenant, ClientSecret: spSecret},
			{Name: "workload", ClientID: wiClient, Tenant: tenant},
			{Name: "outsider", ClientID: outsider, Tenant: tenant, ClientSecret: outsiderKey},
			{Name: "foreigner", ClientID: foreigner, Tenant: otherTenant, ClientSecret: foreignKey},
		},
		Vaults: []emulator.VaultSeed{{
			Name: vault, Tenant: tenant,
			Secrets: []emulator.SecretSeed{
				{Name: "DatabaseLogin", Value: "MyDBLoginName"},
				{Name: "DatabasePassword", Value: "MyP@ssword123456"},
				{Name: "b64secret", Value: "aGVsbG8gYmFzZTY0IHdvcmxk"},       // "hello base64 world"
				{Name: "hexsecret", Value: "68656c6c6f2068657820776f726c64"}, // "hello hex world"
				{Name: "versioned", Versions: []emulator.SecretVersionSeed{{Version: v1, Value: "version-one"}, {Version: v2, Value: "version-two"}}},
				{Name: "disabled", Value: "never-served-value", Enabled: &disabled},
			},
			Keys: []emulator.KeySeed{{Name: "rsakey", Type: "RSA", Size: 2048}, {Name: "eckey", Type: "EC", Curve: "P-384"}},
			Certificates: []emulator.CertificateSeed{
				{Name: "webcert", Chain: true, DNSNames: []string{"web.example.com"}},
				{Name: "pemcert", ContentType: emulator.ContentTypePEM},
			},
			AccessPolicies: []emulator.AccessPolicy{
				{Principal: "azure-kv", Secrets: all, Keys: all, Certificates: all},
				{Principal: "kvinject-sp", Secrets: all, Keys: all, Certificates: all},
				{Principal: "workload", Secrets: all, Keys: all, Certificates: all},
				{Principal: "outsider", Secrets: []string{"list"}},
				{Principal: "foreigner", Secrets: all},
			},
		}},
		PodIdentities: []emulator.PodIdentity{{Namespace: "default", Pod: "*", Selector: "azure-kv", ClientID: podIDClient}},
		FederatedCredentials: []emulator.FederatedCredential{{
			Name: "wi", ClientID: wiClient, Issuer: saIssuer,
			Subject: "system:serviceaccount:" + saNamespace + ":" + saName,
			JWKS:    iss.JWKS(),
		}},
	}
	eo := emulator.Options{Seed: seed}
	for _, o := range opts {
		o(&eo)
	}
	emu, err := emulator.Start(context.Background(), eo)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = emu.Close() })
	ca := filepath.Join(t.TempDir(), "ca.crt")
	if err := os.WriteFile(ca, emu.CAPEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	return &world{emu: emu, issuer: iss, ca: ca}
}

// env is what the csi-node binary needs to reach the emulator: its CONNECT proxy and
// its CA, as behind a corporate proxy. NMI, on loopback, is never proxied.
func (w *world) env() []string {
	return []string{"HTTPS_PROXY=" + w.emu.ProxyURL(), "NO_PROXY=", "SSL_CERT_FILE=" + w.ca}
}

// serviceAccountTokens is the kubelet's serviceAccount.tokens value for the workload SA.
func (w *world) serviceAccountTokens(t testing.TB) (raw, token string) {
	t.Helper()
	now := time.Now()
	tok, err := w.issuer.ServiceAccountToken(saNamespace, saName, "", now, now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(map[string]any{contract.DefaultTokenAudience: map[string]string{"token": tok, "expirationTimestamp": now.Add(time.Hour).UTC().Format(time.RFC3339)}})
	return string(b), tok
}

// plugin is a node plugin running in this process, reached as the kubelet reaches it:
// gRPC on its CSI socket.
type plugin struct {
	csiapi.NodeClient
	csiapi.IdentityClient
	*csi.Plugin
	socket string
	clock  *testClock
}

// testClock is the plugin's clock in in-process tests: the rotation schedule, the
// caches and the per-vault backoff follow it, so a test makes a refresh due, or a
// backoff window pass, without waiting.
type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *testClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }

// advance moves the plugin's clock past every volume's next refresh (the interval and
// its jitter), every cached object's TTL and any backoff window up to a minute.
func (p *plugin) advance() {
	p.clock.mu.Lock()
	p.clock.now = p.clock.now.Add(3 * csi.DefaultRotationPollInterval)
	p.clock.mu.Unlock()
}

// newPlugin runs the node plugin (csi.Plugin.Run, as the binary does) in this process
// until the test ends, with real tmpfs mounts under the kubelet root, reaching the
// emulator through its CONNECT proxy and trusting its CA (what HTTPS_PROXY and
// SSL_CERT_FILE give the binary), and returns a client of its CSI socket.
func newPlugin(t testing.TB, w *world, root string, deps csi.PluginOptions, mutate ...func(*csi.Options)) *plugin {
	t.Helper()
	o := csi.NewOptions()
	o.NodeID = "node-1"
	o.KubeletRoot = root
	o.Register = false
	o.MetricsBindAddress, o.HealthProbeBindAddress = "0", "0"
	o.Endpoint = filepath.Join(root, "plugins", "kvinject", "csi.sock")
	o.NMIEndpoint = "http://" + w.emu.NMIAddr()
	for _, m := range mutate {
		m(o)
	}
	if deps.AzureTransport == nil {
		proxy, err := url.Parse(w.emu.ProxyURL())
		if err != nil {
			t.Fatal(err)
		}
		// As the plugin builds its own, idle pool and all; only the proxy and the CA
		// are the emulator's.
		deps.AzureTransport = csi.NewAzureHTTPClient(csi.AzureHTTPOptions{
			IdleConnsPerHost: o.MaxRequestsInFlight, Proxy: http.ProxyURL(proxy), RootCAs: w.emu.CertPool()})
	}
	clock := &testClock{now: time.Now()}
	if deps.Now == nil {
		deps.Now = clock.Now
	}
	p, err := csi.NewPlugin(o, deps)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("plugin: %v", err)
		}
	})
	conn, err := grpc.NewClient("unix://"+o.Endpoint, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	np := &plugin{NodeClient: csiapi.NewNodeClient(conn), IdentityClient: csiapi.NewIdentityClient(conn), Plugin: p, socket: o.Endpoint, clock: clock}
	testkit.Eventually(t, 10*time.Second, "CSI socket answers", func(ctx context.Context) error {
		_, err := np.Probe(ctx, &csiapi.ProbeRequest{})
		return err
	})
	return np
}

// volume describes one publish request.
type volume struct {
	objects []contract.Object
	attrs   map[string]string // extra or overriding attributes
	secrets map[string]string
	podUID  string
	name    string // volume name in the target path
	fsGroup string
}

func objectsAttr(t testing.TB, objs []contract.Object) string {
	t.Helper()
	s, err := contract.MarshalObjects(objs)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// request builds the kubelet's NodePublishVolumeRequest for v (pod identity unless the
// attributes say otherwise).
func (v volume) request(t testing.TB, root string) *csiapi.NodePublishVolumeRequest {
	t.Helper()
	uid := v.podUID
	if uid == "" {
		uid = podUID
	}
	name := v.name
	if name == "" {
		name = "kvinject-secrets"
	}
	vc := map[string]string{
		contract.AttrKeyVaultName:      vault,
		contract.AttrTenantID:          tenant,
		contract.AttrUsePodIdentity:    "true",
		contract.ContextPodName:        podName,
		contract.ContextPodNamespace:   "default",
		contract.ContextPodUID:         uid,
		contract.ContextServiceAccount: saName,
		contract.ContextEphemeral:      "true",
	}
	if v.objects != nil {
		vc[contract.AttrObjects] = objectsAttr(t, v.objects)
	}
	for k, val := range v.attrs {
		if val == "" {
			delete(vc, k)
		} else {
			vc[k] = val
		}
	}
	return &csiapi.NodePublishVolumeRequest{
		VolumeId:   "csi-" + name + "-" + uid,
		TargetPath: csi.KubeletTargetPath(root, uid, name),
		Readonly:   true,
		VolumeCapability: &csiapi.VolumeCapability{
			AccessType: &csiapi.VolumeCapability_Mount{Mount: &csiapi.VolumeCapability_MountVolume{VolumeMountGroup: v.fsGroup}},
			AccessMode: &csiapi.VolumeCapability_AccessMode{Mode: csiapi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER},
		},
		VolumeContext: vc,
		Secrets:       v.secrets,
	}
}

// unpublishAtEnd unmounts and removes target when the test ends.
func unpublishAtEnd(t testing.TB, p *plugin, req *csiapi.NodePublishVolumeRequest) {
	t.Helper()
	t.Cleanup(func() {
		if _, err := p.NodeUnpublishVolume(context.Background(), &csiapi.NodeUnpublishVolumeRequest{VolumeId: req.VolumeId, TargetPath: req.TargetPath}); err != nil {
			t.Errorf("unpublish %s: %v", req.TargetPath, err)
		}
	})
}

// readVolume returns the visible files of a target (name -> content).
func readVolume(t testing.TB, target string) map[string]string {
	t.Helper()
	entries, err := os.ReadDir(target)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(target, e.Name()))
		if err != nil {
			t.Fatalf("read %s: %v", e.Name(), err)
		}
		out[e.Name()] = string(b)
	}
	return out
}

func errorf(format string, args ...any) error { return fmt.Errorf(format, args...) }

func statGID(t testing.TB, path string) int {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return int(st.Gid)
}
