package csi

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/kvinject/kvinject/pkg/contract"
	"github.com/kvinject/kvinject/pkg/identity"
	"github.com/kvinject/kvinject/pkg/keyvault"
)

// Defaults of Options.
const (
	DefaultKubeletRoot            = "/var/lib/kubelet"
	DefaultMetricsBindAddress     = ":8095"
	DefaultHealthProbeBindAddress = ":8096"
	DefaultMaxConcurrentFetches   = 64
	DefaultTmpfsSize              = "4Mi"
	DefaultPublishTimeout         = 90 * time.Second
	DefaultMaxBytesInFlight       = "64Mi"
)

// Options is the node plugin's configuration. Bind flags into it with BindFlags and
// Validate it before Run; the other methods assume valid Options.
type Options struct {
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
	// MetricsBindAddress serves Prometheus /metrics ("0" = off).
	MetricsBindAddress string
	// HealthProbeBindAddress serves /healthz and /readyz, which probe the CSI socket
	// ("0" = off).
	HealthProbeBindAddress string
	// Kubeconfig is a kubeconfig file; "" uses the in-cluster configuration when there
	// is one, else runs without an API server (no SecretProviderClass, no events).
	Kubeconfig string
	// MaxConcurrentFetches bounds the Key Vault requests in flight per volume.
	MaxConcurrentFetches int
	// MaxObjectsPerVolume bounds the objects a volume may list (the webhook's
	// maxEntries by default: contract.DefaultMaxObjects).
	MaxObjectsPerVolume int
	// MaxRequestsInFlight bounds the Key Vault requests in flight on the node, every
	// volume together; the connection pool keeps as many idle connections.
	MaxRequestsInFlight int
	// MaxBytesInFlight bounds the bytes of files fetched and not yet written, node-wide
	// (a Kubernetes quantity).
	MaxBytesInFlight string
	// RotationPollInterval is how often a republished volume reads Key Vault (with up
	// to a tenth of jitter); republishes in between read nothing.
	RotationPollInterval time.Duration
	// TmpfsSize is the size limit of each volume's tmpfs (a Kubernetes quantity).
	TmpfsSize string
	// PublishTimeout bounds one NodePublishVolume.
	PublishTimeout time.Duration
	// NMIEndpoint is AAD Pod Identity's NMI base URL.
	NMIEndpoint string
	// TokenAudience is the audience of the service-account token exchanged for a
	// workload identity's token: the CSIDriver's tokenRequests audience.
	TokenAudience string
}

// NewOptions returns the configuration of a production DaemonSet.
func NewOptions() *Options {
	host, _ := os.Hostname()
	return &Options{
		DriverName:             contract.DefaultDriverName,
		NodeID:                 host,
		KubeletRoot:            DefaultKubeletRoot,
		Register:               true,
		MetricsBindAddress:     DefaultMetricsBindAddress,
		HealthProbeBindAddress: DefaultHealthProbeBindAddress,
		MaxConcurrentFetches:   DefaultMaxConcurrentFetches,
		MaxObjectsPerVolume:    contract.DefaultMaxObjects,
		MaxRequestsInFlight:    keyvault.DefaultMaxRequestsInFlight,
		MaxBytesInFlight:       DefaultMaxBytesInFlight,
		RotationPollInterval:   DefaultRotationPollInterval,
		TmpfsSize:              DefaultTmpfsSize,
		PublishTimeout:         DefaultPublishTimeout,
		NMIEndpoint:            identity.DefaultNMIEndpoint,
		TokenAudience:          contract.DefaultTokenAudience,
	}
}

// BindFlags binds o's fields to flags on fs, with o's current values as defaults.
func (o *Options) BindFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.DriverName, "driver-name", o.DriverName, "CSI driver name (the CSIDriver object's name).")
	fs.StringVar(&o.NodeID, "node-id", o.NodeID, "Node name, reported by NodeGetInfo (usually from the downward API spec.nodeName).")
	fs.StringVar(&o.KubeletRoot, "kubelet-root", o.KubeletRoot, "Kubelet root directory; target paths must be its pods/<uid>/volumes/kubernetes.io~csi/<volume>/mount.")
	fs.StringVar(&o.Endpoint, "endpoint", o.Endpoint, "CSI unix socket path or unix:// URL (default <kubelet-root>/plugins/<driver-name>/csi.sock).")
	fs.BoolVar(&o.Register, "register", o.Register, "Register with the kubelet through <kubelet-root>/plugins_registry/<driver-name>-reg.sock.")
	fs.StringVar(&o.MetricsBindAddress, "metrics-bind-address", o.MetricsBindAddress, "Address of the Prometheus /metrics endpoint (0 disables it).")
	fs.StringVar(&o.HealthProbeBindAddress, "health-probe-bind-address", o.HealthProbeBindAddress, "Address of /healthz and /readyz, which answer only when the CSI socket does (0 disables them).")
	fs.StringVar(&o.Kubeconfig, "kubeconfig", o.Kubeconfig, "Kubeconfig file (token, token file or client certificate; no exec plugins); empty uses the in-cluster service account when available. The API server serves SecretProviderClass objects and receives pod events.")
	fs.IntVar(&o.MaxConcurrentFetches, "max-concurrent-fetches", o.MaxConcurrentFetches, "Most Key Vault requests in flight per volume.")
	fs.IntVar(&o.MaxObjectsPerVolume, "max-objects-per-volume", o.MaxObjectsPerVolume, "Most Key Vault objects a volume may list (the webhook's maxEntries by default); checked before any token or Key Vault request.")
	fs.IntVar(&o.MaxRequestsInFlight, "max-requests-in-flight", o.MaxRequestsInFlight, "Most Key Vault requests in flight on the node, every volume together.")
	fs.StringVar(&o.MaxBytesInFlight, "max-bytes-in-flight", o.MaxBytesInFlight, "Most bytes of fetched files held before they are written, node-wide.")
	fs.DurationVar(&o.RotationPollInterval, "rotation-poll-interval", o.RotationPollInterval, "How often a republished volume reads Key Vault (with up to a tenth of jitter); the kubelet's republishes in between read nothing.")
	fs.StringVar(&o.TmpfsSize, "tmpfs-size", o.TmpfsSize, "Size limit of each volume's tmpfs.")
	fs.DurationVar(&o.PublishTimeout, "publish-timeout", o.PublishTimeout, "Time limit of one NodePublishVolume.")
	fs.StringVar(&o.NMIEndpoint, "nmi-endpoint", o.NMIEndpoint, "AAD Pod Identity NMI base URL (pod identity mode).")
	fs.StringVar(&o.TokenAudience, "token-audience", o.TokenAudience, "Audience of the service-account token exchanged for a workload identity's token; must equal the CSIDriver's tokenRequests audience.")
}

// Validate checks every field and returns all problems at once. It changes nothing.
func (o *Options) Validate() error {
	var errs []error
	if err := contract.ValidateDriverName(o.DriverName); err != nil {
		errs = append(errs, fmt.Errorf("--driver-name: %w", err))
	}
	if o.NodeID == "" {
		errs = append(errs, errors.New("--node-id is required"))
	}
	if !filepath.IsAbs(o.KubeletRoot) {
		errs = append(errs, fmt.Errorf("--kubelet-root %q must be an absolute path", o.KubeletRoot))
	} else if !filepath.IsAbs(o.endpoint()) {
		errs = append(errs, fmt.Errorf("--endpoint %q must be an absolute unix socket path", o.Endpoint))
	}
	for _, a := range []struct{ flag, addr string }{
		{"--metrics-bind-address", o.MetricsBindAddress}, {"--health-probe-bind-address", o.HealthProbeBindAddress},
	} {
		if a.addr == "0" {
			continue
		}
		if _, _, err := net.SplitHostPort(a.addr); err != nil {
			errs = append(errs, fmt.Errorf("%s %q: %w", a.flag, a.addr, err))
		}
	}
	if o.MaxConcurrentFetches < 1 || o.MaxConcurrentFetches > 256 {
		errs = append(errs, fmt.Errorf("--max-concurrent-fetches %d must be between 1 and 256", o.MaxConcurrentFetches))
	}
	if o.MaxObjectsPerVolume < 1 || o.MaxObjectsPerVolume > contract.MaxObjectsLimit {
		errs = append(errs, fmt.Errorf("--max-objects-per-volume %d must be between 1 and %d", o.MaxObjectsPerVolume, contract.MaxObjectsLimit))
	}
	if o.MaxRequestsInFlight < 1 || o.MaxRequestsInFlight > 4096 {
		errs = append(errs, fmt.Errorf("--max-requests-in-flight %d must be between 1 and 4096", o.MaxRequestsInFlight))
	}
	if n, err := parseSize(o.MaxBytesInFlight); err != nil || n < 1<<20 {
		errs = append(errs, fmt.Errorf("--max-bytes-in-flight %q must be a size of at least 1Mi, such as 64Mi", o.MaxBytesInFlight))
	}
	if o.RotationPollInterval < time.Second {
		errs = append(errs, fmt.Errorf("--rotation-poll-interval %s must be at least 1s", o.RotationPollInterval))
	}
	if _, err := o.TmpfsBytes(); err != nil {
		errs = append(errs, err)
	}
	if o.PublishTimeout <= 0 {
		errs = append(errs, fmt.Errorf("--publish-timeout %s must be positive", o.PublishTimeout))
	}
	if u, err := url.Parse(o.NMIEndpoint); err != nil || u.Scheme != "http" || u.Host == "" {
		errs = append(errs, fmt.Errorf("--nmi-endpoint %q must be an http:// URL", o.NMIEndpoint))
	}
	if strings.TrimSpace(o.TokenAudience) == "" {
		errs = append(errs, errors.New("--token-audience must not be empty"))
	}
	return errors.Join(errs...)
}

// kubeletRoot is KubeletRoot, cleaned.
func (o *Options) kubeletRoot() string { return filepath.Clean(o.KubeletRoot) }

// endpoint is the CSI socket path: Endpoint without "unix://", or its default.
func (o *Options) endpoint() string {
	if e := strings.TrimPrefix(o.Endpoint, "unix://"); e != "" {
		return e
	}
	return filepath.Join(o.kubeletRoot(), "plugins", o.DriverName, "csi.sock")
}

// TmpfsBytes returns TmpfsSize in bytes: between 64 KiB and 1 GiB.
func (o *Options) TmpfsBytes() (int64, error) {
	n, err := parseSize(o.TmpfsSize)
	if err != nil {
		return 0, fmt.Errorf("--tmpfs-size %q: %w", o.TmpfsSize, err)
	}
	if n < 64<<10 || n > 1<<30 {
		return 0, fmt.Errorf("--tmpfs-size %q must be between 64Ki and 1Gi", o.TmpfsSize)
	}
	return n, nil
}

// RegistrationSocket is the kubelet plugin-registration socket of the driver.
func (o *Options) RegistrationSocket() string {
	return filepath.Join(o.kubeletRoot(), "plugins_registry", o.DriverName+"-reg.sock")
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
