package csi

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/kvinject/kvinject/pkg/contract"
	"github.com/kvinject/kvinject/pkg/identity"
	"github.com/kvinject/kvinject/pkg/keyvault"
)

// Parameters are a volume's Key Vault parameters: the Azure provider's
// SecretProviderClass parameters, parsed and validated.
type Parameters struct {
	Vault    string
	Cloud    keyvault.Cloud
	Objects  []contract.Object
	Identity identity.Attributes
}

// ParseParameters parses and validates the Azure provider's parameters (the inline
// volume's attributes or a SecretProviderClass's spec.parameters). Keys it does not
// know are ignored, as the Azure provider does (the kubelet adds its own). Errors wrap
// ErrInvalidVolume and never quote the service-account tokens. maxObjects bounds the
// objects (--max-objects-per-volume); everything is checked before any token or Key
// Vault request.
func ParseParameters(p map[string]string, maxObjects int) (Parameters, error) {
	if err := checkParameterKeys(p); err != nil {
		return Parameters{}, err
	}
	out := Parameters{
		Vault: p[contract.AttrKeyVaultName],
		Identity: identity.Attributes{
			TenantID:               p[contract.AttrTenantID],
			ClientID:               p[contract.AttrClientID],
			UsePodIdentity:         p[contract.AttrUsePodIdentity],
			UseVMManagedIdentity:   p[contract.AttrUseVMManagedIdentity],
			UserAssignedIdentityID: p[contract.AttrUserAssignedIdentityID],
		},
	}
	if out.Vault == "" {
		return Parameters{}, fmt.Errorf("%w: %s is required", ErrInvalidVolume, contract.AttrKeyVaultName)
	}
	if err := contract.ValidateVaultName(out.Vault); err != nil {
		return Parameters{}, fmt.Errorf("%w: %w", ErrInvalidVolume, err)
	}
	c, err := keyvault.LookupCloud(p[contract.AttrCloudName])
	if err != nil {
		return Parameters{}, fmt.Errorf("%w: %s: %w", ErrInvalidVolume, contract.AttrCloudName, err)
	}
	out.Cloud = c
	objs, err := contract.ParseObjects(p[contract.AttrObjects], maxObjects)
	if errors.Is(err, contract.ErrTooManyObjects) {
		return Parameters{}, fmt.Errorf("%w: %s: %w (the node plugin's --max-objects-per-volume, the chart's csi.maxObjectsPerVolume); split the objects over several volumes", ErrInvalidVolume, contract.AttrObjects, err)
	}
	if err != nil {
		return Parameters{}, fmt.Errorf("%w: %s: %w", ErrInvalidVolume, contract.AttrObjects, err)
	}
	for _, o := range objs {
		// ParseObjects validates aliases; names used as file names need the same check.
		if err := ValidateFileName(o.FileName()); err != nil {
			return Parameters{}, fmt.Errorf("%w: object %q: %w", ErrInvalidVolume, o.Name, err)
		}
	}
	out.Objects = objs
	return out, nil
}

// knownParameters are the parameters kvinject reads (or refuses with its own message:
// the node's managed identity).
var knownParameters = map[string]bool{
	contract.AttrKeyVaultName: true, contract.AttrTenantID: true, contract.AttrCloudName: true,
	contract.AttrUsePodIdentity: true, contract.AttrClientID: true, contract.AttrObjects: true,
	contract.AttrUseVMManagedIdentity: true, contract.AttrUserAssignedIdentityID: true,
	contract.AttrSecretProviderClass: true,
}

// IgnoredParameters are the Azure provider's parameters that cannot change the mounted
// files, which kvinject accepts and ignores, as the provider itself does (docs list
// them): they once scoped the management-plane lookup of the vault, which neither
// makes.
var IgnoredParameters = []string{"resourceGroup", "subscriptionId"}

// unsupportedParameters are the Azure provider's parameters kvinject does not honour,
// with what to do instead.
var unsupportedParameters = map[string]string{
	"useAzureTokenProxy": "kvinject exchanges the pod's service-account token with Entra ID itself; remove useAzureTokenProxy and set clientID (workload identity)",
	"cloudEnvFileName":   "it configures AzureStackCloud, which kvinject does not serve; use cloudName with a public or sovereign cloud",
}

// kubeletPrefix starts the keys the kubelet adds to a volume context.
const kubeletPrefix = "csi.storage.k8s.io/"

// checkParameterKeys refuses a parameter kvinject would otherwise ignore: one it does
// not support, or one it does not know (a typo, or a newer provider's). Nothing is
// silently ignored but IgnoredParameters.
func checkParameterKeys(p map[string]string) error {
	var unknown []string
	for k := range p {
		switch {
		case knownParameters[k], strings.HasPrefix(k, kubeletPrefix), slices.Contains(IgnoredParameters, k):
		case unsupportedParameters[k] != "":
			return fmt.Errorf("%w: %s is not supported: %s", ErrInvalidVolume, k, unsupportedParameters[k])
		default:
			unknown = append(unknown, k)
		}
	}
	if len(unknown) == 0 {
		return nil
	}
	sort.Strings(unknown)
	more := ""
	if len(unknown) > 5 {
		more = fmt.Sprintf(" and %d more", len(unknown)-5)
		unknown = unknown[:5]
	}
	quoted := make([]string, len(unknown))
	for i, k := range unknown {
		quoted[i] = strconv.Quote(truncateKey(k))
	}
	return fmt.Errorf("%w: unknown parameter %s%s: kvinject reads keyvaultName, tenantId, cloudName, usePodIdentity, clientID and objects; check the spelling, or remove it", ErrInvalidVolume, strings.Join(quoted, ", "), more)
}

// truncateKey bounds a hostile key in a message.
func truncateKey(k string) string {
	if len(k) > 64 {
		return k[:64] + "..."
	}
	return k
}
