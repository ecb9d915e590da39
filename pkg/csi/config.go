package csi

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/kvinject/kvinject/pkg/identity"
)

// Defaults of Config.
const (
	DefaultDriverName           = "secrets-store.kvinject.io"
	DefaultKubeletRoot          = "/var/lib/kubelet"
	DefaultMetricsAddress       = ":8095"
	DefaultMaxConcurrentFetches = 32
	DefaultTmpfsSize            = "4Mi"
	DefaultPublishTimeout       = 90 * time.Second
)

// Config is the node plugin's configuration. Bind flags into it with BindFlags,
// then call Validate before anything runs; the other methods assume a valid Config.
type Config struct {
	// DriverName is the CSI driver name (the CSIDriver object's name).
	DriverName string
	// NodeID is the node's name, returned by NodeGetInfo and used in events.
	NodeID string
	// KubeletRoot is the kubelet's root directory; target paths must be below it.
	KubeletRoot string
	// Endpoint is the CSI unix socket ("" = <KubeletRoot>/plugins/<DriverName>/csi.sock).
	Endpoint string
	// Register turns on self-registration through <KubeletRoot>/plugins_registry.
	Register bool
	// MetricsAddress serves /metrics and /healthz ("" = off).
	MetricsAddress string
	// Kubeconfig is a kubeconfig file; "" uses the in-cluster configuration when there
	// is one, else runs without an API server (no SecretProviderClass, no events).
	Kubeconfig string
	// MaxConcurrentFetches bounds the Key Vault requests in flight per volume.
	MaxConcurrentFetches int
	// TmpfsSize is the size limit of each volume's tmpfs (a Kubernetes quantity).
	TmpfsSize string
	// PublishTimeout bounds one NodePublishVolume.
	PublishTimeout time.Duration
	// NMIEndpoint is AAD Pod Identity's NMI base URL.
	NMIEndpoint string
	// AzureDialAddress (test only) sends every Azure HTTPS dial to host:port.
	AzureDialAddress string
	// AzureCAFile (test only) is a PEM file of extra CAs trusted for Azure endpoints.
	AzureCAFile string
}

// DefaultConfig returns the configuration of a production DaemonSet.
func DefaultConfig() Config {
	host, _ := os.Hostname()
	return Config{
		DriverName:           DefaultDriverName,
		NodeID:               host,
		KubeletRoot:          DefaultKubeletRoot,
		Register:             true,
		MetricsAddress:       DefaultMetricsAddress,
		MaxConcurrentFetches: DefaultMaxConcurrentFetches,
		TmpfsSize:            DefaultTmpfsSize,
		PublishTimeout:       DefaultPublishTimeout,
		NMIEndpoint:          identity.DefaultNMIEndpoint,
	}
}

// BindFlags binds c's fields to flags on fs, with c's current values as defaults.
func (c *Config) BindFlags(fs *pflag.FlagSet) {
	fs.StringVar(&c.DriverName, "driver-name", c.DriverName, "CSI driver name (the CSIDriver object's name).")
	fs.StringVar(&c.NodeID, "node-id", c.NodeID, "Node name, reported by NodeGetInfo (usually from the downward API spec.nodeName).")
	fs.StringVar(&c.KubeletRoot, "kubelet-root", c.KubeletRoot, "Kubelet root directory; target paths must be its pods/<uid>/volumes/kubernetes.io~csi/<volume>/mount.")
	fs.StringVar(&c.Endpoint, "endpoint", c.Endpoint, "CSI unix socket path or unix:// URL (default <kubelet-root>/plugins/<driver-name>/csi.sock).")
	fs.BoolVar(&c.Register, "register", c.Register, "Register with the kubelet through <kubelet-root>/plugins_registry/<driver-name>-reg.sock.")
	fs.StringVar(&c.MetricsAddress, "metrics-address", c.MetricsAddress, "Address serving /metrics and /healthz; empty turns it off.")
	fs.StringVar(&c.Kubeconfig, "kubeconfig", c.Kubeconfig, "Kubeconfig file (token, token file or client certificate; no exec plugins); empty uses the in-cluster service account when available. The API server serves SecretProviderClass objects and receives pod events.")
	fs.IntVar(&c.MaxConcurrentFetches, "max-concurrent-fetches", c.MaxConcurrentFetches, "Most Key Vault requests in flight per volume.")
	fs.StringVar(&c.TmpfsSize, "tmpfs-size", c.TmpfsSize, "Size limit of each volume's tmpfs.")
	fs.DurationVar(&c.PublishTimeout, "publish-timeout", c.PublishTimeout, "Time limit of one NodePublishVolume.")
	fs.StringVar(&c.NMIEndpoint, "nmi-endpoint", c.NMIEndpoint, "AAD Pod Identity NMI base URL (pod identity mode).")
	fs.StringVar(&c.AzureDialAddress, "azure-dial-address", c.AzureDialAddress, "TEST ONLY: send every Azure HTTPS connection to this host:port (an emulator); host names stay real.")
	fs.StringVar(&c.AzureCAFile, "azure-ca-file", c.AzureCAFile, "TEST ONLY: PEM file of extra CA certificates trusted for Azure endpoints (an emulator's CA).")
}

var driverNameRE = regexp.MustCompile(`^[a-zA-Z][A-Za-z0-9.-]{0,61}[a-zA-Z]$`)

// Validate checks every field and resolves Endpoint's default; it returns all
// problems at once.
func (c *Config) Validate() error {
	var errs []error
	if !driverNameRE.MatchString(c.DriverName) {
		errs = append(errs, fmt.Errorf("--driver-name %q must be 2-63 characters of letters, digits, '.' and '-', starting and ending with a letter", c.DriverName))
	}
	if c.NodeID == "" {
		errs = append(errs, errors.New("--node-id is required"))
	}
	if !filepath.IsAbs(c.KubeletRoot) {
		errs = append(errs, fmt.Errorf("--kubelet-root %q must be an absolute path", c.KubeletRoot))
	} else {
		c.KubeletRoot = filepath.Clean(c.KubeletRoot)
	}
	c.Endpoint = strings.TrimPrefix(c.Endpoint, "unix://")
	if c.Endpoint == "" && filepath.IsAbs(c.KubeletRoot) {
		c.Endpoint = filepath.Join(c.KubeletRoot, "plugins", c.DriverName, "csi.sock")
	}
	if !filepath.IsAbs(c.Endpoint) {
		errs = append(errs, fmt.Errorf("--endpoint %q must be an absolute unix socket path", c.Endpoint))
	}
	if c.MetricsAddress != "" {
		if _, _, err := net.SplitHostPort(c.MetricsAddress); err != nil {
			errs = append(errs, fmt.Errorf("--metrics-address %q: %w", c.MetricsAddress, err))
		}
	}
	if c.MaxConcurrentFetches < 1 || c.MaxConcurrentFetches > 256 {
		errs = append(errs, fmt.Errorf("--max-concurrent-fetches %d must be between 1 and 256", c.MaxConcurrentFetches))
	}
	if _, err := c.TmpfsBytes(); err != nil {
		errs = append(errs, err)
	}
	if c.PublishTimeout <= 0 {
		errs = append(errs, fmt.Errorf("--publish-timeout %s must be positive", c.PublishTimeout))
	}
	if u, err := url.Parse(c.NMIEndpoint); err != nil || u.Scheme != "http" || u.Host == "" {
		errs = append(errs, fmt.Errorf("--nmi-endpoint %q must be an http:// URL", c.NMIEndpoint))
	}
	if c.AzureDialAddress != "" {
		if _, _, err := net.SplitHostPort(c.AzureDialAddress); err != nil {
			errs = append(errs, fmt.Errorf("--azure-dial-address %q: %w", c.AzureDialAddress, err))
		}
	}
	if c.AzureCAFile != "" {
		if _, err := os.Stat(c.AzureCAFile); err != nil {
			errs = append(errs, fmt.Errorf("--azure-ca-file: %w", err))
		}
	}
	return errors.Join(errs...)
}

// TmpfsBytes returns TmpfsSize in bytes: between 64 KiB and 1 GiB.
func (c *Config) TmpfsBytes() (int64, error) {
	n, err := parseSize(c.TmpfsSize)
	if err != nil {
		return 0, fmt.Errorf("--tmpfs-size %q: %w", c.TmpfsSize, err)
	}
	if n < 64<<10 || n > 1<<30 {
		return 0, fmt.Errorf("--tmpfs-size %q must be between 64Ki and 1Gi", c.TmpfsSize)
	}
	return n, nil
}

// RegistrationSocket is the kubelet plugin-registration socket of the driver.
func (c *Config) RegistrationSocket() string {
	return filepath.Join(c.KubeletRoot, "plugins_registry", c.DriverName+"-reg.sock")
}

// parseSize parses a byte count with an optional binary (Ki, Mi, Gi) or decimal (k, M,
// G) suffix, as Kubernetes quantities write sizes.
func parseSize(s string) (int64, error) {
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"Ki", 1 << 10}, {"Mi", 1 << 20}, {"Gi", 1 << 30}, {"k", 1e3}, {"M", 1e6}, {"G", 1e9}} {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSuffix(s, u.suffix), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 || n > (1<<40)/mult {
		return 0, errors.New("not a size such as 4Mi, 512Ki or 1048576")
	}
	return n * mult, nil
}
