package framework

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/kvinject/kvinject/internal/testkit"
	"github.com/kvinject/kvinject/pkg/apis/kvinject/v1alpha1"
)

// Options select what runs besides etcd and kube-apiserver.
type Options struct {
	// ControllerManager starts kube-controller-manager, so Deployments create
	// ReplicaSets and Pods, and namespaces get their default ServiceAccount.
	ControllerManager bool
	// CRDDirectoryPaths are installed before Start returns.
	CRDDirectoryPaths []string
	// APIServerArgs are extra kube-apiserver flags (name -> values).
	APIServerArgs map[string][]string
	// Log receives the controller manager's output; nil discards it.
	Log func(string)
}

// ControlPlane is a running etcd + kube-apiserver (+ kube-controller-manager).
type ControlPlane struct {
	Env *envtest.Environment
	// Config is an admin (system:masters) client configuration.
	Config *rest.Config
	// Client is a client for Config with Scheme().
	Client client.Client
	// Kubeconfig is a file holding an admin kubeconfig.
	Kubeconfig string
	// Dir holds the kubeconfig and the controller manager's files.
	Dir string

	kcm     *exec.Cmd
	kcmDone chan error
}

// Assets returns the folder of the test binaries. Outside CI, tests skip when it is
// not set; in CI (CI=true) they fail, so a broken build never passes by skipping.
func Assets(t testing.TB) string {
	t.Helper()
	dir := os.Getenv("KUBEBUILDER_ASSETS")
	testkit.Require(t, dir != "", "KUBEBUILDER_ASSETS is not set: run 'make test-integration', which builds etcd and kube-apiserver and sets it")
	for _, b := range []string{"etcd", "kube-apiserver"} {
		if _, err := os.Stat(filepath.Join(dir, b)); err != nil {
			t.Fatalf("KUBEBUILDER_ASSETS=%s lacks %s: run 'make tools'", dir, b)
		}
	}
	return dir
}

// Start starts a control plane from the binaries in assets.
func Start(assets string, opts Options) (cp *ControlPlane, err error) {
	dir, err := os.MkdirTemp("", "kvinject-controlplane-")
	if err != nil {
		return nil, err
	}
	env := &envtest.Environment{
		BinaryAssetsDirectory:    assets,
		CRDDirectoryPaths:        opts.CRDDirectoryPaths,
		ErrorIfCRDPathMissing:    true,
		ControlPlaneStartTimeout: 2 * time.Minute,
		ControlPlaneStopTimeout:  time.Minute,
	}
	api := env.ControlPlane.GetAPIServer()
	for name, values := range opts.APIServerArgs {
		api.Configure().Set(name, values...)
	}
	config, err := env.Start()
	if err != nil {
		return nil, fmt.Errorf("start etcd and kube-apiserver from %s: %w", assets, err)
	}
	cp = &ControlPlane{Env: env, Config: config, Dir: dir}
	defer func() {
		if err != nil {
			_ = cp.Stop()
		}
	}()
	scheme, err := Scheme()
	if err != nil {
		return nil, err
	}
	if cp.Client, err = client.New(config, client.Options{Scheme: scheme}); err != nil {
		return nil, err
	}
	admin, err := env.AddUser(envtest.User{Name: "kvinject-admin", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return nil, err
	}
	kubeconfig, err := admin.KubeConfig()
	if err != nil {
		return nil, err
	}
	cp.Kubeconfig = filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(cp.Kubeconfig, kubeconfig, 0o600); err != nil {
		return nil, err
	}
	if opts.ControllerManager {
		if err := cp.startControllerManager(assets, opts.Log); err != nil {
			return nil, err
		}
	}
	return cp, nil
}

// Scheme is the client-go scheme with kvinject's own API (KeyVaultAccessPolicy).
func Scheme() (*runtime.Scheme, error) {
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return nil, err
	}
	if err := v1alpha1.AddToScheme(scheme); err != nil {
		return nil, err
	}
	return scheme, nil
}

// startControllerManager runs kube-controller-manager against the API server and
// waits until it has created the default namespace's ServiceAccount.
func (cp *ControlPlane) startControllerManager(assets string, log func(string)) error {
	api := cp.Env.ControlPlane.APIServer
	rootCA := filepath.Join(cp.Dir, "ca.crt")
	if err := os.WriteFile(rootCA, api.SecureServing.CA, 0o600); err != nil {
		return err
	}
	cmd := exec.Command(filepath.Join(assets, "kube-controller-manager"),
		"--kubeconfig="+cp.Kubeconfig,
		"--authentication-kubeconfig="+cp.Kubeconfig,
		"--authorization-kubeconfig="+cp.Kubeconfig,
		"--controllers=*",
		"--leader-elect=false",
		"--bind-address=127.0.0.1",
		"--secure-port=0",
		"--service-account-private-key-file="+filepath.Join(api.CertDir, "sa-signer.key"),
		"--root-ca-file="+rootCA,
		"--flex-volume-plugin-dir="+filepath.Join(cp.Dir, "flexvolume"),
		"--concurrent-deployment-syncs=5",
		"--concurrent-replicaset-syncs=5",
		"--v=1",
	)
	out := &lineWriter{log: log}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start kube-controller-manager: %w", err)
	}
	cp.kcm = cmd
	cp.kcmDone = make(chan error, 1)
	go func() { cp.kcmDone <- cmd.Wait() }()

	err := testkit.Poll(context.Background(), 200*time.Millisecond, 90*time.Second, "kube-controller-manager creates the default ServiceAccount", func(ctx context.Context) error {
		select {
		case err := <-cp.kcmDone:
			cp.kcm = nil
			return testkit.Stop(fmt.Errorf("kube-controller-manager exited: %v", err))
		default:
		}
		var sa corev1.ServiceAccount
		return cp.Client.Get(ctx, client.ObjectKey{Namespace: "default", Name: "default"}, &sa)
	})
	if err != nil {
		return fmt.Errorf("%w (last output: %s)", err, out.tail())
	}
	return nil
}

// Stop stops every process and removes the files. It is safe to call twice.
func (cp *ControlPlane) Stop() error {
	var errs []error
	if cp.kcm != nil {
		_ = cp.kcm.Process.Signal(os.Interrupt)
		select {
		case <-cp.kcmDone:
		case <-time.After(10 * time.Second):
			_ = cp.kcm.Process.Kill()
			<-cp.kcmDone
		}
		cp.kcm = nil
	}
	if cp.Env != nil {
		if err := cp.Env.Stop(); err != nil {
			errs = append(errs, err)
		}
		cp.Env = nil
	}
	if cp.Dir != "" {
		errs = append(errs, os.RemoveAll(cp.Dir))
	}
	return errors.Join(errs...)
}
