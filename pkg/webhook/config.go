package webhook

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/kvinject/kvinject/pkg/mutate"
)

// Config is the whole configuration of the webhook program. Start from DefaultConfig,
// bind flags with BindFlags, then call Complete before use.
type Config struct {
	// Host and Port are where the webhook serves HTTPS.
	Host string
	Port int
	// CertDir holds CertName and KeyName (a cert-manager Secret mounts tls.crt and
	// tls.key). They are reloaded when they change on disk.
	CertDir  string
	CertName string
	KeyName  string
	// CertPollInterval is the longest a renewed certificate waits to be served.
	CertPollInterval time.Duration
	// MetricsAddr serves Prometheus /metrics ("0" disables it).
	MetricsAddr string
	// HealthAddr serves /healthz and /readyz ("0" disables it).
	HealthAddr string
	// Kubeconfig is a kubeconfig file; empty means in-cluster or $KUBECONFIG.
	Kubeconfig string
	// ConfigFile is an optional YAML file with the cluster defaults (mutate.Config).
	ConfigFile string
	// ShutdownTimeout bounds how long shutdown waits for in-flight reviews.
	ShutdownTimeout time.Duration
	// Defaults is the cluster configuration: flag values, overlaid by ConfigFile.
	Defaults mutate.Config
}

// DefaultConfig returns the configuration of a webhook deployed by the chart.
func DefaultConfig() Config {
	return Config{
		Port:             9443,
		CertDir:          "/etc/kvinject/tls",
		CertName:         "tls.crt",
		KeyName:          "tls.key",
		CertPollInterval: 5 * time.Second,
		MetricsAddr:      ":8080",
		HealthAddr:       ":8081",
		ShutdownTimeout:  30 * time.Second,
		Defaults:         mutate.DefaultConfig(),
	}
}

// BindFlags binds every field to a flag of fs, with the field's current value as the
// flag's default.
func (c *Config) BindFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.Host, "host", c.Host, "address the webhook listens on (empty: all)")
	fs.IntVar(&c.Port, "port", c.Port, "HTTPS port of the webhook")
	fs.StringVar(&c.CertDir, "cert-dir", c.CertDir, "directory holding the serving certificate and key; reloaded when they change")
	fs.StringVar(&c.CertName, "cert-name", c.CertName, "certificate file name in --cert-dir")
	fs.StringVar(&c.KeyName, "key-name", c.KeyName, "key file name in --cert-dir")
	fs.DurationVar(&c.CertPollInterval, "cert-poll-interval", c.CertPollInterval, "how often the serving certificate is re-read besides file events")
	fs.StringVar(&c.MetricsAddr, "metrics-bind-address", c.MetricsAddr, "address of the Prometheus /metrics endpoint (0 disables it)")
	fs.StringVar(&c.HealthAddr, "health-probe-bind-address", c.HealthAddr, "address of /healthz and /readyz (0 disables them)")
	fs.StringVar(&c.Kubeconfig, "kubeconfig", c.Kubeconfig, "kubeconfig file (default: in-cluster, or $KUBECONFIG)")
	fs.StringVar(&c.ConfigFile, "config", c.ConfigFile, "YAML file of cluster defaults: vault, tenantId, identity, cloudName, driverName, mountPath, maxEntries")
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", c.ShutdownTimeout, "how long shutdown waits for in-flight reviews")
	fs.StringVar(&c.Defaults.Vault, "default-vault", c.Defaults.Vault, "Key Vault used when neither the pod nor its namespace names one")
	fs.StringVar(&c.Defaults.TenantID, "default-tenant-id", c.Defaults.TenantID, "Entra ID tenant used when neither the pod nor its namespace names one")
	fs.StringVar(&c.Defaults.Identity, "default-identity", c.Defaults.Identity, "AAD Pod Identity selector used when neither the pod nor its namespace names an identity")
	fs.StringVar(&c.Defaults.CloudName, "cloud-name", c.Defaults.CloudName, "Azure cloud of the vaults: AzurePublicCloud, AzureUSGovernmentCloud, AzureChinaCloud or AzureStackCloud")
	fs.StringVar(&c.Defaults.DriverName, "driver-name", c.Defaults.DriverName, "CSI driver that serves the injected volume")
	fs.StringVar(&c.Defaults.MountPath, "default-mount-path", c.Defaults.MountPath, "mount path used when the pod does not set kvinject.io/mount-path")
	fs.IntVar(&c.Defaults.MaxEntries, "max-entries", c.Defaults.MaxEntries, "longest alias list a pod may carry")
}

// Complete reads ConfigFile over the flag values and validates the result, returning
// every problem at once.
func (c *Config) Complete() error {
	if c.ConfigFile != "" {
		if err := mutate.LoadConfigFile(&c.Defaults, c.ConfigFile); err != nil {
			return err
		}
	}
	var errs []error
	if c.Port < 1 || c.Port > 65535 {
		errs = append(errs, fmt.Errorf("--port: %d is not a port", c.Port))
	}
	for _, f := range []string{c.CertName, c.KeyName} {
		p := filepath.Join(c.CertDir, f)
		if _, err := os.Stat(p); err != nil {
			errs = append(errs, fmt.Errorf("serving certificate: %w (mount the cert-manager Secret at --cert-dir)", err))
		}
	}
	for name, addr := range map[string]string{"--metrics-bind-address": c.MetricsAddr, "--health-probe-bind-address": c.HealthAddr} {
		if addr == "0" {
			continue
		}
		if _, _, err := net.SplitHostPort(addr); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
		}
	}
	if c.CertPollInterval <= 0 {
		errs = append(errs, fmt.Errorf("--cert-poll-interval: %v is not positive", c.CertPollInterval))
	}
	if c.ShutdownTimeout <= 0 {
		errs = append(errs, fmt.Errorf("--shutdown-timeout: %v is not positive", c.ShutdownTimeout))
	}
	if err := c.Defaults.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("cluster configuration: %w", err))
	}
	return errors.Join(errs...)
}
