package emulator

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"time"

	"k8s.io/klog/v2/textlogger"

	"github.com/kvinject/kvinject/internal/testcerts"
)

// Config is the standalone binary's configuration (cmd/azure-emulator).
type Config struct {
	// SeedFile is the YAML seed ("" = empty emulator).
	SeedFile string
	// Listen, NMIListen, IMDSListen and ProxyListen are the listen addresses (see Options).
	Listen, NMIListen, IMDSListen, ProxyListen string
	// CADir holds ca.crt and ca.key of a test CA (internal/testcerts) to issue the HTTPS
	// certificate from ("" = a new CA).
	CADir string
	// HTTP2 serves HTTP/2 besides HTTP/1.1.
	HTTP2 bool
	// StateDir receives ca.crt and endpoints.json ("" = a new temporary directory).
	StateDir string
}

// DefaultConfig is the binary's defaults: random HTTPS port, NMI on its real port 2579,
// random IMDS port.
func DefaultConfig() Config {
	return Config{Listen: DefaultListen, NMIListen: "127.0.0.1:2579", IMDSListen: DefaultIMDSListen, ProxyListen: DefaultProxyListen}
}

// AddFlags binds the configuration to flags, with c's values as defaults.
func (c *Config) AddFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.SeedFile, "seed", c.SeedFile, "YAML seed file: tenants, vaults, principals, access policies, federated credentials, pod identities")
	fs.StringVar(&c.Listen, "listen", c.Listen, "HTTPS listener for Key Vault and Entra ID (host:port)")
	fs.StringVar(&c.NMIListen, "nmi-listen", c.NMIListen, `NMI listener (host:port, "off" to disable)`)
	fs.StringVar(&c.IMDSListen, "imds-listen", c.IMDSListen, `IMDS listener (host:port, "off" to disable)`)
	fs.StringVar(&c.ProxyListen, "proxy-listen", c.ProxyListen, `HTTP CONNECT proxy listener for HTTPS_PROXY (host:port, "off" to disable)`)
	fs.StringVar(&c.CADir, "ca-dir", c.CADir, "directory holding ca.crt and ca.key of the test CA that issues the HTTPS certificate (default: a new CA)")
	fs.BoolVar(&c.HTTP2, "http2", c.HTTP2, "serve HTTP/2 as well as HTTP/1.1 on the HTTPS listener")
	fs.StringVar(&c.StateDir, "state-dir", c.StateDir, "directory for ca.crt and endpoints.json (default: a new temporary directory)")
}

// Validate checks the configuration before anything runs.
func (c *Config) Validate() error {
	if c.Listen == "" {
		return errors.New("--listen must not be empty")
	}
	return nil
}

// Run is the standalone emulator: it parses args, starts the emulator, prints where
// each endpoint listens and where the CA file is to stdout, and serves until ctx ends.
// Logs go to stderr.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	began := time.Now()
	cfg := DefaultConfig()
	fs := flag.NewFlagSet("azure-emulator", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg.AddFlags(fs)
	logCfg := textlogger.NewConfig(textlogger.Output(stderr))
	logCfg.AddFlags(fs)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	logger := textlogger.NewLogger(logCfg)
	var seed *Seed
	if cfg.SeedFile != "" {
		var err error
		if seed, err = LoadSeed(cfg.SeedFile); err != nil {
			return err
		}
	}
	if cfg.StateDir == "" {
		dir, err := os.MkdirTemp("", "azure-emulator-")
		if err != nil {
			return fmt.Errorf("create state dir: %w", err)
		}
		cfg.StateDir = dir
	}
	var ca *testcerts.CA
	if cfg.CADir != "" {
		var err error
		if ca, err = testcerts.LoadCA(cfg.CADir, "ca"); err != nil {
			return fmt.Errorf("--ca-dir: %w", err)
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	e, err := Start(ctx, Options{Seed: seed, Listen: cfg.Listen, NMIListen: cfg.NMIListen,
		IMDSListen: cfg.IMDSListen, ProxyListen: cfg.ProxyListen, CA: ca, HTTP2: cfg.HTTP2,
		StateDir: cfg.StateDir, Logger: logger})
	if err != nil {
		return err
	}
	defer e.Close()
	printEndpoints(stdout, e.Endpoints(), filepath.Join(cfg.StateDir, EndpointsFileName), time.Since(began))
	<-ctx.Done()
	logger.Info("Azure emulator stopping")
	return nil
}

func printEndpoints(w io.Writer, ep Endpoints, endpointsFile string, took time.Duration) {
	fmt.Fprintf(w, "Azure emulator ready in %s\n", took.Round(time.Millisecond))
	fmt.Fprintf(w, "https (Key Vault, Entra ID): %s\n", ep.HTTPS)
	fmt.Fprintf(w, "authority host: %s\n", ep.AuthorityHost)
	names := make([]string, 0, len(ep.Vaults))
	for n := range ep.Vaults {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "vault %s: %s\n", n, ep.Vaults[n])
	}
	if ep.NMIURL != "" {
		fmt.Fprintf(w, "nmi: %s\n", ep.NMIURL)
	}
	if ep.IMDS != "" {
		fmt.Fprintf(w, "imds: http://%s%s (clients dial %s)\n", ep.IMDS, imdsTokenPath, IMDSHost)
	}
	if ep.Proxy != "" {
		fmt.Fprintf(w, "proxy: http://%s (HTTPS_PROXY; with SSL_CERT_FILE=%s)\n", ep.Proxy, ep.CAFile)
	}
	fmt.Fprintf(w, "ca file: %s\n", ep.CAFile)
	fmt.Fprintf(w, "endpoints file: %s\n", endpointsFile)
}
