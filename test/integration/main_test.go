package integration

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/testr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/kvinject/kvinject/internal/testcerts"
	"github.com/kvinject/kvinject/internal/testkit"
	"github.com/kvinject/kvinject/pkg/contract"
	"github.com/kvinject/kvinject/pkg/webhook"
	"github.com/kvinject/kvinject/test/framework"
)

const tenant = "72f988bf-86f1-41af-91ab-2d7cd011db47"

// Shared by every test: one control plane, one serving certificate, one registration
// of the shipped MutatingWebhookConfiguration pointed at webhookPort.
var (
	cp          *framework.ControlPlane
	ca          *testcerts.CA
	certDir     string
	webhookPort int
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	// controller-runtime's global logger (certwatcher logs through it) can be set once
	// per process; if the first test's logger took it, every later webhook would log
	// into a finished test. The manager's own lines still go to each test's logger.
	ctrllog.SetLogger(logr.Discard())
	assets := os.Getenv("KUBEBUILDER_ASSETS")
	if assets == "" {
		fmt.Fprintln(os.Stderr, "KUBEBUILDER_ASSETS is not set: run 'make test-integration'")
		if testkit.InCI() {
			return 1 // CI=true: a missing prerequisite is a failure, not a skip
		}
		return 0
	}
	start := time.Now()
	var err error
	crds, err := framework.PolicyCRDDir()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	// The SecretProviderClass CRD too, for kubectl kvinject check.
	cp, err = framework.Start(assets, framework.Options{ControllerManager: true, CRDDirectoryPaths: []string{crds, filepath.Join("..", "csi", "testdata", "crds")}})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() { _ = cp.Stop() }()
	fmt.Fprintf(os.Stderr, "control plane (etcd, kube-apiserver, kube-controller-manager) up in %v\n", time.Since(start).Round(time.Millisecond))

	if err := setupWebhook(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return m.Run()
}

// setupWebhook issues the serving certificate and registers the shipped webhook
// configuration, pointed at 127.0.0.1:webhookPort.
func setupWebhook() error {
	var err error
	if ca, err = testcerts.NewCA("kvinject-integration"); err != nil {
		return err
	}
	pair, err := ca.Issue("127.0.0.1")
	if err != nil {
		return err
	}
	if certDir, err = os.MkdirTemp(cp.Dir, "webhook-certs-"); err != nil {
		return err
	}
	if err := pair.WriteFiles(certDir); err != nil {
		return err
	}
	if webhookPort, err = testkit.FreePort(); err != nil {
		return err
	}
	config, err := framework.ShippedMutatingWebhook()
	if err != nil {
		return err
	}
	framework.PointAt(config, fmt.Sprintf("https://127.0.0.1:%d", webhookPort), ca.CertPEM)
	if err := cp.Client.Create(context.Background(), config); err != nil {
		return err
	}
	validating, err := framework.ShippedValidatingWebhook()
	if err != nil {
		return err
	}
	framework.PointValidatingAt(validating, fmt.Sprintf("https://127.0.0.1:%d", webhookPort), ca.CertPEM)
	return cp.Client.Create(context.Background(), validating)
}

// runningWebhook is the webhook program's Run, in this process, on webhookPort.
type runningWebhook struct {
	metricsURL string
	stop       func()
}

// startWebhook runs the webhook until the test ends (or stop is called) and waits
// until the API server sends it reviews.
func startWebhook(t *testing.T) *runningWebhook {
	t.Helper()
	o := webhook.NewOptions()
	o.Host, o.Port, o.CertDir = "127.0.0.1", webhookPort, certDir
	o.MetricsBindAddress = testkit.FreeAddr(t)
	o.HealthProbeBindAddress = testkit.FreeAddr(t)
	o.Kubeconfig = cp.Kubeconfig
	o.ShutdownTimeout = 20 * time.Second // generous: CI runs three suites on two cores
	o.Cluster.TenantID = tenant
	run := framework.RunWebhook(t, o, testr.New(t))
	w := &runningWebhook{metricsURL: "http://" + o.MetricsBindAddress + "/metrics", stop: run.Stop}
	// The API server picks up the registration asynchronously: wait until a dry-run
	// of an annotated pod comes back injected.
	testkit.Eventually(t, 30*time.Second, "API server calls the webhook", func(ctx context.Context) error {
		p := tutorialPod("default", "probe")
		if err := cp.Client.Create(ctx, p, client.DryRunAll); err != nil {
			return err
		}
		if p.Annotations[contract.AnnotationStatus] != contract.StatusInjected {
			return fmt.Errorf("pod not injected yet")
		}
		return nil
	})
	return w
}

// scrape returns the webhook's /metrics.
func (w *runningWebhook) scrape(t *testing.T) []byte {
	t.Helper()
	resp, err := http.Get(w.metricsURL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return body
}

// metric returns the value of the sample of name whose labels contain every label
// given as `key="value"`, summed over matching samples; 0 when absent.
func (w *runningWebhook) metric(t *testing.T, name string, labels ...string) float64 {
	t.Helper()
	var sum float64
lines:
	for _, line := range strings.Split(string(w.scrape(t)), "\n") {
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		for _, l := range labels {
			if !strings.Contains(line, l) {
				continue lines
			}
		}
		v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
		if err != nil {
			t.Fatalf("metric line %q: %v", line, err)
		}
		sum += v
	}
	return sum
}

func tutorialAnnotations() map[string]string {
	return map[string]string{
		contract.AnnotationVault:    "az-key-vault-demo",
		contract.AnnotationIdentity: "azure-kv",
		contract.AnnotationSecrets:  "DatabaseLogin=DATABASE_LOGIN, DatabasePassword=DATABASE_PASSWORD",
	}
}

// tutorialPod is the tutorial's pod written with the kvinject annotations only.
func tutorialPod(namespace, name string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace, Annotations: tutorialAnnotations()},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "nginx", Image: "nginx"}}},
	}
}

func plainPod(namespace, name string) *corev1.Pod {
	p := tutorialPod(namespace, name)
	p.Annotations = nil
	return p
}

// namespace creates a namespace for one test, with annotations, deleted at the end.
func namespace(t *testing.T, name string, annotations map[string]string) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: annotations}}
	if err := cp.Client.Create(t.Context(), ns); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cp.Client.Delete(context.Background(), ns) })
	return name
}
