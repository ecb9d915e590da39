package cluster

import (
	"context"
	"encoding/base64"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kvinject/kvinject/internal/chartrender"
	"github.com/kvinject/kvinject/internal/testkit"
	"github.com/kvinject/kvinject/pkg/contract"
	"github.com/kvinject/kvinject/test/e2e/image"
	"github.com/kvinject/kvinject/test/e2e/manifests"
	"github.com/kvinject/kvinject/test/emulator"
)

// DriverName is the node plugin's CSI driver name: the product default.
const DriverName = contract.DefaultDriverName

// Release is the Helm release the cluster installs: its objects are named kvinject-*
// in namespace kvinject.
const (
	Release   = "kvinject"
	Namespace = "kvinject"
)

// Host-network ports of the node plugin (metrics, health), away from the chart's
// defaults so a plugin elsewhere on the machine does not collide.
const (
	CSIMetricsPort = 18095
	CSIHealthPort  = 18096
)

// e2eCADir is where the node plugin's pod finds the cluster CA (SSL_CERT_FILE).
const e2eCADir = "/etc/kvinject-e2e"

// startKvinject starts the Azure emulator (a host process: it stands in for Azure, and
// signs its HTTPS certificate with the cluster's CA) and installs kvinject the way a
// user does: everything from the release chart (charts/kvinject packaged as make
// release packages it, pinned to the images by digest, rendered as helm template
// renders it), with values for this cluster only. Nothing is written by hand or
// patched: the webhook runs on the pod network behind its Service, the node plugin as
// the chart's DaemonSet, and both reach the API server at the node's address; the
// plugin reaches "Azure" through the emulator's CONNECT proxy (HTTPS_PROXY,
// SSL_CERT_FILE), as behind a corporate proxy.
func (c *Cluster) startKvinject(ctx context.Context) error {
	emuDir := c.path("emulator")
	if err := c.start("emulator", filepath.Join(c.opts.Dir, "images", "bin", "e2e"), []string{"emulator",
		"--seed=" + filepath.Join(c.opts.RepoRoot, "test", "emulator", "testdata", "tutorial.yaml"),
		"--sa-public-key=" + c.path("pki", "sa.pub"),
		"--ca-dir=" + c.path("pki"),
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
	c.logf("Azure emulator: Key Vault and Entra ID on %s through the proxy %s, NMI on %s", ep.HTTPS, ep.Proxy, ep.NMI)

	// What a cluster has before kvinject: the workload-identity service account, the
	// release's namespace, and (without cert-manager here) the webhook's serving
	// certificate as a kubernetes.io/tls Secret.
	installs, _ := fs.Glob(manifests.FS, "install/*.yaml")
	for _, f := range installs {
		b, _ := manifests.FS.ReadFile(f)
		out := c.path(filepath.Base(f))
		if err := os.WriteFile(out, b, 0o644); err != nil {
			return err
		}
		if o, err := c.Kubectl(ctx, "apply", "-f", out); err != nil {
			return fmt.Errorf("apply %s: %w: %s", f, err, o)
		}
	}
	if err := c.createWebhookSecret(ctx); err != nil {
		return err
	}
	caPEM, err := os.ReadFile(c.path("pki", "ca.crt"))
	if err != nil {
		return err
	}
	values, err := c.ChartValues(ep, caPEM)
	if err != nil {
		return err
	}
	file, err := c.renderRelease(values, Release, Namespace, nil)
	if err != nil {
		return err
	}
	if o, err := c.Kubectl(ctx, "apply", "--server-side", "-f", file); err != nil {
		return fmt.Errorf("apply the chart: %w: %s", err, o)
	}
	c.logf("kvinject: release chart %s applied (%s)", filepath.Base(image.Chart(filepath.Join(c.opts.Dir, "images"))), file)
	if err := c.waitForCluster(ctx, "webhook", 90*time.Second, "app.kubernetes.io/component=webhook", c.webhookAnswers); err != nil {
		return err
	}
	return c.waitForCluster(ctx, "node plugin", 60*time.Second, "app.kubernetes.io/component=csi-node", c.driverRegistered)
}

// ChartValues are the values this cluster installs the chart with: the local images,
// the cluster's kubelet root, the serving certificate from a Secret, and what only a
// cluster without kube-proxy, DNS or Azure needs (the API server's address, the
// emulator's proxy and CA).
func (c *Cluster) ChartValues(ep emulator.Endpoints, caPEM []byte) (map[string]any, error) {
	// The release chart pins the images make images builds, by digest; here they are
	// imported, never pulled.
	img := func(string) map[string]any { return map[string]any{"pullPolicy": "Never"} }
	apiServer := []any{
		map[string]any{"name": "KUBERNETES_SERVICE_HOST", "value": NodeIP},
		map[string]any{"name": "KUBERNETES_SERVICE_PORT", "value": fmt.Sprint(APIServerPort)},
	}
	return map[string]any{
		"driverName": DriverName,
		"webhook": map[string]any{
			"replicas": 1,
			"image":    img(image.Webhook),
			"defaults": map[string]any{"tenantId": TenantID},
			"certificate": map[string]any{
				"source": "secret", "secretName": webhookSecret, "caBundle": base64.StdEncoding.EncodeToString(caPEM),
			},
			"env": apiServer,
		},
		"csi": map[string]any{
			"image":       img(image.CSINode),
			"kubeletRoot": c.KubeletRoot(),
			// The kubelet republishes every 10 s here (syncFrequency); a 5 s interval lets
			// the rotation test see a new version within a republish or two.
			"rotation":               map[string]any{"enabled": true, "pollInterval": "5s"},
			"nmiEndpoint":            "http://" + ep.NMI,
			"metricsPort":            CSIMetricsPort,
			"healthPort":             CSIHealthPort,
			"secretProviderClassCRD": map[string]any{"install": true},
			"env": append(apiServer,
				map[string]any{"name": "HTTPS_PROXY", "value": "http://" + ep.Proxy},
				// The API server is reached directly, as NO_PROXY must say behind any proxy.
				map[string]any{"name": "NO_PROXY", "value": NodeIP},
				map[string]any{"name": "SSL_CERT_FILE", "value": e2eCADir + "/ca.crt"}),
			"extraVolumes":      []any{map[string]any{"name": "e2e-ca", "hostPath": map[string]any{"path": c.path("pki"), "type": "Directory"}}},
			"extraVolumeMounts": []any{map[string]any{"name": "e2e-ca", "mountPath": e2eCADir, "readOnly": true}},
		},
	}, nil
}

// ImageDigest is the digest of a program's image (image.Webhook, image.CSINode) as
// built by the images step: the chart pins it.
func (c *Cluster) ImageDigest(ref string) (string, error) {
	d, err := image.Digest(filepath.Join(c.opts.Dir, "images"), ref)
	if err != nil {
		return "", fmt.Errorf("image %s: %w (the images step builds it)", ref, err)
	}
	return d, nil
}

// ReapplyChart renders the chart with ChartValues, its top-level keys replaced by
// overrides (nil: as installed), and applies it as the install did. It does not wait
// for the rollout.
func (c *Cluster) ReapplyChart(ctx context.Context, overrides map[string]any) error {
	values, err := c.installedValues()
	if err != nil {
		return err
	}
	for k, v := range overrides {
		values[k] = v
	}
	file, err := c.renderRelease(values, Release, Namespace, nil)
	if err != nil {
		return err
	}
	if o, err := c.Kubectl(ctx, "apply", "--server-side", "-f", file); err != nil {
		return fmt.Errorf("apply the chart: %w: %s", err, o)
	}
	return nil
}

// installedValues are the ChartValues the cluster was installed with, from the
// emulator's endpoints and the cluster CA on disk.
func (c *Cluster) installedValues() (map[string]any, error) {
	ep, err := emulator.LoadEndpoints(filepath.Join(c.path("emulator"), emulator.EndpointsFileName))
	if err != nil {
		return nil, err
	}
	caPEM, err := os.ReadFile(c.path("pki", "ca.crt"))
	if err != nil {
		return nil, err
	}
	return c.ChartValues(ep, caPEM)
}

// renderRelease renders the chart with values as release in namespace, keeping only
// the templates keep accepts (nil: all), into one file named after the release.
func (c *Cluster) renderRelease(values map[string]any, release, namespace string, keep func(source string) bool) (string, error) {
	docs, err := chartrender.Render(chartrender.Options{
		ChartDir: image.Chart(filepath.Join(c.opts.Dir, "images")), ReleaseName: release, Namespace: namespace,
		Values: values,
	})
	if err != nil {
		return "", err
	}
	var out []string
	for _, d := range docs {
		if keep == nil || keep(d.Source) {
			out = append(out, "# Source: "+d.Source+"\n"+d.YAML)
		}
	}
	file := c.path(release + "-chart.yaml")
	return file, os.WriteFile(file, []byte(strings.Join(out, "\n---\n")), 0o644)
}

// SecretsStoreStandIn is the Secrets Store CSI driver's name, under which
// InstallSecretsStoreStandIn registers a second node plugin.
const SecretsStoreStandIn = contract.SecretsStoreDriverName

// InstallSecretsStoreStandIn renders the chart's node plugin alone (its DaemonSet,
// CSIDriver, ServiceAccount and RBAC) as a second release, release in namespace,
// registered as the Secrets Store CSI driver (secrets-store.csi.k8s.io) on its own
// ports, and applies it. It stands in for the Secrets Store CSI driver and its Azure
// provider, which cannot be built here (their modules are not served by the module
// proxy): kvinject's plugin serves SecretProviderClass volumes as that provider does.
// It returns the applied file, for kubectl delete -f.
func (c *Cluster) InstallSecretsStoreStandIn(ctx context.Context, release, namespace string) (string, error) {
	values, err := c.installedValues()
	if err != nil {
		return "", err
	}
	values["driverName"] = SecretsStoreStandIn
	csi := values["csi"].(map[string]any)
	csi["metricsPort"], csi["healthPort"] = CSIMetricsPort+10, CSIHealthPort+10
	csi["secretProviderClassCRD"] = map[string]any{"install": false} // the first release's
	file, err := c.renderRelease(values, release, namespace, func(source string) bool { return strings.HasPrefix(source, "templates/csi/") })
	if err != nil {
		return "", err
	}
	if _, err := c.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return "", err
	}
	if o, err := c.Kubectl(ctx, "apply", "--server-side", "-f", file); err != nil {
		return "", fmt.Errorf("apply the stand-in: %w: %s", err, o)
	}
	return file, c.waitForCluster(ctx, "the Secrets Store stand-in", 60*time.Second, "app.kubernetes.io/component=csi-node",
		func(ctx context.Context) error { return c.registered(ctx, SecretsStoreStandIn) })
}

// webhookSecret is the kubernetes.io/tls Secret the chart's webhook serves.
const webhookSecret = "kvinject-webhook-tls"

func (c *Cluster) createWebhookSecret(ctx context.Context) error {
	crt, err := os.ReadFile(c.path("pki", "webhook.crt"))
	if err != nil {
		return err
	}
	key, err := os.ReadFile(c.path("pki", "webhook.key"))
	if err != nil {
		return err
	}
	if _, err := c.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: Namespace}}, metav1.CreateOptions{}); err != nil {
		return err
	}
	_, err = c.Client.CoreV1().Secrets(Namespace).Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: webhookSecret, Namespace: Namespace},
		Type:       corev1.SecretTypeTLS,
		Data:       map[string][]byte{corev1.TLSCertKey: crt, corev1.TLSPrivateKeyKey: key},
	}, metav1.CreateOptions{})
	return err
}

// webhookAnswers: the API server calls the webhook through its Service: a dry-run of
// the tutorial's annotated pod comes back injected.
func (c *Cluster) webhookAnswers(ctx context.Context) error {
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "webhook-probe", Namespace: "default", Annotations: map[string]string{
			contract.AnnotationVault: Vault, contract.AnnotationIdentity: "azure-kv",
			contract.AnnotationSecrets: "DatabaseLogin=DATABASE_LOGIN",
		}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: image.Busybox}}},
	}
	got, err := c.Client.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
	if err != nil {
		return err
	}
	if got.Annotations[contract.AnnotationStatus] != contract.StatusInjected {
		return fmt.Errorf("the dry-run pod was not injected")
	}
	return nil
}

// waitForCluster waits for check, reporting the pods of selector when it times out.
func (c *Cluster) waitForCluster(ctx context.Context, what string, timeout time.Duration, selector string, check func(context.Context) error) error {
	err := testkit.Poll(ctx, 200*time.Millisecond, timeout, what, check)
	if err != nil {
		pods, _ := c.Kubectl(context.Background(), "-n", Namespace, "describe", "pods", "-l", selector)
		logs, _ := c.Kubectl(context.Background(), "-n", Namespace, "logs", "-l", selector, "--tail=30")
		return fmt.Errorf("%w\n%s\n%s", err, pods, logs)
	}
	return nil
}

// driverRegistered reports whether the node plugin has registered with the kubelet.
func (c *Cluster) driverRegistered(ctx context.Context) error {
	return c.registered(ctx, DriverName)
}

// registered reports whether the CSI driver name has registered with the kubelet.
func (c *Cluster) registered(ctx context.Context, name string) error {
	n, err := c.Client.StorageV1().CSINodes().Get(ctx, NodeName, metav1.GetOptions{})
	if err != nil {
		return err
	}
	for _, d := range n.Spec.Drivers {
		if d.Name == name {
			return nil
		}
	}
	return fmt.Errorf("driver %s not registered with the kubelet yet", name)
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
