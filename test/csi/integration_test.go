package csi

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azcertificates"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azsecrets"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"software.sslmate.com/src/go-pkcs12"

	"github.com/kvinject/kvinject/internal/testkit"
	"github.com/kvinject/kvinject/pkg/contract"
	"github.com/kvinject/kvinject/pkg/csi"
	"github.com/kvinject/kvinject/test/emulator"
)

// TestTutorial is the reference tutorial's check: ls shows DATABASE_LOGIN and
// DATABASE_PASSWORD, cat shows MyDBLoginName and MyP@ssword123456.
func TestTutorial(t *testing.T) {
	testkit.RequireRoot(t)
	w := startWorld(t)
	root := t.TempDir()
	p := newPlugin(t, w, root, csi.PluginOptions{})
	req := volume{objects: []contract.Object{
		{Name: "DatabaseLogin", Alias: "DATABASE_LOGIN", Type: contract.TypeSecret},
		{Name: "DatabasePassword", Alias: "DATABASE_PASSWORD", Type: contract.TypeSecret},
	}}.request(t, root)
	if _, err := p.NodePublishVolume(t.Context(), req); err != nil {
		t.Fatalf("publish: %v", err)
	}
	unpublishAtEnd(t, p, req)
	got := readVolume(t, req.TargetPath)
	want := map[string]string{"DATABASE_LOGIN": "MyDBLoginName", "DATABASE_PASSWORD": "MyP@ssword123456"}
	if len(got) != 2 || got["DATABASE_LOGIN"] != want["DATABASE_LOGIN"] || got["DATABASE_PASSWORD"] != want["DATABASE_PASSWORD"] {
		t.Fatalf("files = %v, want %v", got, want)
	}
	mounted, err := csi.NewMounter().IsMountPoint(req.TargetPath)
	if err != nil || !mounted {
		t.Fatalf("target is not a mount point: %v %v", mounted, err)
	}
	if n := w.emu.Requests(emulator.Key{Vault: vault, Object: "DatabaseLogin", Caller: podIDClient}); n != 1 {
		t.Fatalf("DatabaseLogin was read %d times by the pod identity, want 1", n)
	}
}

// sdkClients reads the emulator's objects directly, to check the rendered files
// against what Key Vault holds.
type sdkClients struct {
	secrets *azsecrets.Client
	keys    *azkeys.Client
	certs   *azcertificates.Client
}

func newSDKClients(t *testing.T, w *world) sdkClients {
	t.Helper()
	co := azcore.ClientOptions{Transport: w.emu.HTTPClient(), Cloud: cloud.Configuration{ActiveDirectoryAuthorityHost: w.emu.AuthorityHost()}}
	cred, err := azidentity.NewClientSecretCredential(tenant, spClient, spSecret, &azidentity.ClientSecretCredentialOptions{ClientOptions: co, DisableInstanceDiscovery: true})
	if err != nil {
		t.Fatal(err)
	}
	url := w.emu.VaultURL(vault)
	s, _ := azsecrets.NewClient(url, cred, &azsecrets.ClientOptions{ClientOptions: azcore.ClientOptions{Transport: w.emu.HTTPClient()}})
	k, _ := azkeys.NewClient(url, cred, &azkeys.ClientOptions{ClientOptions: azcore.ClientOptions{Transport: w.emu.HTTPClient()}})
	c, _ := azcertificates.NewClient(url, cred, &azcertificates.ClientOptions{ClientOptions: azcore.ClientOptions{Transport: w.emu.HTTPClient()}})
	return sdkClients{s, k, c}
}

// TestObjectTypesFormatsEncodings renders every type, format and encoding.
func TestObjectTypesFormatsEncodings(t *testing.T) {
	testkit.RequireRoot(t)
	w := startWorld(t)
	root := t.TempDir()
	p := newPlugin(t, w, root, csi.PluginOptions{})
	objs := []contract.Object{
		{Name: "DatabaseLogin", Alias: "plain", FilePermission: "0400"},
		{Name: "b64secret", Alias: "b64", Encoding: contract.EncodingBase64},
		{Name: "hexsecret", Alias: "hex", Encoding: contract.EncodingHex},
		{Name: "DatabasePassword", Alias: "utf8", Encoding: contract.EncodingUTF8},
		{Name: "rsakey", Alias: "rsa.pub", Type: contract.TypeKey},
		{Name: "eckey", Alias: "ec.pub", Type: contract.TypeKey},
		{Name: "webcert", Alias: "web.crt", Type: contract.TypeCert},
		{Name: "webcert", Alias: "web.pem", Type: contract.TypeSecret},
		{Name: "webcert", Alias: "web.pfx", Type: contract.TypeSecret, Format: contract.FormatPFX},
		{Name: "pemcert", Alias: "pemcert.pem", Type: contract.TypeSecret},
		{Name: "versioned", Alias: "versioned-v1", Version: v1},
		{Name: "versioned", Alias: "versioned-latest"},
	}
	req := volume{objects: objs, fsGroup: "3000"}.request(t, root)
	if _, err := p.NodePublishVolume(t.Context(), req); err != nil {
		t.Fatalf("publish: %v", err)
	}
	unpublishAtEnd(t, p, req)
	files := readVolume(t, req.TargetPath)
	if len(files) != len(objs) {
		t.Fatalf("%d files, want %d: %v", len(files), len(objs), keys(files))
	}
	exact := map[string]string{
		"plain": "MyDBLoginName", "b64": "hello base64 world", "hex": "hello hex world", "utf8": "MyP@ssword123456",
		"versioned-v1": "version-one", "versioned-latest": "version-two",
	}
	for name, want := range exact {
		if files[name] != want {
			t.Errorf("%s = %q, want %q", name, files[name], want)
		}
	}
	fi, _ := os.Stat(filepath.Join(req.TargetPath, "plain"))
	if fi.Mode().Perm() != 0o400 {
		t.Errorf("plain mode %v, want 0400", fi.Mode().Perm())
	}
	fi, _ = os.Stat(filepath.Join(req.TargetPath, "b64"))
	if fi.Mode().Perm() != 0o644 {
		t.Errorf("b64 mode %v, want the default 0644", fi.Mode().Perm())
	}

	kv := newSDKClients(t, w)
	ctx := t.Context()
	// key: the public key of Key Vault's JWK.
	rk, err := kv.keys.GetKey(ctx, "rsakey", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	pub := parsePublicKey(t, files["rsa.pub"]).(*rsa.PublicKey)
	if pub.N.Cmp(new(big.Int).SetBytes(rk.Key.N)) != 0 || pub.E != int(new(big.Int).SetBytes(rk.Key.E).Int64()) {
		t.Error("rsa.pub is not the vault's RSA public key")
	}
	ek, err := kv.keys.GetKey(ctx, "eckey", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	ecpub := parsePublicKey(t, files["ec.pub"]).(*ecdsa.PublicKey)
	point, err := ecpub.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	// Uncompressed point: 0x04 || X || Y, each 48 bytes for P-384.
	if ecpub.Curve.Params().Name != "P-384" || !bytes.Equal(point, append(append([]byte{4}, leftPad(ek.Key.X, 48)...), leftPad(ek.Key.Y, 48)...)) {
		t.Error("ec.pub is not the vault's P-384 public key")
	}
	// cert: the leaf, as Key Vault's cer.
	wc, err := kv.certs.GetCertificate(ctx, "webcert", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	blocks := pemBlocks(t, files["web.crt"])
	if len(blocks) != 1 || blocks[0].Type != "CERTIFICATE" || !bytes.Equal(blocks[0].Bytes, wc.CER) {
		t.Errorf("web.crt is not exactly the leaf certificate (%d blocks)", len(blocks))
	}
	// cert-backed secret: private key (PKCS#8) + leaf + CA, leaf to root.
	blocks = pemBlocks(t, files["web.pem"])
	if len(blocks) != 3 || blocks[0].Type != "PRIVATE KEY" || blocks[1].Type != "CERTIFICATE" || blocks[2].Type != "CERTIFICATE" {
		t.Fatalf("web.pem blocks %v, want PRIVATE KEY, CERTIFICATE, CERTIFICATE", blockTypes(blocks))
	}
	if !bytes.Equal(blocks[1].Bytes, wc.CER) {
		t.Error("web.pem's first certificate is not the leaf")
	}
	key, err := x509.ParsePKCS8PrivateKey(blocks[0].Bytes)
	if err != nil {
		t.Fatalf("web.pem's key is not PKCS#8: %v", err)
	}
	leaf, _ := x509.ParseCertificate(blocks[1].Bytes)
	ca, _ := x509.ParseCertificate(blocks[2].Bytes)
	if !key.(crypto.Signer).Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(leaf.PublicKey) {
		t.Error("web.pem's private key does not match the leaf")
	}
	if err := leaf.CheckSignatureFrom(ca); err != nil {
		t.Errorf("web.pem's second certificate did not issue the leaf: %v", err)
	}
	// pfx: the raw PFX bytes of the backing secret.
	ws, err := kv.secrets.GetSecret(ctx, "webcert", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, cert, _, err := pkcs12.DecodeChain([]byte(files["web.pfx"]), ""); err != nil || !bytes.Equal(cert.Raw, wc.CER) {
		t.Errorf("web.pfx is not the certificate's PFX: %v", err)
	}
	_ = ws
	// PEM-stored certificate: as stored.
	ps, err := kv.secrets.GetSecret(ctx, "pemcert", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	if files["pemcert.pem"] != *ps.Value {
		t.Error("pemcert.pem is not the stored PEM")
	}
	if gid := statGID(t, filepath.Join(req.TargetPath, "web.pem")); gid != 3000 {
		t.Errorf("web.pem gid %d, want fsGroup 3000", gid)
	}
}

func keys(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func pemBlocks(t *testing.T, s string) []*pem.Block {
	t.Helper()
	var out []*pem.Block
	rest := []byte(s)
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		out = append(out, b)
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		t.Fatalf("trailing non-PEM data")
	}
	return out
}

func blockTypes(bs []*pem.Block) []string {
	var out []string
	for _, b := range bs {
		out = append(out, b.Type)
	}
	return out
}

func parsePublicKey(t *testing.T, s string) any {
	t.Helper()
	bs := pemBlocks(t, s)
	if len(bs) != 1 || bs[0].Type != "PUBLIC KEY" {
		t.Fatalf("want one PUBLIC KEY block, got %v", blockTypes(bs))
	}
	k, err := x509.ParsePKIXPublicKey(bs[0].Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestIdentityModes publishes with each identity mode and checks, through the
// emulator's per-caller counters, that the pod's own identity read the secret.
func TestIdentityModes(t *testing.T) {
	testkit.RequireRoot(t)
	w := startWorld(t)
	root := t.TempDir()
	p := newPlugin(t, w, root, csi.PluginOptions{})
	tokens, _ := w.serviceAccountTokens(t)
	objs := []contract.Object{{Name: "DatabaseLogin", Alias: "DATABASE_LOGIN"}}
	cases := []struct {
		name   string
		vol    volume
		caller string
	}{
		{"pod identity", volume{objects: objs}, podIDClient},
		{"workload identity, token in volume context", volume{objects: objs, attrs: map[string]string{
			contract.AttrUsePodIdentity: "false", contract.AttrClientID: wiClient, contract.ContextTokens: tokens}}, wiClient},
		{"workload identity, token in secrets", volume{objects: objs, attrs: map[string]string{
			contract.AttrUsePodIdentity: "false", contract.AttrClientID: wiClient},
			secrets: map[string]string{contract.ContextTokens: tokens}}, wiClient},
		{"service principal", volume{objects: objs, attrs: map[string]string{contract.AttrUsePodIdentity: "false"},
			secrets: map[string]string{contract.SecretClientID: spClient, contract.SecretClientSecret: spSecret}}, spClient},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.vol.name = "vol" + string(rune('a'+i))
			req := tc.vol.request(t, root)
			before := w.emu.Requests(emulator.Key{Vault: vault, Object: "DatabaseLogin", Caller: tc.caller})
			if _, err := p.NodePublishVolume(t.Context(), req); err != nil {
				t.Fatalf("publish: %v", err)
			}
			unpublishAtEnd(t, p, req)
			if got := readVolume(t, req.TargetPath)["DATABASE_LOGIN"]; got != "MyDBLoginName" {
				t.Fatalf("DATABASE_LOGIN = %q", got)
			}
			if n := w.emu.Requests(emulator.Key{Vault: vault, Object: "DatabaseLogin", Caller: tc.caller}) - before; n != 1 {
				t.Fatalf("caller %s read the secret %d times, want 1", tc.caller, n)
			}
		})
	}
	t.Run("node identity is refused", func(t *testing.T) {
		req := volume{objects: objs, name: "vmid", attrs: map[string]string{contract.AttrUsePodIdentity: "false", contract.AttrUseVMManagedIdentity: "true"}}.request(t, root)
		_, err := p.NodePublishVolume(t.Context(), req)
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "node's managed identity") {
			t.Fatalf("publish with useVMManagedIdentity: %v", err)
		}
		if _, err := os.Lstat(req.TargetPath); !os.IsNotExist(err) {
			t.Fatal("a refused publish created the target")
		}
	})
	t.Run("pod without a pod identity", func(t *testing.T) {
		req := volume{objects: objs, name: "nopodid", attrs: map[string]string{contract.ContextPodNamespace: "elsewhere"}}.request(t, root)
		_, err := p.NodePublishVolume(t.Context(), req)
		if status.Code(err) != codes.Unauthenticated || !strings.Contains(err.Error(), "no identity is assigned to pod elsewhere/"+podName) {
			t.Fatalf("publish for an unbound pod: %v", err)
		}
	})
}

// TestErrorClasses checks the code and the message a pod's events show for each class.
func TestErrorClasses(t *testing.T) {
	testkit.RequireRoot(t)
	w := startWorld(t)
	root := t.TempDir()
	p := newPlugin(t, w, root, csi.PluginOptions{})
	sp := func(id, secret string) map[string]string {
		return map[string]string{contract.SecretClientID: id, contract.SecretClientSecret: secret}
	}
	noPodID := map[string]string{contract.AttrUsePodIdentity: "false"}
	cases := []struct {
		name  string
		vol   volume
		setup func()
		code  codes.Code
		msg   string
	}{
		{"not found", volume{objects: []contract.Object{{Name: "Missing"}}}, nil, codes.NotFound,
			`vault "az-key-vault-demo": secret "Missing": Key Vault answered 404 SecretNotFound: there is no secret named "Missing" in vault "az-key-vault-demo"; check objectName and objectType`},
		{"version not found", volume{objects: []contract.Object{{Name: "versioned", Version: "00000000000000000000000000000000"}}}, nil, codes.NotFound,
			`there is no secret named "versioned" with version 00000000000000000000000000000000 in vault "az-key-vault-demo"`},
		{"forbidden by policy", volume{objects: []contract.Object{{Name: "DatabaseLogin"}}, attrs: noPodID, secrets: sp(outsider, outsiderKey)}, nil, codes.PermissionDenied,
			`vault "az-key-vault-demo": secret "DatabaseLogin": Key Vault answered 403 ForbiddenByPolicy: the service principal of the volume's nodePublishSecretRef lacks get permission on secrets in vault "az-key-vault-demo"; grant it get on secrets (access policy) or a Key Vault Secrets User role`},
		{"pod identity forbidden by policy", volume{objects: []contract.Object{{Name: "DatabaseLogin"}}, attrs: map[string]string{contract.ContextPodNamespace: "restricted"}}, func() {
			_ = w.emu.AddPodIdentity(emulator.PodIdentity{Namespace: "restricted", Pod: "*", ClientID: outsider})
		}, codes.PermissionDenied,
			`vault "az-key-vault-demo": secret "DatabaseLogin": Key Vault answered 403 ForbiddenByPolicy: pod identity (client ID "` + outsider + `") of pod restricted/` + podName + ` lacks get permission on secrets in vault "az-key-vault-demo"`},
		{"disabled", volume{objects: []contract.Object{{Name: "disabled"}}}, nil, codes.PermissionDenied,
			`vault "az-key-vault-demo": secret "disabled": Key Vault answered 403 SecretDisabled: the secret is disabled in vault "az-key-vault-demo"; enable it, or set objectVersion to an enabled version`},
		{"throttled", volume{objects: []contract.Object{{Name: "DatabaseLogin"}}}, func() {
			w.emu.SetFault(emulator.FaultTarget{Vault: vault, ObjectType: emulator.ObjectSecret, Object: "DatabaseLogin"}, emulator.Fault{Status: 429})
		}, codes.Unavailable, `vault "az-key-vault-demo": secret "DatabaseLogin": Key Vault answered 429 Throttled: Key Vault throttles the node's requests to vault "az-key-vault-demo"; the node waits as Key Vault asks and the next refresh retries`},
		{"wrong tenant", volume{objects: []contract.Object{{Name: "DatabaseLogin"}}, attrs: map[string]string{contract.AttrUsePodIdentity: "false", contract.AttrTenantID: otherTenant}, secrets: sp(foreigner, foreignKey)}, nil, codes.Unauthenticated,
			`vault "az-key-vault-demo": secret "DatabaseLogin": the vault's challenge names another tenant: vault "az-key-vault-demo" is not in the tenant the volume names; set tenantId to the vault's tenant`},
		{"bad client secret", volume{objects: []contract.Object{{Name: "DatabaseLogin"}}, attrs: noPodID, secrets: sp(spClient, "not-the-secret")}, nil, codes.Unauthenticated,
			`vault "az-key-vault-demo": secret "DatabaseLogin": Entra ID refused to issue a token (invalid_client AADSTS7000215): check the service principal of the volume's nodePublishSecretRef: its client ID, tenantId, and its client secret or federated credential`},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			w.emu.ClearFaults()
			p.advance() // past any backoff an earlier case left
			if tc.setup != nil {
				tc.setup()
			}
			tc.vol.name = "err" + string(rune('a'+i))
			req := tc.vol.request(t, root)
			_, err := p.NodePublishVolume(t.Context(), req)
			st, _ := status.FromError(err)
			if st.Code() != tc.code || !strings.Contains(st.Message(), tc.msg) {
				t.Fatalf("got %v %q\nwant %v containing %q", st.Code(), st.Message(), tc.code, tc.msg)
			}
			for _, secret := range []string{outsiderKey, foreignKey, "not-the-secret", spSecret, "never-served-value"} {
				if strings.Contains(st.Message(), secret) {
					t.Fatalf("the error quotes %q", secret)
				}
			}
			if _, err := os.Lstat(req.TargetPath); !os.IsNotExist(err) {
				t.Fatal("a failed first publish left the target behind")
			}
		})
	}
	t.Run("throttled then recovered", func(t *testing.T) {
		w.emu.ClearFaults()
		p.advance()
		w.emu.SetFault(emulator.FaultTarget{Vault: vault, ObjectType: emulator.ObjectSecret, Object: "DatabasePassword"}, emulator.Fault{Status: 429, Count: 2, RetryAfter: 30 * time.Second})
		req := volume{name: "recover", objects: []contract.Object{{Name: "DatabasePassword", Alias: "DATABASE_PASSWORD"}}}.request(t, root)
		// Each 429 holds the vault for its Retry-After; within it nothing is sent, and
		// the kubelet's retry fails at once; after it, one request goes.
		for attempt, want := range []string{"Key Vault answered 429 Throttled", "not sent", "Key Vault answered 429 Throttled", "not sent", ""} {
			_, err := p.NodePublishVolume(t.Context(), req)
			if want == "" {
				if err != nil {
					t.Fatalf("attempt %d after the 429s: %v", attempt+1, err)
				}
				break
			}
			if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), want) {
				t.Fatalf("attempt %d: %v, want Unavailable %q", attempt+1, err, want)
			}
			if want == "not sent" {
				p.advance()
			}
		}
		if got := w.emu.Requests(emulator.Key{Vault: vault, Object: "DatabasePassword", Caller: podIDClient}); got != 3 {
			t.Fatalf("%d requests reached Key Vault, want 3: one per Retry-After window", got)
		}
		unpublishAtEnd(t, p, req)
		if got := readVolume(t, req.TargetPath)["DATABASE_PASSWORD"]; got != "MyP@ssword123456" {
			t.Fatalf("DATABASE_PASSWORD = %q", got)
		}
	})
}

// TestRotation rotates two secrets 50 times while readers read the volume: through a
// resolved ..data they always see both files from one generation, and no visible file
// is ever missing. Republishes before the interval read nothing; unchanged ones write
// nothing.
func TestRotation(t *testing.T) {
	testkit.RequireRoot(t)
	w := startWorld(t)
	root := t.TempDir()
	p := newPlugin(t, w, root, csi.PluginOptions{})
	req := volume{objects: []contract.Object{{Name: "DatabaseLogin", Alias: "DATABASE_LOGIN"}, {Name: "DatabasePassword", Alias: "DATABASE_PASSWORD"}}}.request(t, root)
	set := func(i int) {
		for _, n := range []string{"DatabaseLogin", "DatabasePassword"} {
			if _, err := w.emu.SetSecret(vault, n, n+"-gen-"+itoa(i), emulator.SecretOptions{}); err != nil {
				t.Fatal(err)
			}
		}
	}
	set(0)
	ctx := t.Context()
	if _, err := p.NodePublishVolume(ctx, req); err != nil {
		t.Fatal(err)
	}
	unpublishAtEnd(t, p, req)
	target := req.TargetPath

	rctx, cancel := context.WithCancel(ctx)
	errc := make(chan error, 1)
	reads := make(chan int, 1)
	go func() {
		n, err := readUntil(rctx, target)
		reads <- n
		errc <- err
	}()
	for i := 1; i <= 50; i++ {
		set(i)
		gen, _ := os.Readlink(filepath.Join(target, csi.DataLink))
		if _, err := p.NodePublishVolume(ctx, req); err != nil { // not due: nothing read
			cancel()
			t.Fatalf("republish %d: %v", i, err)
		}
		if g, _ := os.Readlink(filepath.Join(target, csi.DataLink)); g != gen {
			cancel()
			t.Fatalf("republish %d before the interval swapped ..data", i)
		}
		p.advance()
		if _, err := p.NodePublishVolume(ctx, req); err != nil {
			cancel()
			t.Fatalf("republish %d: %v", i, err)
		}
		if g, _ := os.Readlink(filepath.Join(target, csi.DataLink)); g == gen {
			cancel()
			t.Fatalf("republish %d did not swap ..data", i)
		}
	}
	cancel()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if n := <-reads; n < 10 {
		t.Fatalf("the reader read only %d times", n)
	}
	if got := readVolume(t, target); got["DATABASE_LOGIN"] != "DatabaseLogin-gen-50" || got["DATABASE_PASSWORD"] != "DatabasePassword-gen-50" {
		t.Fatalf("final files %v", got)
	}
	// Unchanged: the same ..data after a republish.
	gen, _ := os.Readlink(filepath.Join(target, csi.DataLink))
	p.advance()
	if _, err := p.NodePublishVolume(ctx, req); err != nil {
		t.Fatal(err)
	}
	if g, _ := os.Readlink(filepath.Join(target, csi.DataLink)); g != gen {
		t.Fatal("an unchanged republish swapped ..data")
	}
	// A failed refresh (secret disabled) keeps the complete old set.
	if err := w.emu.SetEnabled(vault, emulator.ObjectSecret, "DatabasePassword", "", false); err != nil {
		t.Fatal(err)
	}
	p.advance()
	if _, err := p.NodePublishVolume(ctx, req); err != nil {
		t.Fatalf("failed refresh: %v, want success with the old files", err)
	}
	if got := readVolume(t, target); got["DATABASE_PASSWORD"] != "DatabasePassword-gen-50" {
		t.Fatalf("after a failed refresh %v", got)
	}
}

func itoa(i int) string { return big.NewInt(int64(i)).String() }

// readUntil reads the volume until ctx ends, returning the number of reads and the
// first inconsistency.
func readUntil(ctx context.Context, target string) (int, error) {
	n := 0
	for ctx.Err() == nil {
		gen, err := os.Readlink(filepath.Join(target, csi.DataLink))
		if err != nil {
			return n, err
		}
		login, err1 := os.ReadFile(filepath.Join(target, gen, "DATABASE_LOGIN"))
		pass, err2 := os.ReadFile(filepath.Join(target, gen, "DATABASE_PASSWORD"))
		if err1 != nil || err2 != nil {
			return n, errorf("missing file in %s: %v %v", gen, err1, err2)
		}
		lg := strings.TrimPrefix(string(login), "DatabaseLogin-gen-")
		pg := strings.TrimPrefix(string(pass), "DatabasePassword-gen-")
		if lg != pg {
			return n, errorf("mixed set in %s: login generation %s, password generation %s", gen, lg, pg)
		}
		for _, f := range []string{"DATABASE_LOGIN", "DATABASE_PASSWORD"} {
			if _, err := os.ReadFile(filepath.Join(target, f)); err != nil {
				return n, errorf("visible file %s missing: %v", f, err)
			}
		}
		n++
	}
	return n, nil
}

// TestSovereignClouds publishes from vaults in the US Government and China clouds: the
// vault host, the token audience and the Entra ID authority follow cloudName.
func TestSovereignClouds(t *testing.T) {
	testkit.RequireRoot(t)
	w := startWorld(t)
	root := t.TempDir()
	p := newPlugin(t, w, root, csi.PluginOptions{})
	for i, c := range []struct{ cloud, vault string }{{contract.CloudUSGovernment, "kv-usgov"}, {contract.CloudChina, "kv-china"}} {
		t.Run(c.cloud, func(t *testing.T) {
			if err := w.emu.AddVault(emulator.VaultSeed{Name: c.vault, Tenant: tenant, Cloud: c.cloud}); err != nil {
				t.Fatal(err)
			}
			if _, err := w.emu.SetSecret(c.vault, "DatabaseLogin", "login-in-"+c.cloud, emulator.SecretOptions{}); err != nil {
				t.Fatal(err)
			}
			if err := w.emu.SetAccessPolicy(c.vault, emulator.AccessPolicy{Principal: "kvinject-sp", Secrets: []string{"get"}}); err != nil {
				t.Fatal(err)
			}
			req := volume{name: "cloud" + string(rune('a'+i)), objects: []contract.Object{{Name: "DatabaseLogin", Alias: "DATABASE_LOGIN"}},
				attrs:   map[string]string{contract.AttrKeyVaultName: c.vault, contract.AttrCloudName: c.cloud, contract.AttrUsePodIdentity: "false"},
				secrets: map[string]string{contract.SecretClientID: spClient, contract.SecretClientSecret: spSecret}}.request(t, root)
			if _, err := p.NodePublishVolume(t.Context(), req); err != nil {
				t.Fatalf("publish: %v", err)
			}
			unpublishAtEnd(t, p, req)
			if got := readVolume(t, req.TargetPath)["DATABASE_LOGIN"]; got != "login-in-"+c.cloud {
				t.Fatalf("DATABASE_LOGIN = %q", got)
			}
			if n := w.emu.Requests(emulator.Key{Vault: c.vault, Object: "DatabaseLogin", Caller: spClient}); n != 1 {
				t.Fatalf("%d authenticated reads, want 1", n)
			}
		})
	}
}

// leftPad returns b left-padded with zeros to n bytes (JWK coordinates drop leading zeros).
func leftPad(b []byte, n int) []byte {
	if len(b) >= n {
		return b
	}
	return append(make([]byte, n-len(b)), b...)
}
