package csi

import (
	"context"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	csiapi "github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/kubernetes-csi/csi-test/v5/pkg/sanity"
	"github.com/onsi/ginkgo/v2"
	"github.com/onsi/gomega"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	registerapi "k8s.io/kubelet/pkg/apis/pluginregistration/v1"

	"github.com/kvinject/kvinject/internal/testkit"
	"github.com/kvinject/kvinject/pkg/contract"
)

// sanitySkips are the sanity specs skipped, with the reason (reported in the closing note).
var sanitySkips = map[string]string{
	// It needs CreateVolume (a controller service), and publishes at <TargetPath>/target
	// without pod information, which this driver refuses by design (the target must be
	// the kubelet's path for the requesting pod, CVE-2020-8568). Publish, check and
	// unpublish-removes-target are covered by TestNodePublishRepublishUnpublish and
	// TestBinaryPublishRestartUnpublish.
	"should remove target path": "needs a controller service (CreateVolume) and a target path outside the kubelet's pod layout",
}

// runBinary starts csi-node with args and the environment env added to this process's,
// and waits for its CSI socket.
func runBinary(t testing.TB, bin, socket string, logs io.Writer, env []string, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Signal(os.Interrupt)
			done := make(chan struct{})
			go func() { _ = cmd.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				_ = cmd.Process.Kill()
			}
		}
	})
	// Serving, not only listening: the socket is bound before the startup sweep, and
	// calls are answered after it.
	conn, err := grpc.NewClient("unix://"+socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	testkit.Eventually(t, 30*time.Second, "csi-node answers on "+socket, func(ctx context.Context) error {
		_, err := csiapi.NewIdentityClient(conn).Probe(ctx, &csiapi.ProbeRequest{})
		return err
	})
	return cmd
}

// TestSanity runs csi-test's sanity suite against the csi-node binary over its socket,
// and checks its registration socket, /healthz and /metrics on the way.
func TestSanity(t *testing.T) {
	bin := testkit.Binary(t, "./cmd/csi-node")
	root := t.TempDir()
	socket := filepath.Join(root, "plugins", contract.DefaultDriverName, "csi.sock")
	metrics, health := testkit.FreeAddr(t), testkit.FreeAddr(t)
	runBinary(t, bin, socket, os.Stderr, nil, "--kubelet-root", root, "--node-id", "sanity-node", "--metrics-bind-address", metrics, "--health-probe-bind-address", health, "--log-level", "5")

	t.Run("registration", func(t *testing.T) {
		conn, err := grpc.NewClient("unix://"+filepath.Join(root, "plugins_registry", contract.DefaultDriverName+"-reg.sock"), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		info, err := registerapi.NewRegistrationClient(conn).GetInfo(t.Context(), &registerapi.InfoRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if info.Type != registerapi.CSIPlugin || info.Name != contract.DefaultDriverName || info.Endpoint != socket || strings.Join(info.SupportedVersions, ",") != "1.0.0" {
			t.Fatalf("GetInfo = %v", info)
		}
		if _, err := registerapi.NewRegistrationClient(conn).NotifyRegistrationStatus(t.Context(), &registerapi.RegistrationStatus{PluginRegistered: true}); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("health probes and metrics", func(t *testing.T) {
		for url, want := range map[string]string{
			"http://" + health + "/healthz": "ok", "http://" + health + "/readyz": "ok", "http://" + metrics + "/metrics": "go_goroutines",
		} {
			resp, err := http.Get(url)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || !strings.Contains(string(b), want) {
				t.Fatalf("%s: %d %q", url, resp.StatusCode, b)
			}
		}
	})

	cfg := sanity.NewTestConfig()
	cfg.Address = "unix://" + socket
	cfg.TargetPath = filepath.Join(root, "pods", "sanity-pod", "volumes", "kubernetes.io~csi", "sanity")
	cfg.StagingPath = filepath.Join(root, "staging")
	if err := os.MkdirAll(filepath.Dir(cfg.TargetPath), 0o750); err != nil {
		t.Fatal(err)
	}
	sc := sanity.GinkgoTest(&cfg)
	gomega.RegisterFailHandler(ginkgo.Fail)
	suite, reporter := ginkgo.GinkgoConfiguration()
	// The plugin is node-only: the Controller, GroupController and SnapshotMetadata
	// suites do not apply (the plugin advertises no CONTROLLER_SERVICE).
	suite.FocusStrings = []string{"Node Service", "Identity Service"}
	for spec := range sanitySkips {
		suite.SkipStrings = append(suite.SkipStrings, spec)
	}
	suite.Timeout = 5 * time.Minute
	ginkgo.RunSpecs(t, "kvinject CSI sanity", suite, reporter)
	sc.Finalize()
}
