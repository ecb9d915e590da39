package csi

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime/debug"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"k8s.io/klog/v2"
	registerapi "k8s.io/kubelet/pkg/apis/pluginregistration/v1"

	"github.com/kvinject/kvinject/internal/version"
)

// PluginOptions are the seams of a Plugin. Nil fields take the real implementation
// built from the Options.
type PluginOptions struct {
	// Mounter mounts the tmpfs (nil = NewMounter()).
	Mounter Mounter
	// AzureTransport carries Entra ID and Key Vault requests (nil = NewAzureHTTPClient,
	// which honours HTTPS_PROXY, NO_PROXY and SSL_CERT_FILE).
	AzureTransport policy.Transporter
	// NMIClient reaches NMI (nil = a default client).
	NMIClient *http.Client
	// Classes reads SecretProviderClass objects and Events records pod events (nil =
	// a KubeClient from the Options' kubeconfig or the in-cluster service account; none
	// outside a cluster).
	Classes ClassGetter
	Events  EventRecorder
	// Policies checks volumes against the KeyVaultAccessPolicies (nil = watched
	// through the same KubeClient; none without an API server).
	Policies PolicyChecker
	// Retry overrides azcore's retry options (nil = azcore's: 3 retries, 800 ms base).
	Retry *policy.RetryOptions
	// Fetcher replaces the Azure fetcher entirely (unit tests).
	Fetcher ObjectFetcher
	// Metrics receives the metrics (nil = NewMetrics()).
	Metrics *Metrics
	// Now is the clock of the rotation schedule, the caches and the per-vault backoff
	// (nil = time.Now).
	Now func() time.Time
}

// Plugin is the node plugin: the CSI Identity and Node services on a unix socket, the
// registration socket, the metrics and the health probe servers.
type Plugin struct {
	opts     Options
	identity *IdentityServer
	node     *NodeServer
	reg      *RegistrationServer
	metrics  *Metrics
	policies *KubePolicies // nil without an API server, or with injected seams
}

// DefaultGCPercent is the node plugin's garbage collection target (GOGC) unless the
// environment sets one. The plugin runs on every node under a 25 MiB budget at 100
// volumes (BenchmarkResidentMemory100Volumes): with Go's default of 100 it held
// 25.8-25.9 MiB with tenancy policies, with 50 24.2-24.7 MiB, for no CPU difference
// the benchmark could measure (0.7-1.0 s for 100 publishes and a rotation round
// either way).
const DefaultGCPercent = 50

// Run runs the node plugin with its real dependencies until ctx ends.
func (o *Options) Run(ctx context.Context) error {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(DefaultGCPercent)
	}
	p, err := NewPlugin(o, PluginOptions{})
	if err != nil {
		return err
	}
	return p.Run(ctx)
}

// NewPlugin validates o and builds the plugin. It opens no socket.
func NewPlugin(o *Options, deps PluginOptions) (*Plugin, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	size, _ := o.TmpfsBytes()
	if deps.Mounter == nil {
		deps.Mounter = NewMounter()
	}
	if deps.Metrics == nil {
		deps.Metrics = NewMetrics()
	}
	if deps.AzureTransport == nil {
		// One transport for the node, keeping as many idle connections per host as the
		// node may have requests in flight: after warm-up, no refresh opens a connection.
		deps.AzureTransport = NewAzureHTTPClient(AzureHTTPOptions{IdleConnsPerHost: o.MaxRequestsInFlight})
	}
	var watcher *KubePolicies
	if deps.Classes == nil && deps.Events == nil && deps.Policies == nil {
		kc, err := NewKubeClient(KubeClientOptions{Kubeconfig: o.Kubeconfig, Component: o.DriverName, Node: o.NodeID})
		switch {
		case errors.Is(err, ErrNoAPIServer):
		case err != nil:
			return nil, err
		default:
			watcher = NewKubePolicies(kc, deps.Now)
			deps.Classes, deps.Events, deps.Policies = kc, kc, watcher
		}
	}
	if deps.Fetcher == nil {
		maxBytes, _ := parseSize(o.MaxBytesInFlight)
		deps.Fetcher = NewAzureFetcher(AzureFetcherOptions{
			Transport:           deps.AzureTransport,
			NMIEndpoint:         o.NMIEndpoint,
			NMIClient:           deps.NMIClient,
			Concurrency:         o.MaxConcurrentFetches,
			MaxRequestsInFlight: o.MaxRequestsInFlight,
			MaxBytesInFlight:    maxBytes,
			ObjectTTL:           o.RotationPollInterval,
			Metrics:             deps.Metrics,
			Retry:               deps.Retry,
			Now:                 deps.Now,
		})
	}
	node, err := NewNodeServer(NodeOptions{
		NodeID:               o.NodeID,
		DriverName:           o.DriverName,
		KubeletRoot:          o.kubeletRoot(),
		TmpfsBytes:           size,
		PublishTimeout:       o.PublishTimeout,
		TokenAudience:        o.TokenAudience,
		MaxObjects:           o.MaxObjectsPerVolume,
		RotationPollInterval: o.RotationPollInterval,
		Mounter:              deps.Mounter,
		Fetcher:              deps.Fetcher,
		Classes:              deps.Classes,
		Events:               deps.Events,
		Policies:             deps.Policies,
		Metrics:              deps.Metrics,
		Now:                  deps.Now,
	})
	if err != nil {
		return nil, err
	}
	return &Plugin{
		opts:     *o,
		identity: NewIdentityServer(o.DriverName, version.Get()),
		node:     node,
		reg:      NewRegistrationServer(o.DriverName, o.endpoint()),
		metrics:  deps.Metrics,
		policies: watcher,
	}, nil
}

// Metrics returns the plugin's metrics.
func (p *Plugin) Metrics() *Metrics { return p.metrics }

// Fetcher returns the plugin's object fetcher.
func (p *Plugin) Fetcher() ObjectFetcher { return p.node.opts.Fetcher }

// Run serves until ctx ends, then stops the servers gracefully and removes its sockets.
// It returns the first error of a server that stopped on its own.
func (p *Plugin) Run(ctx context.Context) error {
	log := klog.FromContext(ctx)
	endpoint := p.opts.endpoint()
	var listeners []net.Listener
	closeAll := func() {
		for _, l := range listeners {
			l.Close()
		}
	}
	csiLn, err := listenUnix(endpoint)
	if err != nil {
		return err
	}
	listeners = append(listeners, csiLn)
	csiSrv := grpc.NewServer(grpc.ChainUnaryInterceptor(withLogger(log), recoverPanics, logCalls))
	csi.RegisterIdentityServer(csiSrv, p.identity)
	csi.RegisterNodeServer(csiSrv, p.node)

	var regSrv *grpc.Server
	var regLn net.Listener
	if p.opts.Register {
		if regLn, err = listenUnix(p.opts.RegistrationSocket()); err != nil {
			closeAll()
			return err
		}
		listeners = append(listeners, regLn)
		regSrv = grpc.NewServer(grpc.ChainUnaryInterceptor(withLogger(log), recoverPanics))
		registerapi.RegisterRegistrationServer(regSrv, p.reg)
	}

	var httpSrvs []*http.Server
	var httpLns []net.Listener
	for _, h := range []struct {
		addr    string
		handler http.Handler
	}{
		{p.opts.MetricsBindAddress, p.metrics.Handler()},
		{p.opts.HealthProbeBindAddress, healthHandler(endpoint)},
	} {
		if h.addr == "0" || h.addr == "" {
			continue
		}
		ln, err := net.Listen("tcp", h.addr)
		if err != nil {
			closeAll()
			return fmt.Errorf("listen %s: %w", h.addr, err)
		}
		listeners = append(listeners, ln)
		httpLns = append(httpLns, ln)
		httpSrvs = append(httpSrvs, &http.Server{Handler: h.handler, ReadHeaderTimeout: 10 * time.Second})
	}

	errc := make(chan error, 2+len(httpSrvs))
	var wg sync.WaitGroup
	serve := func(name string, f func() error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(); err != nil && !errors.Is(err, grpc.ErrServerStopped) && !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("%s: %w", name, err)
			}
		}()
	}
	// What a killed process left is tidied before the first call is served.
	if n := p.node.recoverVolumes(log); n > 0 {
		log.Info("Tidied the volumes of the previous process", "volumes", n)
	}
	serve("CSI server", func() error { return csiSrv.Serve(csiLn) })
	if regSrv != nil {
		serve("registration server", func() error { return regSrv.Serve(regLn) })
	}
	for i, srv := range httpSrvs {
		serve("HTTP server "+httpLns[i].Addr().String(), func() error { return srv.Serve(httpLns[i]) })
	}
	if p.policies != nil {
		serve("KeyVaultAccessPolicy watch", func() error { p.policies.Run(klog.NewContext(ctx, log)); return nil })
	}
	log.Info("Serving CSI", "driver", p.opts.DriverName, "node", p.opts.NodeID, "endpoint", endpoint,
		"registration", p.opts.Register, "metrics", p.opts.MetricsBindAddress, "health", p.opts.HealthProbeBindAddress)

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errc:
	}
	log.Info("Stopping CSI node plugin")
	if regSrv != nil {
		regSrv.Stop()
		_ = os.Remove(p.opts.RegistrationSocket())
	}
	stopped := make(chan struct{})
	go func() { csiSrv.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(10 * time.Second):
		csiSrv.Stop()
	}
	for _, srv := range httpSrvs {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = srv.Shutdown(sctx)
		cancel()
	}
	wg.Wait()
	_ = os.Remove(endpoint)
	return runErr
}

// listenUnix listens on a unix socket, replacing a stale socket file.
func listenUnix(path string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("create socket directory: %w", err)
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("%s exists and is not a socket", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("remove stale socket: %w", err)
		}
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", path, err)
	}
	return ln, nil
}
