package csi

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"
	"k8s.io/klog/v2"
	registerapi "k8s.io/kubelet/pkg/apis/pluginregistration/v1"
)

// Version is the plugin's version, set at build time with -ldflags -X.
var Version = "dev"

// PluginOptions are the seams of a Plugin. Nil fields take the real implementation
// built from the Config.
type PluginOptions struct {
	// Mounter mounts the tmpfs (nil = NewMounter()).
	Mounter Mounter
	// AzureTransport carries Entra ID and Key Vault requests (nil = NewAzureHTTPClient
	// with the Config's concurrency bound and test-only flags).
	AzureTransport policy.Transporter
	// NMIClient reaches NMI (nil = a default client).
	NMIClient *http.Client
	// Classes reads SecretProviderClass objects and Events records pod events (nil =
	// a KubeClient from the Config's kubeconfig or the in-cluster service account; none
	// outside a cluster).
	Classes ClassGetter
	Events  EventRecorder
	// Retry overrides azcore's retry options (nil = azcore's: 3 retries, 800 ms base).
	Retry *policy.RetryOptions
	// Fetcher replaces the Azure fetcher entirely (unit tests).
	Fetcher ObjectFetcher
	// Metrics receives the metrics (nil = NewMetrics()).
	Metrics *Metrics
}

// Plugin is the node plugin: the CSI Identity and Node services on a unix socket, the
// registration socket, and the metrics server.
type Plugin struct {
	cfg      Config
	identity *IdentityServer
	node     *NodeServer
	reg      *RegistrationServer
	metrics  *Metrics
}

// NewPlugin validates cfg and builds the plugin. It opens no socket.
func NewPlugin(cfg Config, opts PluginOptions) (*Plugin, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	size, _ := cfg.TmpfsBytes()
	if opts.Mounter == nil {
		opts.Mounter = NewMounter()
	}
	if opts.Metrics == nil {
		opts.Metrics = NewMetrics()
	}
	if opts.AzureTransport == nil {
		c, err := NewAzureHTTPClient(AzureHTTPOptions{IdleConnsPerHost: cfg.MaxConcurrentFetches, DialAddress: cfg.AzureDialAddress, CAFile: cfg.AzureCAFile})
		if err != nil {
			return nil, err
		}
		opts.AzureTransport = c
	}
	if opts.Classes == nil && opts.Events == nil {
		kc, err := NewKubeClient(KubeClientOptions{Kubeconfig: cfg.Kubeconfig, Component: cfg.DriverName, Node: cfg.NodeID})
		switch {
		case errors.Is(err, ErrNoAPIServer):
		case err != nil:
			return nil, err
		default:
			opts.Classes, opts.Events = kc, kc
		}
	}
	if opts.Fetcher == nil {
		opts.Fetcher = NewAzureFetcher(AzureFetcherOptions{
			Transport:   opts.AzureTransport,
			NMIEndpoint: cfg.NMIEndpoint,
			NMIClient:   opts.NMIClient,
			Concurrency: cfg.MaxConcurrentFetches,
			Metrics:     opts.Metrics,
			Retry:       opts.Retry,
		})
	}
	nopts := NodeOptions{
		NodeID:         cfg.NodeID,
		KubeletRoot:    cfg.KubeletRoot,
		TmpfsBytes:     size,
		PublishTimeout: cfg.PublishTimeout,
		Mounter:        opts.Mounter,
		Fetcher:        opts.Fetcher,
		Metrics:        opts.Metrics,
	}
	nopts.Classes, nopts.Events = opts.Classes, opts.Events
	node, err := NewNodeServer(nopts)
	if err != nil {
		return nil, err
	}
	return &Plugin{
		cfg:      cfg,
		identity: NewIdentityServer(cfg.DriverName, Version),
		node:     node,
		reg:      NewRegistrationServer(cfg.DriverName, cfg.Endpoint),
		metrics:  opts.Metrics,
	}, nil
}

// Node returns the Node service (for in-process tests).
func (p *Plugin) Node() *NodeServer { return p.node }

// Metrics returns the plugin's metrics.
func (p *Plugin) Metrics() *Metrics { return p.metrics }

// Run serves until ctx ends, then stops the servers gracefully and removes its sockets.
// It returns the first error of a server that stopped on its own.
func (p *Plugin) Run(ctx context.Context) error {
	log := klog.FromContext(ctx)
	csiLn, err := listenUnix(p.cfg.Endpoint)
	if err != nil {
		return err
	}
	csiSrv := grpc.NewServer(grpc.UnaryInterceptor(logCalls))
	csi.RegisterIdentityServer(csiSrv, p.identity)
	csi.RegisterNodeServer(csiSrv, p.node)

	var regSrv *grpc.Server
	var regLn net.Listener
	if p.cfg.Register {
		if regLn, err = listenUnix(p.cfg.RegistrationSocket()); err != nil {
			csiLn.Close()
			return err
		}
		regSrv = grpc.NewServer()
		registerapi.RegisterRegistrationServer(regSrv, p.reg)
	}

	var httpSrv *http.Server
	var httpLn net.Listener
	if p.cfg.MetricsAddress != "" {
		if httpLn, err = net.Listen("tcp", p.cfg.MetricsAddress); err != nil {
			csiLn.Close()
			if regLn != nil {
				regLn.Close()
			}
			return fmt.Errorf("listen %s: %w", p.cfg.MetricsAddress, err)
		}
		mux := http.NewServeMux()
		mux.Handle("/metrics", p.metrics.Handler())
		mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
		httpSrv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	}

	errc := make(chan error, 3)
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
	serve("CSI server", func() error { return csiSrv.Serve(csiLn) })
	if regSrv != nil {
		serve("registration server", func() error { return regSrv.Serve(regLn) })
	}
	if httpSrv != nil {
		serve("metrics server", func() error { return httpSrv.Serve(httpLn) })
	}
	log.Info("CSI node plugin serving", "driver", p.cfg.DriverName, "node", p.cfg.NodeID, "endpoint", p.cfg.Endpoint,
		"registration", p.cfg.Register, "metrics", p.cfg.MetricsAddress, "version", Version)

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errc:
	}
	log.Info("Stopping CSI node plugin")
	if regSrv != nil {
		regSrv.Stop()
		_ = os.Remove(p.cfg.RegistrationSocket())
	}
	stopped := make(chan struct{})
	go func() { csiSrv.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(10 * time.Second):
		csiSrv.Stop()
	}
	if httpSrv != nil {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = httpSrv.Shutdown(sctx)
		cancel()
	}
	wg.Wait()
	_ = os.Remove(p.cfg.Endpoint)
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

// logCalls logs each CSI call's method, code and duration, never its request or
// response (they carry tokens and secrets).
func logCalls(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	start := time.Now()
	resp, err := handler(ctx, req)
	klog.FromContext(ctx).V(5).Info("CSI call", "method", info.FullMethod, "code", status.Code(err).String(), "duration", time.Since(start))
	return resp, err
}
