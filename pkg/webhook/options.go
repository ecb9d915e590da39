package webhook

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/pflag"

	"github.com/kvinject/kvinject/pkg/mutate"
)

// Options is the whole configuration of the webhook program. Start from NewOptions,
// bind flags with BindFlags, read the cluster configuration file with LoadConfigFile,
// and Validate before Run. internal/program does exactly that for the binary.
type Options struct {
	// Host and Port are where the webhook serves HTTPS (HTTP/1.1 only).
	Host string
	Port int
	// CertDir holds CertName and KeyName (a cert-manager Secret mounts tls.crt and
	// tls.key). They are reloaded when they change on disk.
	CertDir  string
	CertName string
	KeyName  string
	// CertPollInterval is the longest a renewed certificate waits to be served.
	CertPollInterval time.Duration
	// MetricsBindAddress serves Prometheus /metrics ("0" disables it).
	MetricsBindAddress string
	// HealthProbeBindAddress serves /healthz and /readyz ("0" disables it).
	HealthProbeBindAddress string
	// Kubeconfig is a kubeconfig file; empty means in-cluster or $KUBECONFIG.
	Kubeconfig string
	// Config is an optional YAML file with the cluster configuration (mutate.Config).
	// Flags given explicitly win over it.
	Config string
	// ShutdownTimeout bounds how long shutdown waits for in-flight reviews.
	ShutdownTimeout time.Duration
	// Cluster is the cluster configuration: defaults and limits for every pod.
	Cluster mutate.Config
}

// NewOptions returns the configuration of a webhook deployed by the chart.
func NewOptions() *Options {
	return &Options{
		Port:                   9443,
		CertDir:                "/etc/kvinject/tls",
		CertName:               "tls.crt",
		KeyName:                "tls.key",
		CertPollInterval:       5 * time.Second,
		MetricsBindAddress:     ":8080",
		HealthProbeBindAddress: ":8081",
		ShutdownTimeout:        30 * time.Second,
		Cluster:                mutate.DefaultConfig(),
	}
}

// BindFlags binds every field to a flag of fs, with the field's current value as the
// flag's default.
func (o *Options) BindFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.Host, "host", o.Host, "Address the webhook listens on (empty: all).")
	fs.IntVar(&o.Port, "port", o.Port, "HTTPS port of the webhook (HTTP/1.1 only).")
	fs.StringVar(&o.CertDir, "cert-dir", o.CertDir, "Directory holding the serving certificate and key; reloaded when they change.")
	fs.StringVar(&o.CertName, "cert-name", o.CertName, "Certificate file name in --cert-dir.")
	fs.StringVar(&o.KeyName, "key-name", o.KeyName, "Key file name in --cert-dir.")
	fs.DurationVar(&o.CertPollInterval, "cert-poll-interval", o.CertPollInterval, "How often the serving certificate is re-read besides file events.")
	fs.StringVar(&o.MetricsBindAddress, "metrics-bind-address", o.MetricsBindAddress, "Address of the Prometheus /metrics endpoint (0 disables it).")
	fs.StringVar(&o.HealthProbeBindAddress, "health-probe-bind-address", o.HealthProbeBindAddress, "Address of /healthz and /readyz (0 disables them).")
	fs.StringVar(&o.Kubeconfig, "kubeconfig", o.Kubeconfig, "Kubeconfig file (default: in-cluster, or $KUBECONFIG).")
	fs.StringVar(&o.Config, "config", o.Config, "YAML file of the cluster configuration: vault, tenantId, identity, cloudName, driverName, mountPath, maxEntries. Flags given explicitly win over it.")
	fs.DurationVar(&o.ShutdownTimeout, "shutdown-timeout", o.ShutdownTimeout, "How long shutdown waits for in-flight reviews.")
	fs.StringVar(&o.Cluster.Vault, "default-vault", o.Cluster.Vault, "Key Vault used when neither the pod nor its namespace names one.")
	fs.StringVar(&o.Cluster.TenantID, "default-tenant-id", o.Cluster.TenantID, "Entra ID tenant used when neither the pod nor its namespace names one.")
	fs.StringVar(&o.Cluster.Identity, "default-identity", o.Cluster.Identity, "AAD Pod Identity selector used when neither the pod nor its namespace names an identity.")
	fs.StringVar(&o.Cluster.CloudName, "cloud-name", o.Cluster.CloudName, "Azure cloud of the vaults: AzurePublicCloud, AzureUSGovernmentCloud or AzureChinaCloud.")
	fs.StringVar(&o.Cluster.DriverName, "driver-name", o.Cluster.DriverName, "CSI driver that serves the injected volume.")
	fs.StringVar(&o.Cluster.MountPath, "default-mount-path", o.Cluster.MountPath, "Mount path used when the pod does not set kvinject.io/mount-path.")
	fs.IntVar(&o.Cluster.MaxEntries, "max-entries", o.Cluster.MaxEntries, "Longest alias list a pod may carry.")
}

// ConfigFile is the cluster configuration file named by --config, "" for none.
func (o *Options) ConfigFile() string { return o.Config }

// LoadConfigFile reads the cluster configuration file over the current values.
func (o *Options) LoadConfigFile() error {
	return mutate.LoadConfigFile(&o.Cluster, o.Config)
}

// Validate checks every field and returns all problems at once. It changes nothing.
func (o *Options) Validate() error {
	var errs []error
	if o.Port < 1 || o.Port > 65535 {
		errs = append(errs, fmt.Errorf("--port: %d is not a port", o.Port))
	}
	for _, f := range []string{o.CertName, o.KeyName} {
		if _, err := os.Stat(filepath.Join(o.CertDir, f)); err != nil {
			errs = append(errs, fmt.Errorf("serving certificate: %w (mount the cert-manager Secret at --cert-dir)", err))
		}
	}
	for _, a := range []struct{ flag, addr string }{
		{"--metrics-bind-address", o.MetricsBindAddress}, {"--health-probe-bind-address", o.HealthProbeBindAddress},
	} {
		if a.addr == "0" {
			continue
		}
		if _, _, err := net.SplitHostPort(a.addr); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", a.flag, err))
		}
	}
	if o.CertPollInterval <= 0 {
		errs = append(errs, fmt.Errorf("--cert-poll-interval: %v is not positive", o.CertPollInterval))
	}
	if o.ShutdownTimeout <= 0 {
		errs = append(errs, fmt.Errorf("--shutdown-timeout: %v is not positive", o.ShutdownTimeout))
	}
	if err := o.Cluster.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("cluster configuration: %w", err))
	}
	return errors.Join(errs...)
}
