// Package certmanager runs cert-manager v1's own certificate controllers and CA
// injector, from the cert-manager Go module's packages, inside a test process against
// a test control plane. It is the real issuing path (Issuer -> CertificateRequest ->
// approval -> signing -> Secret; inject-ca-from -> caBundle), not a stand-in: only
// cert-manager's own webhook, leader election and metrics are left out.
//
// The controllers are those a self-signed and CA issuer chain needs: issuers, the
// request approver, the selfsigned and ca signers, and the certificates trigger,
// key-manager, request-manager, issuing, readiness and revision-manager controllers.
package certmanager

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	cmscheme "github.com/cert-manager/cert-manager/pkg/client/clientset/versioned/scheme"
	cmcontroller "github.com/cert-manager/cert-manager/pkg/controller"
	"github.com/cert-manager/cert-manager/pkg/controller/cainjector"
	"github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/approver"
	crca "github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/ca"
	crselfsigned "github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/selfsigned"
	"github.com/cert-manager/cert-manager/pkg/controller/certificates/issuing"
	"github.com/cert-manager/cert-manager/pkg/controller/certificates/keymanager"
	"github.com/cert-manager/cert-manager/pkg/controller/certificates/readiness"
	"github.com/cert-manager/cert-manager/pkg/controller/certificates/requestmanager"
	"github.com/cert-manager/cert-manager/pkg/controller/certificates/revisionmanager"
	"github.com/cert-manager/cert-manager/pkg/controller/certificates/trigger"
	"github.com/cert-manager/cert-manager/pkg/controller/issuers"
	logf "github.com/cert-manager/cert-manager/pkg/logs"
	"github.com/cert-manager/cert-manager/pkg/util"

	// Issuer setup (Issuer Ready conditions) for the two issuer types used.
	_ "github.com/cert-manager/cert-manager/pkg/issuer/ca"
	_ "github.com/cert-manager/cert-manager/pkg/issuer/selfsigned"
)

// Module is the cert-manager module whose packages run here.
const Module = "github.com/cert-manager/cert-manager"

// Controllers are the cert-manager controllers Start runs, by their registered names.
var Controllers = []string{
	issuers.ControllerName,
	approver.ControllerName,
	crselfsigned.CRControllerName,
	crca.CRControllerName,
	trigger.ControllerName,
	keymanager.ControllerName,
	requestmanager.ControllerName,
	issuing.ControllerName,
	readiness.ControllerName,
	revisionmanager.ControllerName,
}

// CRDDir returns the deploy/crds directory of the cert-manager module this build
// uses (from the module cache, through `go list -m`).
func CRDDir() (string, error) {
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", Module).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return "", fmt.Errorf("go list -m %s: %w: %s", Module, err, ee.Stderr)
		}
		return "", fmt.Errorf("go list -m %s: %w", Module, err)
	}
	dir := strings.TrimSpace(string(out))
	if dir == "" {
		return "", fmt.Errorf("go list -m %s: module not downloaded (run go mod download %s)", Module, Module)
	}
	return dir + "/deploy/crds", nil
}

// Options configure Start.
type Options struct {
	// Kubeconfig is an admin kubeconfig file (cert-manager's controller context
	// takes a file, not a rest.Config). Required.
	Kubeconfig string
	// RestConfig reaches the same API server, for the CA injector. Required.
	RestConfig *rest.Config
	// Log receives the controllers' logs; the zero value discards them.
	Log logr.Logger
	// Workers per controller (default 2).
	Workers int
	// EnableOwnerRef makes each Certificate the owner of its Secret (cert-manager's
	// --enable-certificate-owner-ref), so deleting the Certificate deletes the Secret.
	EnableOwnerRef bool
}

// Running is a started cert-manager. Stop it with Stop.
type Running struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
	mu     sync.Mutex
	errs   []error
}

// Start runs the controllers and the CA injector until Stop is called or ctx ends.
// It returns once every informer has synced and the injector is running.
func Start(ctx context.Context, opts Options) (*Running, error) {
	if opts.Kubeconfig == "" || opts.RestConfig == nil {
		return nil, errors.New("certmanager: Kubeconfig and RestConfig are required")
	}
	if opts.Workers == 0 {
		opts.Workers = 2
	}
	ctx, cancel := context.WithCancel(ctx)
	ctx = logf.NewContext(ctx, opts.Log)
	r := &Running{cancel: cancel}
	ok := false
	defer func() {
		if !ok {
			r.Stop()
		}
	}()

	factory, err := cmcontroller.NewContextFactory(ctx, cmcontroller.ContextOptions{
		Kubeconfig:         opts.Kubeconfig,
		KubernetesAPIQPS:   100,
		KubernetesAPIBurst: 200,
		IssuerOptions:      cmcontroller.IssuerOptions{ClusterResourceNamespace: "kube-system"},
		CertificateOptions: cmcontroller.CertificateOptions{
			EnableOwnerRef:                           opts.EnableOwnerRef,
			CertificateRequestMinimumBackoffDuration: time.Second,
			CertificateRequestMaximumBackoffDuration: 10 * time.Second,
		},
	})
	if err != nil {
		return nil, fmt.Errorf("cert-manager controller context: %w", err)
	}
	// Informers are registered while the controllers are built: build all, then start
	// the informer factories, then run them.
	known := cmcontroller.Known()
	var controllers []cmcontroller.Interface
	for _, name := range Controllers {
		construct, found := known[name]
		if !found {
			return nil, fmt.Errorf("cert-manager controller %q is not registered", name)
		}
		c, err := construct(factory)
		if err != nil {
			return nil, fmt.Errorf("build cert-manager controller %s: %w", name, err)
		}
		controllers = append(controllers, c)
	}
	cctx, err := factory.Build()
	if err != nil {
		return nil, err
	}
	cctx.SharedInformerFactory.Start(ctx.Done())
	cctx.KubeSharedInformerFactory.Start(ctx.Done())
	cctx.HTTP01ResourceMetadataInformersFactory.Start(ctx.Done())
	for i, c := range controllers {
		name := Controllers[i]
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			if err := c.Run(opts.Workers, ctx); err != nil {
				r.fail(fmt.Errorf("cert-manager controller %s: %w", name, err))
			}
		}()
	}

	if err := r.startInjector(ctx, opts); err != nil {
		return nil, err
	}
	ok = true
	return r, nil
}

// startInjector runs the CA injector for Mutating- and ValidatingWebhookConfigurations on a
// controller-runtime manager, as cert-manager's cainjector does.
func (r *Running) startInjector(ctx context.Context, opts Options) error {
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{clientgoscheme.AddToScheme, cmscheme.AddToScheme, apiextensionsv1.AddToScheme} {
		if err := add(scheme); err != nil {
			return err
		}
	}
	// The injector's server-side apply field manager comes from the user agent.
	cfg := util.RestConfigWithUserAgent(opts.RestConfig, "cainjector")
	mgr, err := manager.New(cfg, manager.Options{
		Scheme:                 scheme,
		Logger:                 opts.Log.WithName("cainjector"),
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		LeaderElection:         false,
		Client: client.Options{
			Cache: &client.CacheOptions{DisableFor: []client.Object{&corev1.Secret{}}},
		},
	})
	if err != nil {
		return fmt.Errorf("cainjector manager: %w", err)
	}
	if err := cainjector.RegisterAllInjectors(ctx, mgr, cainjector.SetupOptions{
		EnableCertificatesDataSource: true,
		EnabledReconcilersFor: map[string]bool{
			cainjector.MutatingWebhookConfigurationName:   true,
			cainjector.ValidatingWebhookConfigurationName: true,
		},
	}); err != nil {
		return fmt.Errorf("register CA injectors: %w", err)
	}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		if err := mgr.Start(ctx); err != nil {
			r.fail(fmt.Errorf("cainjector: %w", err))
		}
	}()
	syncCtx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if !mgr.GetCache().WaitForCacheSync(syncCtx) {
		return errors.New("cainjector: caches did not sync within a minute")
	}
	return nil
}

func (r *Running) fail(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errs = append(r.errs, err)
}

// Err returns the errors of controllers that stopped on their own, if any.
func (r *Running) Err() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return errors.Join(r.errs...)
}

// Stop stops every controller and waits for them. It is safe to call twice.
func (r *Running) Stop() {
	r.cancel()
	r.wg.Wait()
}
