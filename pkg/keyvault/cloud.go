package keyvault

import (
	"fmt"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
)

// Cloud is what the node plugin needs to know about one Azure cloud: where Entra ID
// issues tokens and how vault host names end.
type Cloud struct {
	// Name is the canonical cloud name (one of the Cloud* constants).
	Name string
	// Configuration is handed to azidentity and the Key Vault clients; its
	// ActiveDirectoryAuthorityHost is the Entra ID authority (https, trailing slash).
	Configuration cloud.Configuration
	// VaultSuffix is the DNS suffix of vaults: "vault.azure.net" in the public cloud.
	VaultSuffix string
	// VaultResource is the resource (audience) of Key Vault tokens, without "/.default".
	VaultResource string
}

// VaultURL returns the URL of the named vault in c: https://{vault}.{suffix}/.
func (c Cloud) VaultURL(vault string) string {
	return "https://" + vault + "." + c.VaultSuffix + "/"
}

// VaultScope returns the OAuth scope for Key Vault tokens in c.
func (c Cloud) VaultScope() string {
	return c.VaultResource + "/.default"
}

// ErrUnsupportedCloud is wrapped by LookupCloud for a cloud name kvinject cannot serve.
var ErrUnsupportedCloud = fmt.Errorf("%w: unsupported cloudName", ErrInvalidObject)

// LookupCloud returns the cloud named by a cloudName attribute. The name is matched
// case-insensitively, and the empty name is AzurePublicCloud, as in the Azure provider.
// AzureStackCloud needs an environment file the plugin does not read, so it is refused
// with an error saying so.
func LookupCloud(name string) (Cloud, error) {
	switch strings.ToLower(strings.TrimSpace(name)) {
	case "", strings.ToLower(CloudPublic):
		return Cloud{Name: CloudPublic, Configuration: cloud.AzurePublic, VaultSuffix: "vault.azure.net", VaultResource: "https://vault.azure.net"}, nil
	case strings.ToLower(CloudUSGovernment):
		return Cloud{Name: CloudUSGovernment, Configuration: cloud.AzureGovernment, VaultSuffix: "vault.usgovcloudapi.net", VaultResource: "https://vault.usgovcloudapi.net"}, nil
	case strings.ToLower(CloudChina):
		return Cloud{Name: CloudChina, Configuration: cloud.AzureChina, VaultSuffix: "vault.azure.cn", VaultResource: "https://vault.azure.cn"}, nil
	case strings.ToLower(CloudStack):
		return Cloud{}, fmt.Errorf("%w: %s needs a custom environment; kvinject serves %s, %s and %s", ErrUnsupportedCloud, CloudStack, CloudPublic, CloudUSGovernment, CloudChina)
	default:
		return Cloud{}, fmt.Errorf("%w: %q is not a cloud: use %s, %s or %s", ErrUnsupportedCloud, name, CloudPublic, CloudUSGovernment, CloudChina)
	}
}

// ValidateVaultName checks a vault name: 3-24 characters of [0-9A-Za-z-], starting with
// a letter. A vault name becomes a host name, so nothing else may pass.
func ValidateVaultName(name string) error {
	if err := CheckVaultName(name); err != nil {
		return fmt.Errorf("%w: keyvaultName: %w", ErrInvalidObject, err)
	}
	return nil
}

// CheckVaultName checks a Key Vault name: 3-24 characters, letters, digits and '-',
// starting with a letter, ending with a letter or digit, no "--". The error says which
// rule name breaks, for a user to read.
func CheckVaultName(name string) error {
	if len(name) < 3 || len(name) > 24 {
		return fmt.Errorf("%q is not a Key Vault name: it must be 3-24 characters long", name)
	}
	for i := 0; i < len(name); i++ {
		if !isAlnum(name[i]) && name[i] != '-' {
			return fmt.Errorf("%q is not a Key Vault name: it may hold only letters, digits and '-'", name)
		}
	}
	c := name[0]
	if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') || name[len(name)-1] == '-' || strings.Contains(name, "--") {
		return fmt.Errorf("%q is not a Key Vault name: it must start with a letter, end with a letter or digit, and hold no \"--\"", name)
	}
	return nil
}
