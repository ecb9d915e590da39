package mutate

import (
	"errors"
	"fmt"
	"os"
	"path"
	"strings"

	"sigs.k8s.io/yaml"

	"github.com/kvinject/kvinject/pkg/keyvault"
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
		CloudName:  DefaultCloudName,
		DriverName: DefaultDriverName,
		MountPath:  DefaultMountPath,
		MaxEntries: DefaultMaxEntries,
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
		if err := keyvault.CheckVaultName(c.Vault); err != nil {
			errs = append(errs, fmt.Errorf("vault: %w", err))
		}
	}
	if c.TenantID != "" {
		if err := validateTenant(c.TenantID); err != nil {
			errs = append(errs, fmt.Errorf("tenantId: %w", err))
		}
	}
	if c.Identity != "" {
		if err := validateSelector(c.Identity); err != nil {
			errs = append(errs, fmt.Errorf("identity: %w", err))
		}
	}
	switch c.CloudName {
	case keyvault.CloudPublic, keyvault.CloudUSGovernment, keyvault.CloudChina, keyvault.CloudStack:
	default:
		errs = append(errs, fmt.Errorf("cloudName: %q is not a cloud: use %s, %s, %s or %s", c.CloudName,
			keyvault.CloudPublic, keyvault.CloudUSGovernment, keyvault.CloudChina, keyvault.CloudStack))
	}
	if err := validateDriverName(c.DriverName); err != nil {
		errs = append(errs, fmt.Errorf("driverName: %w", err))
	}
	if err := validateMountPath(c.MountPath); err != nil {
		errs = append(errs, fmt.Errorf("mountPath: %w", err))
	}
	if c.MaxEntries < 1 || c.MaxEntries > 1000 {
		errs = append(errs, fmt.Errorf("maxEntries: %d is not between 1 and 1000", c.MaxEntries))
	}
	return errors.Join(errs...)
}

// validateTenant accepts a GUID or a domain name (contoso.onmicrosoft.com).
func validateTenant(s string) error {
	if isGUID(s) {
		return nil
	}
	if len(s) > 253 || !strings.Contains(s, ".") {
		return fmt.Errorf("%q is not a tenant: use the tenant's GUID or its domain name", s)
	}
	for _, label := range strings.Split(s, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return fmt.Errorf("%q is not a tenant: use the tenant's GUID or its domain name", s)
		}
		for i := 0; i < len(label); i++ {
			if !isAlnum(label[i]) && label[i] != '-' {
				return fmt.Errorf("%q is not a tenant: use the tenant's GUID or its domain name", s)
			}
		}
	}
	return nil
}

// validateClientID accepts a GUID, the form of every Entra ID application client ID.
func validateClientID(s string) error {
	if !isGUID(s) {
		return fmt.Errorf("%q is not a client ID: use the identity's application (client) ID, a GUID like 00000000-0000-0000-0000-000000000000", s)
	}
	return nil
}

// validateSelector checks an AAD Pod Identity selector, which becomes a label value.
func validateSelector(s string) error {
	if len(s) > 63 {
		return fmt.Errorf("%q is not a selector: it becomes the %s label, whose value is at most 63 characters", s, LabelPodIdentity)
	}
	if s == "" {
		return fmt.Errorf("the selector is empty")
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !isAlnum(c) && c != '-' && c != '_' && c != '.' {
			return fmt.Errorf("%q is not a selector: it becomes the %s label, whose value holds only letters, digits, '-', '_' and '.'", s, LabelPodIdentity)
		}
	}
	if !isAlnum(s[0]) || !isAlnum(s[len(s)-1]) {
		return fmt.Errorf("%q is not a selector: it becomes the %s label, whose value starts and ends with a letter or digit", s, LabelPodIdentity)
	}
	return nil
}

// validateDriverName checks a CSI driver name: a DNS subdomain of at most 63 characters.
func validateDriverName(s string) error {
	if s == "" || len(s) > 63 {
		return fmt.Errorf("%q is not a CSI driver name: it must be 1-63 characters", s)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z') && !(c >= '0' && c <= '9') && c != '-' && c != '.' {
			return fmt.Errorf("%q is not a CSI driver name: use lower-case letters, digits, '-' and '.'", s)
		}
	}
	if !isAlnum(s[0]) || !isAlnum(s[len(s)-1]) {
		return fmt.Errorf("%q is not a CSI driver name: it must start and end with a letter or digit", s)
	}
	return nil
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

func isGUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		switch i {
		case 8, 13, 18, 23:
			if s[i] != '-' {
				return false
			}
		default:
			if !isHex(s[i]) {
				return false
			}
		}
	}
	return true
}

func isLetter(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }
func isAlnum(c byte) bool  { return isLetter(c) || c >= '0' && c <= '9' }
func isHex(c byte) bool    { return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F' }
