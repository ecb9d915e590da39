package cluster

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/kvinject/kvinject/test/chartrender"
	"github.com/kvinject/kvinject/test/e2e/image"
	"github.com/kvinject/kvinject/test/emulator"
)

// CSIMetricsPort is the node plugin's metrics and health port (host network) when
// installed from the chart, away from the chart's default 8095.
const CSIMetricsPort = 18095

// installNodePluginFromChart installs the node plugin from the product's Helm chart
// (charts/kvinject rendered through the Helm SDK, as `helm template` does): its
// ServiceAccount, RBAC, CSIDriver (rotation on), SecretProviderClass CRD and DaemonSet,
// with values for this cluster (local image, kubelet root, NMI, the emulator flags).
// Two changes are patched into the rendered DaemonSet, both for this cluster only: the
// API server address for the in-cluster client (no kube-proxy routes the
// kubernetes Service here) and a hostPath with the emulator's CA.
func (c *Cluster) installNodePluginFromChart(ctx context.Context, ep emulator.Endpoints) error {
	values := map[string]any{
		"driverName": DriverName,
		"csi": map[string]any{
			"image":       map[string]any{"repository": strings.TrimSuffix(image.CSINode, ":e2e"), "tag": "e2e", "pullPolicy": "Never"},
			"kubeletRoot": c.KubeletRoot(),
			"rotation":    map[string]any{"enabled": true},
			"nmiEndpoint": "http://" + ep.NMI,
			"metricsPort": CSIMetricsPort,
			"extraArgs":   []any{"--azure-dial-address=" + ep.HTTPS, "--azure-ca-file=" + ep.CAFile},
		},
	}
	docs, err := chartrender.Render(chartrender.Options{ChartDir: filepath.Join(c.opts.RepoRoot, chartrender.ChartDir), Values: values})
	if err != nil {
		return err
	}
	var out []string
	for _, d := range docs {
		if !strings.HasPrefix(d.Source, "templates/csi/") {
			continue
		}
		y := d.YAML
		if strings.Contains(y, "kind: DaemonSet") {
			if y, err = c.patchDaemonSet(y, ep); err != nil {
				return fmt.Errorf("%s: %w", d.Source, err)
			}
		}
		out = append(out, "# Source: "+d.Source+"\n"+y)
	}
	if len(out) == 0 {
		return fmt.Errorf("the chart rendered no templates/csi objects")
	}
	file := c.path("kvinject-csi-chart.yaml")
	if err := os.WriteFile(file, []byte(strings.Join(out, "\n---\n")), 0o644); err != nil {
		return err
	}
	if o, err := c.Kubectl(ctx, "apply", "--server-side", "-f", file); err != nil {
		return fmt.Errorf("%w: %s", err, o)
	}
	c.logf("node plugin: chart charts/kvinject (templates/csi), %s", file)
	return nil
}

func (c *Cluster) patchDaemonSet(doc string, ep emulator.Endpoints) (string, error) {
	var ds appsv1.DaemonSet
	if err := yaml.UnmarshalStrict([]byte(doc), &ds); err != nil {
		return "", err
	}
	spec := &ds.Spec.Template.Spec
	ctr := &spec.Containers[0]
	ctr.Env = append(ctr.Env,
		corev1.EnvVar{Name: "KUBERNETES_SERVICE_HOST", Value: "127.0.0.1"},
		corev1.EnvVar{Name: "KUBERNETES_SERVICE_PORT", Value: fmt.Sprint(APIServerPort)})
	dir := filepath.Dir(ep.CAFile)
	ctr.VolumeMounts = append(ctr.VolumeMounts, corev1.VolumeMount{Name: "e2e-emulator", MountPath: dir, ReadOnly: true})
	hp := corev1.HostPathDirectory
	spec.Volumes = append(spec.Volumes, corev1.Volume{Name: "e2e-emulator", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: dir, Type: &hp}}})
	b, err := yaml.Marshal(&ds)
	return string(b), err
}
