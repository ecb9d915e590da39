package mutate

import (
	"errors"
	"fmt"
	"os"
	"path"
	"strings"

	"sigs.k8s.io/yaml"

	"github.com/kvinject/kvinject/pkg/contract"
)

// Config is the cluster configuration: the defaults a pod and its namespace do not
// set, and the limits every pod is held to. The zero value is not valid; start from
// DefaultConfig.
type Config struct {
	// Vault is the default Key Vault name.
	Vault string `json:"vault,omitempty"`
	// TenantID is the default Entra ID tenant.
	TenantID string `json:"tenantId,omitempty"`
	// Identity is the default AAD Pod Identity selector.
	Identity string `json:"identity,omitempty"`
	// CloudName is the Azure cloud of every vault (AzurePublicCloud, ...).
	CloudName string `json:"cloudName,omitempty"`
	// DriverName is the CSI driver that serves the volume.
	DriverName string `json:"driverName,omitempty"`
	// MountPath is the default mount path.
	MountPath string `json:"mountPath,omitempty"`
	// MaxEntries is the longest alias list a pod may carry.
	MaxEntries int `json:"maxEntries,omitempty"`
}

// DefaultConfig returns the configuration used when nothing is configured.
func DefaultConfig() Config {
	return Config{
		CloudName:  contract.CloudPublic,
		DriverName: contract.DefaultDriverName,
		MountPath:  contract.DefaultMountPath,
		MaxEntries: contract.DefaultMaxObjects,
	}
}

// LoadConfigFile reads a YAML cluster configuration file over c's values: fields the
// file leaves out keep their value in c. Unknown fields are errors.
func LoadConfigFile(c *Config, file string) error {
	b, err := os.ReadFile(file)
	if err != nil {
		return fmt.Errorf("read cluster configuration: %w", err)
	}
	if err := yaml.UnmarshalStrict(b, c); err != nil {
		return fmt.Errorf("cluster configuration %s: %w", file, err)
	}
	return nil
}

// Validate checks every field and returns all problems at once.
func (c Config) Validate() error {
	var errs []error
	if c.Vault != "" {
		if err := contract.ValidateVaultName(c.Vault); err != nil {
			errs = append(errs, fmt.Errorf("vault: %w", err))
		}
	}
	if c.TenantID != "" {
		if err := contract.ValidateTenantID(c.TenantID); err != nil {
			errs = append(errs, fmt.Errorf("tenantId: %w", err))
		}
	}
	if c.Identity != "" {
		if err := contract.ValidateSelector(c.Identity); err != nil {
			errs = append(errs, fmt.Errorf("identity: %w", err))
		}
	}
	if canonical, err := contract.CanonicalCloud(c.CloudName); err != nil {
		errs = append(errs, fmt.Errorf("cloudName: %w", err))
	} else if canonical != c.CloudName {
		errs = append(errs, fmt.Errorf("cloudName: write %q", canonical))
	}
	if err := contract.ValidateDriverName(c.DriverName); err != nil {
		errs = append(errs, fmt.Errorf("driverName: %w", err))
	}
	if err := validateMountPath(c.MountPath); err != nil {
		errs = append(errs, fmt.Errorf("mountPath: %w", err))
	}
	if c.MaxEntries < 1 || c.MaxEntries > contract.MaxObjectsLimit {
		errs = append(errs, fmt.Errorf("maxEntries: %d is not between 1 and %d", c.MaxEntries, contract.MaxObjectsLimit))
	}
	return errors.Join(errs...)
}

// validateMountPath accepts a clean absolute path other than "/".
func validateMountPath(p string) error {
	switch {
	case !strings.HasPrefix(p, "/"):
		return fmt.Errorf("%q is not an absolute path", p)
	case p == "/":
		return fmt.Errorf("%q would hide the container's whole file system", p)
	case path.Clean(p) != p:
		return fmt.Errorf("%q is not a clean path: write %q", p, path.Clean(p))
	case strings.ContainsAny(p, ":\\\n\x00"):
		return fmt.Errorf("%q holds a character not allowed in a mount path (':', '\\', newline)", p)
	case len(p) > 1024:
		return fmt.Errorf("the path is %d characters long; at most 1024 are allowed", len(p))
	}
	return nil
}
