package emulator

import "strings"

// Cloud names the host names of one Azure cloud.
type Cloud struct {
	// Name is the cloud name used in seeds (AzurePublicCloud, ...).
	Name string
	// VaultSuffix is the Key Vault DNS suffix, such as "vault.azure.net".
	VaultSuffix string
	// LoginHost is the Entra ID authority host, such as "login.microsoftonline.com".
	LoginHost string
}

// The clouds the emulator serves.
var (
	PublicCloud = Cloud{Name: "AzurePublicCloud", VaultSuffix: "vault.azure.net", LoginHost: "login.microsoftonline.com"}
	USGovCloud  = Cloud{Name: "AzureUSGovernmentCloud", VaultSuffix: "vault.usgovcloudapi.net", LoginHost: "login.microsoftonline.us"}
	ChinaCloud  = Cloud{Name: "AzureChinaCloud", VaultSuffix: "vault.azure.cn", LoginHost: "login.chinacloudapi.cn"}
)

var clouds = []Cloud{PublicCloud, USGovCloud, ChinaCloud}

// Resource is the Key Vault token audience of the cloud, "https://vault.azure.net".
func (c Cloud) Resource() string { return "https://" + c.VaultSuffix }

// cloudByName accepts the seed's cloud names case-insensitively; "" is the public cloud.
func cloudByName(name string) (Cloud, bool) {
	if name == "" {
		return PublicCloud, true
	}
	for _, c := range clouds {
		if strings.EqualFold(c.Name, name) {
			return c, true
		}
	}
	return Cloud{}, false
}

// vaultHost splits a Key Vault host name into vault name and cloud.
func vaultHost(host string) (string, Cloud, bool) {
	for _, c := range clouds {
		if name, ok := strings.CutSuffix(host, "."+c.VaultSuffix); ok && name != "" && !strings.Contains(name, ".") {
			return strings.ToLower(name), c, true
		}
	}
	return "", Cloud{}, false
}

// loginHost reports whether host is an Entra ID authority host.
func loginHost(host string) (Cloud, bool) {
	for _, c := range clouds {
		if host == c.LoginHost {
			return c, true
		}
	}
	return Cloud{}, false
}
