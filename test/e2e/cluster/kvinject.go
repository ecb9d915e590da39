package cluster

import (
	"context"
	"crypto/x509"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kvinject/kvinject/test/e2e/manifests"
	"github.com/kvinject/kvinject/test/emulator"
	"github.com/kvinject/kvinject/test/framework"
)

// DriverName is the node plugin's CSI driver name (the product default).
const DriverName = "secrets-store.kvinject.io"

// startKvinject starts the Azure emulator (a host process: it stands in for Azure),
// installs the cluster objects (the CSIDriver, the SecretProviderClass CRD, the
// workload-identity service account) and then kvinject itself: by default as a
// Deployment and a DaemonSet from the local images (installInCluster); with
// Options.HostProcesses as host processes started from the same binaries with the same
// flags, the shipped webhook registration pointed at https://127.0.0.1.
func (c *Cluster) startKvinject(ctx context.Context) error {
	bin := func(n string) string { return filepath.Join(c.opts.Dir, "images", "bin", n) }
	emuDir := c.path("emulator")

	// Azure emulator.
	if err := c.start("emulator", bin("e2e"), []string{"emulator",
		"--seed=" + filepath.Join(c.opts.RepoRoot, "test", "emulator", "testdata", "tutorial.yaml"),
		"--sa-public-key=" + c.path("pki", "sa.pub"),
		"--state-dir=" + emuDir,
	}, nil); err != nil {
		return err
	}
	var ep emulator.Endpoints
	if err := c.waitFor(ctx, "emulator", 30*time.Second, func(context.Context) error {
		b, err := os.ReadFile(filepath.Join(emuDir, "admin-address"))
		if err != nil {
			return err
		}
		c.EmulatorAdmin = strings.TrimSpace(string(b))
		ep, err = emulator.LoadEndpoints(filepath.Join(emuDir, emulator.EndpointsFileName))
		return err
	}); err != nil {
		return err
	}
	c.logf("Azure emulator: Key Vault and Entra ID on %s, NMI on %s", ep.HTTPS, ep.NMI)

	// Cluster objects: CSIDriver, workload identity, the SecretProviderClass CRD.
	chart := !c.opts.HostProcesses && !c.opts.HandwrittenNodePlugin
	var files []string
	if !chart {
		files = append(files, filepath.Join(c.opts.RepoRoot, "test", "csi", "testdata", "crds", "secretproviderclass.yaml"))
	}
	installs, _ := fs.Glob(manifests.FS, "install/*.yaml")
	for _, f := range installs {
		if chart && strings.Contains(f, "csidriver") {
			continue // the chart's CSIDriver
		}
		b, _ := manifests.FS.ReadFile(f)
		out := c.path(filepath.Base(f))
		if err := os.WriteFile(out, b, 0o644); err != nil {
			return err
		}
		files = append(files, out)
	}
	for _, f := range files {
		if out, err := c.Kubectl(ctx, "apply", "-f", f); err != nil {
			return fmt.Errorf("apply %s: %w: %s", f, err, out)
		}
	}

	if !c.opts.HostProcesses {
		if err := c.installInCluster(ctx, ep, chart); err != nil {
			return err
		}
		return c.waitCRD(ctx)
	}
	if err := c.waitCRD(ctx); err != nil {
		return err
	}
	// Webhook.
	if err := c.start("webhook", bin("webhook"), []string{
		"--host=127.0.0.1", fmt.Sprintf("--port=%d", WebhookPort),
		"--cert-dir=" + c.path("webhook-tls"),
		"--kubeconfig=" + c.Kubeconfig,
		"--metrics-bind-address=0", "--health-probe-bind-address=0",
		"--default-tenant-id=" + TenantID,
		"--driver-name=" + DriverName,
	}, nil); err != nil {
		return err
	}
	caPEM, err := os.ReadFile(c.path("pki", "ca.crt"))
	if err != nil {
		return err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	if err := c.waitFor(ctx, "webhook", 30*time.Second, func(context.Context) error {
		return tlsReachable(fmt.Sprintf("127.0.0.1:%d", WebhookPort), pool, "127.0.0.1")
	}); err != nil {
		return err
	}
	mwc, err := framework.ShippedMutatingWebhook()
	if err != nil {
		return err
	}
	framework.PointAt(mwc, fmt.Sprintf("https://127.0.0.1:%d", WebhookPort), caPEM)
	if _, err := c.Client.AdmissionregistrationV1().MutatingWebhookConfigurations().Create(ctx, mwc, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("install the webhook registration: %w", err)
	}

	// Node plugin, registering itself with the kubelet.
	if err := c.start("csi-node", bin("csi-node"), []string{
		"--node-id=" + NodeName,
		"--driver-name=" + DriverName,
		"--kubelet-root=" + c.KubeletRoot(),
		"--kubeconfig=" + c.Kubeconfig,
		"--metrics-address=",
		"--nmi-endpoint=http://" + ep.NMI,
		"--azure-dial-address=" + ep.HTTPS,
		"--azure-ca-file=" + ep.CAFile,
		"--v=2",
	}, nil); err != nil {
		return err
	}
	return c.waitFor(ctx, "csi-node", 30*time.Second, c.driverRegistered)
}

func (c *Cluster) waitCRD(ctx context.Context) error {
	if out, err := c.Kubectl(ctx, "wait", "--for=condition=established", "--timeout=30s", "crd/secretproviderclasses.secrets-store.csi.x-k8s.io"); err != nil {
		return fmt.Errorf("%w: %s", err, out)
	}
	return nil
}

// Kubectl runs the cluster's kubectl with the admin kubeconfig and returns its
// standard output; on failure the error carries its standard error.
func (c *Cluster) Kubectl(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, c.KubectlPath(), append([]string{"--kubeconfig=" + c.Kubeconfig}, args...)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return string(out), fmt.Errorf("kubectl %s: %w: %s", strings.Join(args, " "), err, stderr.String())
	}
	return string(out), nil
}

// KubectlPath is the kubectl binary of the tools folder.
func (c *Cluster) KubectlPath() string {
	if c.opts.ToolsDir != "" {
		return c.tool("kubectl")
	}
	b, _ := os.ReadFile(c.path("tools-dir"))
	return filepath.Join(strings.TrimSpace(string(b)), "kubectl")
}
