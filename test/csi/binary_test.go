package csi

import (
	"bytes"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	csiapi "github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/kvinject/kvinject/internal/testkit"
	"github.com/kvinject/kvinject/pkg/contract"
	"github.com/kvinject/kvinject/test/emulator"
	"github.com/kvinject/kvinject/test/framework"
)

// lockedBuffer collects a process's output from two pipes.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestBinaryEndToEnd drives the csi-node binary over its socket against the emulator,
// reached through its CONNECT proxy (HTTPS_PROXY) and trusting its CA (SSL_CERT_FILE),
// as behind a corporate proxy, at the highest log verbosity: publishes with
// every identity mode and with failures, a restart in the middle (mounts survive and
// are refreshed and unpublished by the new process), and then proves that no token,
// client secret or secret value appears in any log line, returned error or metric.
func TestBinaryEndToEnd(t *testing.T) {
	testkit.RequireRoot(t)
	const rotation = time.Second // the binary's clock is real: a short interval
	w := startWorld(t)
	bin := testkit.Binary(t, "./cmd/csi-node")
	root := t.TempDir()
	socket := filepath.Join(root, "plugins", contract.DefaultDriverName, "csi.sock")
	metricsAddr := testkit.FreeAddr(t)
	args := []string{"--kubelet-root", root, "--node-id", "node-1", "--register=false", "--metrics-bind-address", metricsAddr,
		"--health-probe-bind-address", "0", "--nmi-endpoint", "http://" + w.emu.NMIAddr(), "--log-level", "10",
		"--rotation-poll-interval", rotation.String()}
	var logs lockedBuffer
	cmd := runBinary(t, bin, socket, &logs, w.env(), args...)
	node := nodeClient(t, socket)
	ctx := t.Context()

	tokens, saToken := w.serviceAccountTokens(t)
	tutorial := []contract.Object{{Name: "DatabaseLogin", Alias: "DATABASE_LOGIN"}, {Name: "DatabasePassword", Alias: "DATABASE_PASSWORD"}}
	sp := func(id, secret string) map[string]string {
		return map[string]string{contract.SecretClientID: id, contract.SecretClientSecret: secret}
	}
	good := []volume{
		{name: "podid", objects: tutorial},
		{name: "wi", objects: tutorial, attrs: map[string]string{contract.AttrUsePodIdentity: "false", contract.AttrClientID: wiClient, contract.ContextTokens: tokens}},
		{name: "wisecrets", objects: tutorial, attrs: map[string]string{contract.AttrUsePodIdentity: "false", contract.AttrClientID: wiClient},
			secrets: map[string]string{contract.ContextTokens: tokens}},
		{name: "sp", objects: tutorial, attrs: map[string]string{contract.AttrUsePodIdentity: "false"}, secrets: sp(spClient, spSecret)},
	}
	bad := []volume{
		{name: "forbidden", objects: tutorial, attrs: map[string]string{contract.AttrUsePodIdentity: "false", contract.ContextTokens: tokens}, secrets: sp(outsider, outsiderKey)},
		{name: "badsecret", objects: tutorial, attrs: map[string]string{contract.AttrUsePodIdentity: "false"}, secrets: sp(spClient, "not-the-secret-"+spSecret)},
		{name: "notfound", objects: []contract.Object{{Name: "Missing"}}, attrs: map[string]string{contract.AttrUsePodIdentity: "false", contract.AttrClientID: wiClient, contract.ContextTokens: tokens}},
		{name: "wrongtenant", objects: tutorial, attrs: map[string]string{contract.AttrUsePodIdentity: "false", contract.AttrTenantID: otherTenant, contract.AttrClientID: wiClient, contract.ContextTokens: tokens}},
		{name: "disabled", objects: []contract.Object{{Name: "disabled"}}, attrs: map[string]string{contract.AttrUsePodIdentity: "false", contract.AttrClientID: wiClient, contract.ContextTokens: tokens}},
		{name: "badtokens", objects: tutorial, attrs: map[string]string{contract.AttrUsePodIdentity: "false", contract.AttrClientID: wiClient, contract.ContextTokens: `{"api://AzureADTokenExchange":` + saToken}},
	}
	var returned []string
	var reqs []*csiapi.NodePublishVolumeRequest
	var metricsText []byte
	phase := func(name string, f func(t *testing.T)) {
		if !t.Run(name, f) {
			t.FailNow()
		}
	}
	phase("publish with every identity mode", func(t *testing.T) {
		for _, v := range good {
			req := v.request(t, root)
			if _, err := node.NodePublishVolume(ctx, req); err != nil {
				t.Fatalf("publish %s: %v", v.name, err)
			}
			if got := readVolume(t, req.TargetPath); got["DATABASE_PASSWORD"] != "MyP@ssword123456" {
				t.Fatalf("%s: files %v", v.name, got)
			}
			reqs = append(reqs, req)
		}
	})
	phase("failures", func(t *testing.T) {
		for _, v := range bad {
			_, err := node.NodePublishVolume(ctx, v.request(t, root))
			if err == nil {
				t.Fatalf("publish %s succeeded", v.name)
			}
			returned = append(returned, err.Error())
		}
	})
	phase("mounts survive the plugin's exit", func(t *testing.T) {
		if err := cmd.Process.Signal(os.Interrupt); err != nil {
			t.Fatal(err)
		}
		if err := cmd.Wait(); err != nil {
			t.Fatalf("csi-node exit: %v", err)
		}
		for _, req := range reqs {
			if got := readVolume(t, req.TargetPath); got["DATABASE_LOGIN"] != "MyDBLoginName" {
				t.Fatalf("after the plugin stopped %s shows %v", req.TargetPath, got)
			}
		}
	})
	// Restarted for the rest of the test.
	runBinary(t, bin, socket, &logs, w.env(), args...)
	node = nodeClient(t, socket)
	phase("rotation after the restart", func(t *testing.T) {
		if _, err := w.emu.SetSecret(vault, "DatabasePassword", "rotated-after-restart", emulator.SecretOptions{}); err != nil {
			t.Fatal(err)
		}
		for _, req := range reqs {
			if _, err := node.NodePublishVolume(ctx, req); err != nil {
				t.Fatalf("republish after restart: %v", err)
			}
			if got := readVolume(t, req.TargetPath); got["DATABASE_PASSWORD"] != "rotated-after-restart" {
				t.Fatalf("after restart and rotation %s shows %v", req.TargetPath, got)
			}
		}
	})
	phase("a failed refresh keeps the files", func(t *testing.T) {
		if err := w.emu.SetEnabled(vault, emulator.ObjectSecret, "DatabasePassword", "", false); err != nil {
			t.Fatal(err)
		}
		time.Sleep(rotation + rotation/5) // the refresh is due (interval and jitter)
		if _, err := node.NodePublishVolume(ctx, reqs[0]); err != nil {
			t.Fatalf("failed refresh: %v", err)
		}
		if got := readVolume(t, reqs[0].TargetPath); got["DATABASE_PASSWORD"] != "rotated-after-restart" {
			t.Fatalf("after a failed refresh: %v", got)
		}
	})
	phase("unpublish, twice", func(t *testing.T) {
		for _, req := range reqs {
			for i := 0; i < 2; i++ {
				if _, err := node.NodeUnpublishVolume(ctx, &csiapi.NodeUnpublishVolumeRequest{VolumeId: req.VolumeId, TargetPath: req.TargetPath}); err != nil {
					t.Fatalf("unpublish: %v", err)
				}
			}
			if _, err := os.Lstat(req.TargetPath); !os.IsNotExist(err) {
				t.Fatalf("%s still exists after unpublish", req.TargetPath)
			}
		}
	})
	phase("metrics", func(t *testing.T) {
		resp, err := http.Get("http://" + metricsAddr + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		metricsText, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
		for _, want := range []string{
			`kvinject_csi_node_publish_total{outcome="refreshed"} 4`,
			`kvinject_csi_node_publish_total{outcome="refresh_failed"} 1`,
			`kvinject_keyvault_requests_total{object_type="secrets",status="200"}`,
			`kvinject_keyvault_requests_total{object_type="secrets",status="403"}`,
			`kvinject_keyvault_requests_total{object_type="secrets",status="401"}`,
			`kvinject_keyvault_request_duration_seconds_bucket{object_type="secrets"`,
			`kvinject_csi_node_unpublish_total{outcome="unpublished"} 8`,
		} {
			if !strings.Contains(string(metricsText), want) {
				t.Errorf("metrics lack %s", want)
			}
		}
		// Every plugin series the chart's alerts and dashboard use is in the real output.
		used, err := framework.ChartMetrics()
		if err != nil {
			t.Fatal(err)
		}
		missing, err := framework.MissingMetrics(metricsText, used, "kvinject_csi_", "kvinject_keyvault_", "process_")
		if err != nil {
			t.Fatal(err)
		}
		if len(missing) > 0 {
			t.Errorf("the plugin's /metrics lacks:\n%s", strings.Join(missing, "\n"))
		}
	})
	phase("nothing sensitive in logs, errors or metrics", func(t *testing.T) {
		jwtParts := strings.Split(saToken, ".")
		sensitive := map[string]string{
			"service-account token": saToken, "token payload": jwtParts[1], "token signature": jwtParts[2],
			"client secret": spSecret, "outsider secret": outsiderKey, "wrong client secret": "not-the-secret-",
			"secret value login": "MyDBLoginName", "secret value password": "MyP@ssword123456", "rotated value": "rotated-after-restart",
			"disabled value": "never-served-value",
			// Every value of a nodePublishSecretRef Secret, its client ID too: a Secret with
			// its keys swapped would put the client secret there.
			"service principal's client ID": spClient, "outsider's client ID": outsider,
		}
		logText := logs.String()
		if !strings.Contains(logText, "Published volume") || !strings.Contains(logText, "CSI call") {
			t.Fatalf("the logs were not captured at verbosity 10:\n%s", logText)
		}
		for what, s := range sensitive {
			if strings.Contains(logText, s) {
				t.Errorf("the logs contain the %s", what)
			}
			if strings.Contains(string(metricsText), s) {
				t.Errorf("the metrics contain the %s", what)
			}
			for _, e := range returned {
				if strings.Contains(e, s) {
					t.Errorf("a returned error contains the %s: %s", what, e)
				}
			}
		}
		if t.Failed() {
			t.Logf("logs:\n%s\nerrors:\n%s", logText, strings.Join(returned, "\n"))
		}
		// Kubernetes access tokens of Entra ID (JWTs) never appear either.
		if strings.Contains(logText, "eyJ") {
			t.Errorf("the logs contain something that looks like a JWT")
		}
		t.Logf("checked %d log lines, %d returned errors and %d bytes of metrics", strings.Count(logText, "\n"), len(returned), len(metricsText))
	})
}

func nodeClient(t testing.TB, socket string) csiapi.NodeClient {
	t.Helper()
	conn, err := grpc.NewClient("unix://"+socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return csiapi.NewNodeClient(conn)
}
