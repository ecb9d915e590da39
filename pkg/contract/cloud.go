package contract

import (
	"fmt"
	"strings"
)

// Cloud names, as written in the cloudName attribute and the webhook's configuration.
const (
	CloudPublic       = "AzurePublicCloud"
	CloudUSGovernment = "AzureUSGovernmentCloud"
	CloudChina        = "AzureChinaCloud"
	// CloudStack is accepted by the Azure provider with an environment file; kvinject
	// refuses it (see CanonicalCloud).
	CloudStack = "AzureStackCloud"
)

// Clouds lists the cloud names kvinject serves, in the order messages name them.
var Clouds = []string{CloudPublic, CloudUSGovernment, CloudChina}

// CanonicalCloud returns the canonical spelling of a cloud name, matched
// case-insensitively; the empty name is AzurePublicCloud, as in the Azure provider.
// AzureStackCloud, and anything else, is an error that both programs report with the
// same words.
func CanonicalCloud(name string) (string, error) {
	n := strings.TrimSpace(name)
	if n == "" {
		return CloudPublic, nil
	}
	for _, c := range Clouds {
		if strings.EqualFold(n, c) {
			return c, nil
		}
	}
	if strings.EqualFold(n, CloudStack) {
		return "", fmt.Errorf("%s is not supported: it needs a custom environment file that kvinject does not read; use %s", CloudStack, strings.Join(Clouds, ", "))
	}
	return "", fmt.Errorf("%q is not a cloud: use %s", truncate(name, 64), strings.Join(Clouds, ", "))
}
