package keyvault

import (
	"errors"
	"fmt"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"

	"github.com/kvinject/kvinject/pkg/contract"
)

// Cloud is what the node plugin needs to know about one Azure cloud: where Entra ID
// issues tokens and how vault host names end.
type Cloud struct {
	// Name is the canonical cloud name (one of contract.Clouds).
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
var ErrUnsupportedCloud = errors.New("unsupported cloudName")

// LookupCloud returns the cloud named by a cloudName attribute, spelled as
// contract.CanonicalCloud accepts it (so AzureStackCloud is refused with the words the
// webhook uses).
func LookupCloud(name string) (Cloud, error) {
	canonical, err := contract.CanonicalCloud(name)
	if err != nil {
		return Cloud{}, fmt.Errorf("%w: %w", ErrUnsupportedCloud, err)
	}
	switch canonical {
	case contract.CloudUSGovernment:
		return Cloud{Name: canonical, Configuration: cloud.AzureGovernment, VaultSuffix: "vault.usgovcloudapi.net", VaultResource: "https://vault.usgovcloudapi.net"}, nil
	case contract.CloudChina:
		return Cloud{Name: canonical, Configuration: cloud.AzureChina, VaultSuffix: "vault.azure.cn", VaultResource: "https://vault.azure.cn"}, nil
	default:
		return Cloud{Name: contract.CloudPublic, Configuration: cloud.AzurePublic, VaultSuffix: "vault.azure.net", VaultResource: "https://vault.azure.net"}, nil
	}
}
