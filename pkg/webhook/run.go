package webhook

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"sync/atomic"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/certwatcher"
	"sigs.k8s.io/controller-runtime/pkg/client/config"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	crmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	crwebhook "sigs.k8s.io/controller-runtime/pkg/webhook"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/kvinject/kvinject/pkg/apis/kvinject/v1alpha1"
	"github.com/kvinject/kvinject/pkg/mutate"
)

// Run serves the webhook until ctx is cancelled, then stops accepting connections and
// waits up to ShutdownTimeout for in-flight reviews. o must have passed Validate. The
// serving certificate is re-read whenever it changes on disk. Logs go to the logger in
// ctx (logr.FromContext).
func (o *Options) Run(ctx context.Context) error {
	log := logr.FromContextOrDiscard(ctx)
	ctrllog.SetLogger(log) // controller-runtime's own lines, with the program's keys
	restConfig, err := loadRestConfig(o.Kubeconfig)
	if err != nil {
		return err
	}
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return err
	}
	if err := v1alpha1.AddToScheme(scheme); err != nil {
		return err
	}
	server, certs, err := o.newServer()
	if err != nil {
		return err
	}
	shutdown := o.ShutdownTimeout
	mgr, err := manager.New(restConfig, manager.Options{
		Scheme:                  scheme,
		Logger:                  log,
		WebhookServer:           server,
		Metrics:                 metricsserver.Options{BindAddress: o.MetricsBindAddress},
		HealthProbeBindAddress:  o.HealthProbeBindAddress,
		GracefulShutdownTimeout: &shutdown,
	})
	if err != nil {
		return fmt.Errorf("create manager: %w", err)
	}
	if err := mgr.Add(certs); err != nil {
		return err
	}
	metrics, err := NewMetrics(crmetrics.Registry)
	if err != nil {
		return fmt.Errorf("register metrics: %w", err)
	}

	// Start the metadata informers with the manager, so reviews read a warm cache.
	cache := mgr.GetCache()
	if _, err := cache.GetInformer(ctx, namespaceMeta()); err != nil {
		return fmt.Errorf("watch namespaces: %w", err)
	}
	if _, err := cache.GetInformer(ctx, serviceAccountMeta()); err != nil {
		return fmt.Errorf("watch service accounts: %w", err)
	}
	policies := newPolicyCache(cache, log.WithName("policy"))
	if err := policies.watch(ctx, cache); err != nil {
		return err
	}
	var synced atomic.Bool
	if err := mgr.Add(manager.RunnableFunc(func(ctx context.Context) error {
		if cache.WaitForCacheSync(ctx) {
			policies.markSynced(ctx)
			synced.Store(true)
		}
		return nil
	})); err != nil {
		return err
	}
	if err := addStatusController(mgr); err != nil {
		return fmt.Errorf("policy status controller: %w", err)
	}
	events := &policyEvents{reader: cache, recorder: mgr.GetEventRecorder("kvinject-webhook"), log: log.WithName("policy")}

	// A namespace or service account the informers have not seen yet (created just
	// before the pod) is read from the API server, so its annotations still count.
	lookup := metadataLookup{cache: cache, live: mgr.GetAPIReader()}
	mutator := mutate.NewMutator(o.Cluster, lookup, policies)
	// GetWebhookServer (not server itself) adds the server to the manager's runnables.
	mgr.GetWebhookServer().Register(Path, admissionWebhook(NewHandler(mutator, metrics, log.WithName("admission")).withEvents(events)))
	mgr.GetWebhookServer().Register(PodIdentityPath, admissionWebhook(NewPodIdentityHandler(lookup, policies, metrics, log.WithName("pod-identity")).withEvents(events)))
	if err := mgr.AddHealthzCheck("ping", healthz.Ping); err != nil {
		return err
	}
	if err := mgr.AddReadyzCheck("webhook", server.StartedChecker()); err != nil {
		return err
	}
	if err := mgr.AddReadyzCheck("informers", func(*http.Request) error {
		if !synced.Load() {
			return errors.New("namespace, service-account and KeyVaultAccessPolicy informers are not synced yet")
		}
		return nil
	}); err != nil {
		return err
	}
	log.Info("Serving admission reviews", "port", o.Port, "path", Path, "certDir", o.CertDir, "driver", o.Cluster.DriverName, "cloud", o.Cluster.CloudName)
	return mgr.Start(ctx)
}

func loadRestConfig(kubeconfig string) (*rest.Config, error) {
	if kubeconfig != "" {
		c, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
		if err != nil {
			return nil, fmt.Errorf("load kubeconfig %s: %w", kubeconfig, err)
		}
		return c, nil
	}
	c, err := config.GetConfig()
	if err != nil {
		return nil, fmt.Errorf("find the API server (in-cluster or $KUBECONFIG; or pass --kubeconfig): %w", err)
	}
	return c, nil
}

// newServer returns the HTTPS server and the watcher that feeds it the serving
// certificate: read at start, then re-read when the files change (fsnotify) or at
// CertPollInterval at the latest (a Secret volume swaps a symlink, which a file
// watch can miss). The watcher must be started for reloads to happen.
// The server speaks HTTP/1.1 only: the API server needs nothing more, and HTTP/2 on
// an admission port is what the HTTP/2 rapid-reset attacks (CVE-2023-44487) target.
func (o *Options) newServer() (crwebhook.Server, *certwatcher.CertWatcher, error) {
	certs, err := certwatcher.New(filepath.Join(o.CertDir, o.CertName), filepath.Join(o.CertDir, o.KeyName))
	if err != nil {
		return nil, nil, fmt.Errorf("load serving certificate: %w", err)
	}
	certs = certs.WithWatchInterval(o.CertPollInterval)
	server := crwebhook.NewServer(crwebhook.Options{
		Host: o.Host,
		Port: o.Port,
		TLSOpts: []func(*tls.Config){func(c *tls.Config) {
			c.MinVersion = tls.VersionTLS12
			c.NextProtos = []string{"http/1.1"}
			c.GetCertificate = certs.GetCertificate
		}},
	})
	return server, certs, nil
}

// admissionWebhook is h behind controller-runtime's admission HTTP handler, which
// decodes reviews, encodes responses and turns a panic into an error response.
func admissionWebhook(h admission.Handler) *admission.Webhook {
	recoverPanic := true
	return &admission.Webhook{Handler: h, RecoverPanic: &recoverPanic}
}
