package install

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/yaml"

	"github.com/kvinject/kvinject/internal/chartrender"
	"github.com/kvinject/kvinject/internal/testkit"
	"github.com/kvinject/kvinject/pkg/csi"
	"github.com/kvinject/kvinject/pkg/webhook"
	"github.com/kvinject/kvinject/test/framework"
)

// checkMonitoring checks the metrics Services, ServiceMonitors, PrometheusRule and
// dashboard of a rendering, when rendered: each metrics Service selects its program's
// pods and targets the port the program serves /metrics on; each ServiceMonitor
// selects exactly its Service; the rule and dashboard are the chart's files.
func checkMonitoring(t *testing.T, o *objects, wcfg *webhook.Options, ccfg *csi.Options) {
	t.Helper()
	dep, ds := one(t, "Deployments", o.deployments), one(t, "DaemonSets", o.daemonSets)
	type program struct {
		name      string
		podLabels map[string]string
		container corev1.Container
		bind      string
	}
	programs := []program{
		{dep.Name, dep.Spec.Template.Labels, dep.Spec.Template.Spec.Containers[0], wcfg.MetricsBindAddress},
		{ds.Name, ds.Spec.Template.Labels, ds.Spec.Template.Spec.Containers[0], ccfg.MetricsBindAddress},
	}
	var metricsServices []*corev1.Service
	for _, s := range o.services {
		if strings.HasSuffix(s.Name, "-metrics") {
			metricsServices = append(metricsServices, s)
		}
	}
	for _, p := range programs {
		i := slices.IndexFunc(metricsServices, func(s *corev1.Service) bool { return s.Name == p.name+"-metrics" })
		if i < 0 {
			continue
		}
		svc := metricsServices[i]
		if !labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(p.podLabels)) {
			t.Errorf("Service %s selects %v, which %s's pods (%v) lack", svc.Name, svc.Spec.Selector, p.name, p.podLabels)
		}
		for _, other := range programs {
			if other.name != p.name && labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(other.podLabels)) {
				t.Errorf("Service %s also selects %s's pods", svc.Name, other.name)
			}
		}
		if len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].Name != "metrics" {
			t.Fatalf("Service %s ports %+v, want one named metrics", svc.Name, svc.Spec.Ports)
		}
		_, port, _ := strings.Cut(p.bind, ":")
		if got := containerPort(t, p.container, svc.Spec.Ports[0].TargetPort.StrVal); fmt.Sprint(got) != port {
			t.Errorf("Service %s targets port %d; %s serves /metrics on %s", svc.Name, got, p.name, p.bind)
		}
		// The ServiceMonitor, if any, selects this Service and nothing else of ours.
		for _, sm := range o.serviceMonitors {
			if sm.Name != p.name {
				continue
			}
			sel := labels.SelectorFromSet(sm.Spec.Selector.MatchLabels)
			var selected []string
			for _, s := range o.services {
				if sel.Matches(labels.Set(s.Labels)) {
					selected = append(selected, s.Name)
				}
			}
			if !cmp.Equal(selected, []string{svc.Name}) || !cmp.Equal(sm.Spec.NamespaceSelector.MatchNames, []string{svc.Namespace}) {
				t.Errorf("ServiceMonitor %s selects %v in %v, want [%s] in [%s]", sm.Name, selected, sm.Spec.NamespaceSelector.MatchNames, svc.Name, svc.Namespace)
			}
			if len(sm.Spec.Endpoints) != 1 || sm.Spec.Endpoints[0].Port != "metrics" || sm.Spec.Endpoints[0].Path != "/metrics" {
				t.Errorf("ServiceMonitor %s endpoints %+v", sm.Name, sm.Spec.Endpoints)
			}
		}
	}
	if len(o.serviceMonitors) > 0 && len(o.serviceMonitors) != len(programs) {
		t.Errorf("%d ServiceMonitors, want one per program", len(o.serviceMonitors))
	}
	for _, r := range o.prometheusRules {
		checkRule(t, r)
	}
}

// checkRule: the PrometheusRule's groups are the chart's rule file, which Prometheus's
// rulefmt accepts, with the alerts issue #13 asks for.
func checkRule(t *testing.T, r *monitoringv1.PrometheusRule) {
	t.Helper()
	groups, err := framework.ChartRules()
	if err != nil {
		t.Fatal(err)
	}
	var want, got []string
	for _, g := range groups.Groups {
		for _, rule := range g.Rules {
			want = append(want, g.Name+"/"+rule.Alert+": "+rule.Expr+" for "+rule.For.String())
		}
	}
	for _, g := range r.Spec.Groups {
		for _, rule := range g.Rules {
			f := "0s"
			if rule.For != nil {
				f = string(*rule.For)
			}
			got = append(got, g.Name+"/"+rule.Alert+": "+rule.Expr.String()+" for "+f)
		}
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("PrometheusRule %s differs from %s (-file +rendered):\n%s", r.Name, framework.RulesFile, diff)
	}
	var alerts []string
	for _, g := range r.Spec.Groups {
		for _, rule := range g.Rules {
			alerts = append(alerts, rule.Alert)
		}
	}
	for _, a := range []string{"KvinjectPublishFailing", "KvinjectKeyVaultThrottled", "KvinjectVolumeRefreshFailing", "KvinjectWebhookDenials", "KvinjectWebhookSlow", "KvinjectWebhookErrors"} {
		if !slices.Contains(alerts, a) {
			t.Errorf("PrometheusRule lacks the alert %s", a)
		}
	}
}

// TestMonitoring renders the chart with every monitoring object on, decodes them into
// their typed APIs (prometheus-operator's ServiceMonitor and PrometheusRule), and
// checks the dashboard ConfigMap.
func TestMonitoring(t *testing.T) {
	docs := render(t, chartrender.Options{Values: map[string]any{"metrics": map[string]any{
		"serviceMonitor": map[string]any{"enabled": true, "labels": map[string]any{"release": "prometheus"}},
		"prometheusRule": map[string]any{"enabled": true},
		"dashboard":      map[string]any{"enabled": true, "namespace": "monitoring"},
	}}})
	o := decode(t, docs)
	if len(o.serviceMonitors) != 2 || len(o.prometheusRules) != 1 {
		t.Fatalf("rendered %d ServiceMonitors and %d PrometheusRules, want 2 and 1", len(o.serviceMonitors), len(o.prometheusRules))
	}
	for _, sm := range o.serviceMonitors {
		if sm.Labels["release"] != "prometheus" {
			t.Errorf("ServiceMonitor %s labels %v lack metrics.serviceMonitor.labels", sm.Name, sm.Labels)
		}
	}
	// The dashboard lives where Grafana's sidecar looks, outside the release namespace.
	var dash *corev1.ConfigMap
	var rest []chartrender.Document
	for _, d := range docs {
		if strings.HasSuffix(d.Source, "metrics/dashboard.yaml") {
			var cm corev1.ConfigMap
			if err := yaml.UnmarshalStrict([]byte(d.YAML), &cm); err != nil {
				t.Fatal(err)
			}
			dash = &cm
			continue
		}
		rest = append(rest, d)
	}
	if dash == nil {
		t.Fatal("no dashboard ConfigMap rendered")
	}
	root, err := testkit.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	file, err := os.ReadFile(filepath.Join(root, chartrender.ChartDir, framework.DashboardFile))
	if err != nil {
		t.Fatal(err)
	}
	if dash.Namespace != "monitoring" || dash.Labels["grafana_dashboard"] != "1" {
		t.Errorf("dashboard ConfigMap %s/%s labels %v, want namespace monitoring and the sidecar's label", dash.Namespace, dash.Name, dash.Labels)
	}
	if diff := cmp.Diff(strings.TrimSpace(string(file)), strings.TrimSpace(dash.Data["kvinject.json"])); diff != "" {
		t.Errorf("dashboard ConfigMap data differs from %s (-file +rendered):\n%s", framework.DashboardFile, diff)
	}
	d, err := framework.ChartDashboard()
	if err != nil {
		t.Fatal(err)
	}
	if d.UID != "kvinject" || len(d.Panels) == 0 {
		t.Errorf("dashboard uid %q, %d panels", d.UID, len(d.Panels))
	}
	wcfg, ccfg := checkRelations(t, decode(t, rest), chartrender.Namespace)
	checkMonitoring(t, o, wcfg, ccfg)

}

// TestPodNetworkWithoutPodIdentity: podIdentity.enabled=false takes the node plugin
// off the host network; with it (the default) the plugin can reach NMI.
func TestPodNetworkWithoutPodIdentity(t *testing.T) {
	for _, enabled := range []bool{true, false} {
		o := decode(t, render(t, chartrender.Options{Values: map[string]any{"podIdentity": map[string]any{"enabled": enabled}}}))
		spec := one(t, "DaemonSets", o.daemonSets).Spec.Template.Spec
		wantDNS := corev1.DNSPolicy("")
		if enabled {
			wantDNS = corev1.DNSClusterFirstWithHostNet
		}
		if spec.HostNetwork != enabled || spec.DNSPolicy != wantDNS {
			t.Errorf("podIdentity.enabled=%v: hostNetwork %v dnsPolicy %q, want %v %q", enabled, spec.HostNetwork, spec.DNSPolicy, enabled, wantDNS)
		}
	}
}

// daemonSetAvoidsVirtualKubelet: the default affinity keeps the plugin off
// virtual-kubelet nodes (label type=virtual-kubelet) and on every other node.
func daemonSetAvoidsVirtualKubelet(t *testing.T, ds *appsv1.DaemonSet) {
	t.Helper()
	a := ds.Spec.Template.Spec.Affinity
	if a == nil || a.NodeAffinity == nil || a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution == nil {
		t.Fatal("the node plugin has no required node affinity")
	}
	terms := a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms
	matches := func(nodeLabels map[string]string) bool {
		for _, term := range terms {
			ok := true
			for _, e := range term.MatchExpressions {
				v, has := nodeLabels[e.Key]
				switch e.Operator {
				case corev1.NodeSelectorOpNotIn:
					ok = ok && !(has && slices.Contains(e.Values, v))
				case corev1.NodeSelectorOpIn:
					ok = ok && has && slices.Contains(e.Values, v)
				default:
					t.Fatalf("operator %s not modelled by this test", e.Operator)
				}
			}
			if ok {
				return true
			}
		}
		return false
	}
	if matches(map[string]string{"type": "virtual-kubelet", "kubernetes.io/os": "linux"}) {
		t.Error("the node plugin would run on a virtual-kubelet node")
	}
	if !matches(map[string]string{"kubernetes.io/os": "linux"}) || !matches(map[string]string{"type": "agent", "kubernetes.io/os": "linux"}) {
		t.Error("the node plugin would not run on an ordinary node")
	}
}
