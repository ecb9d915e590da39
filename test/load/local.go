package load

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"os"
	"time"

	"github.com/kvinject/kvinject/internal/testcerts"
	"github.com/kvinject/kvinject/internal/testkit"
	"github.com/kvinject/kvinject/pkg/webhook"
	"github.com/kvinject/kvinject/test/framework"
)

// Local is the webhook program's Run in this process, on 127.0.0.1, against a control
// plane of its own (etcd and kube-apiserver from KUBEBUILDER_ASSETS): the production
// serving path, informers and all.
type Local struct {
	// Target reaches the server; its TLS config trusts the throw-away CA.
	Target *Target
	// CAPEM is the throw-away CA, for clients outside this process.
	CAPEM []byte

	cp     *framework.ControlPlane
	cancel context.CancelFunc
	done   chan error
	dir    string
}

// StartLocal starts a control plane from the binaries in assets and runs the webhook
// ((*webhook.Options).Run) on a free port of 127.0.0.1 with a certificate issued by a
// throw-away CA. It returns once the webhook is ready (its informers synced). Call
// Stop to shut both down.
func StartLocal(ctx context.Context, assets string) (*Local, error) {
	dir, err := os.MkdirTemp("", "kvinject-load-")
	if err != nil {
		return nil, err
	}
	l := &Local{dir: dir, done: make(chan error, 1)}
	if err := l.start(ctx, assets); err != nil {
		if l.cp != nil {
			_ = l.cp.Stop()
		}
		os.RemoveAll(dir)
		return nil, err
	}
	return l, nil
}

func (l *Local) start(ctx context.Context, assets string) error {
	crds, err := framework.PolicyCRDDir()
	if err != nil {
		return err
	}
	cp, err := framework.Start(assets, framework.Options{CRDDirectoryPaths: []string{crds}})
	if err != nil {
		return err
	}
	l.cp = cp
	ca, err := testcerts.NewCA("kvinject-load-ca")
	if err != nil {
		return err
	}
	pair, err := ca.Issue("127.0.0.1")
	if err != nil {
		return err
	}
	if err := pair.WriteFiles(l.dir); err != nil {
		return err
	}
	o := webhook.NewOptions()
	if o.Port, err = testkit.FreePort(); err != nil {
		return err
	}
	health, err := testkit.FreePort()
	if err != nil {
		return err
	}
	o.Host, o.CertDir, o.Kubeconfig = "127.0.0.1", l.dir, cp.Kubeconfig
	o.MetricsBindAddress, o.HealthProbeBindAddress = "0", fmt.Sprintf("127.0.0.1:%d", health)
	if err := o.Validate(); err != nil {
		return err
	}
	ctx, l.cancel = context.WithCancel(ctx)
	go func() { l.done <- o.Run(ctx) }()

	l.CAPEM = ca.CertPEM
	addr := fmt.Sprintf("127.0.0.1:%d", o.Port)
	l.Target = &Target{
		URL:       "https://" + addr + webhook.Path,
		TLS:       &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: ca.Pool(), ServerName: "127.0.0.1"},
		InProcess: true,
	}
	err = testkit.Poll(ctx, 50*time.Millisecond, 30*time.Second, "webhook ready on "+addr, func(ctx context.Context) error {
		select {
		case err := <-l.done:
			return testkit.Stop(fmt.Errorf("the webhook stopped: %v", err))
		default:
		}
		resp, err := http.Get("http://" + o.HealthProbeBindAddress + "/readyz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("readyz: HTTP %d", resp.StatusCode)
		}
		return nil
	})
	if err != nil {
		l.cancel()
		return err
	}
	return nil
}

// Stop shuts the webhook and the control plane down and removes their files.
func (l *Local) Stop() error {
	l.cancel()
	err := <-l.done
	return errors.Join(err, l.cp.Stop(), os.RemoveAll(l.dir))
}
