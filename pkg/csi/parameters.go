package csi

import (
	"errors"
	"fmt"

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
