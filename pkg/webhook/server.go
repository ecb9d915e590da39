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
	"sigs.k8s.io/controller-runtime/pkg/manager"
	crmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	crwebhook "sigs.k8s.io/controller-runtime/pkg/webhook"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/kvinject/kvinject/pkg/mutate"
)

// Options are the dependencies Run takes from its caller rather than from Config.
type Options struct {
	// RestConfig reaches the API server; nil means Config.Kubeconfig, else in-cluster
	// or $KUBECONFIG.
	RestConfig *rest.Config
	// Logger receives every log line; the zero value discards them.
	Logger logr.Logger
}

// Run serves the webhook until ctx is cancelled, then stops accepting connections and
// waits up to cfg.ShutdownTimeout for in-flight reviews. cfg must have passed
// Complete. The serving certificate is re-read whenever it changes on disk.
func Run(ctx context.Context, cfg Config, opts Options) error {
	restConfig := opts.RestConfig
	if restConfig == nil {
		var err error
		if restConfig, err = loadRestConfig(cfg.Kubeconfig); err != nil {
			return err
		}
	}
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return err
	}
	server, certs, err := newServer(cfg)
	if err != nil {
		return err
	}
	shutdown := cfg.ShutdownTimeout
	mgr, err := manager.New(restConfig, manager.Options{
		Scheme:                  scheme,
		Logger:                  opts.Logger,
		WebhookServer:           server,
		Metrics:                 metricsserver.Options{BindAddress: cfg.MetricsAddr},
		HealthProbeBindAddress:  cfg.HealthAddr,
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
	var synced atomic.Bool
	if err := mgr.Add(manager.RunnableFunc(func(ctx context.Context) error {
		if cache.WaitForCacheSync(ctx) {
			synced.Store(true)
		}
		return nil
	})); err != nil {
		return err
	}

	mutator := mutate.NewMutator(cfg.Defaults, metadataLookup{reader: cache})
	// GetWebhookServer (not server itself) adds the server to the manager's runnables.
	mgr.GetWebhookServer().Register(Path, admissionWebhook(NewHandler(mutator, metrics, opts.Logger.WithName("admission"))))
	if err := mgr.AddHealthzCheck("ping", healthz.Ping); err != nil {
		return err
	}
	if err := mgr.AddReadyzCheck("webhook", server.StartedChecker()); err != nil {
		return err
	}
	if err := mgr.AddReadyzCheck("informers", func(*http.Request) error {
		if !synced.Load() {
			return errors.New("namespace and service-account informers are not synced yet")
		}
		return nil
	}); err != nil {
		return err
	}
	opts.Logger.Info("Starting webhook", "port", cfg.Port, "certDir", cfg.CertDir, "driver", cfg.Defaults.DriverName, "cloud", cfg.Defaults.CloudName)
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
// cfg.CertPollInterval at the latest (a Secret volume swaps a symlink, which a file
// watch can miss). The watcher must be started for reloads to happen.
func newServer(cfg Config) (crwebhook.Server, *certwatcher.CertWatcher, error) {
	certs, err := certwatcher.New(filepath.Join(cfg.CertDir, cfg.CertName), filepath.Join(cfg.CertDir, cfg.KeyName))
	if err != nil {
		return nil, nil, fmt.Errorf("load serving certificate: %w", err)
	}
	certs = certs.WithWatchInterval(cfg.CertPollInterval)
	server := crwebhook.NewServer(crwebhook.Options{
		Host: cfg.Host,
		Port: cfg.Port,
		TLSOpts: []func(*tls.Config){func(c *tls.Config) {
			c.MinVersion = tls.VersionTLS12
			c.GetCertificate = certs.GetCertificate
		}},
	})
	return server, certs, nil
}

// admissionWebhook is h behind controller-runtime's admission HTTP handler, which
// decodes reviews, encodes responses and turns a panic into an error response.
func admissionWebhook(h *Handler) *admission.Webhook {
	recoverPanic := true
	return &admission.Webhook{Handler: h, RecoverPanic: &recoverPanic}
}
