package csi

import (
	"errors"
	"fmt"
	"strconv"

	"github.com/container-storage-interface/spec/lib/go/csi"

	"github.com/kvinject/kvinject/pkg/identity"
	"github.com/kvinject/kvinject/pkg/keyvault"
)

// ErrInvalidVolume is wrapped by every error of the volume's parameters; it maps to
// codes.InvalidArgument.
var ErrInvalidVolume = errors.New("invalid volume")

// PodInfo is the pod a volume is published for, from the kubelet's volume context.
type PodInfo struct {
	Name, Namespace, UID, ServiceAccount string
}

// Parameters are a volume's Key Vault parameters: the Azure provider's
// SecretProviderClass parameters, parsed and validated.
type Parameters struct {
	Vault    string
	Cloud    keyvault.Cloud
	Objects  []keyvault.Object
	Identity identity.Attributes
}

// ParseParameters parses and validates the Azure provider's parameters (the inline
// volume's attributes or a SecretProviderClass's spec.parameters). Keys it does not
// know are ignored, as the Azure provider does (the kubelet adds its own). Errors wrap
// ErrInvalidVolume and never quote the service-account tokens.
func ParseParameters(p map[string]string) (Parameters, error) {
	out := Parameters{
		Vault: p[keyvault.AttrKeyVaultName],
		Identity: identity.Attributes{
			TenantID:               p[keyvault.AttrTenantID],
			ClientID:               p[keyvault.AttrClientID],
			UsePodIdentity:         p[keyvault.AttrUsePodIdentity],
			UseVMManagedIdentity:   p[keyvault.AttrUseVMManagedIdentity],
			UserAssignedIdentityID: p[keyvault.AttrUserAssignedIdentityID],
		},
	}
	if out.Vault == "" {
		return Parameters{}, fmt.Errorf("%w: %s is required", ErrInvalidVolume, keyvault.AttrKeyVaultName)
	}
	if err := keyvault.ValidateVaultName(out.Vault); err != nil {
		return Parameters{}, fmt.Errorf("%w: %w", ErrInvalidVolume, err)
	}
	c, err := keyvault.LookupCloud(p[keyvault.AttrCloudName])
	if err != nil {
		return Parameters{}, fmt.Errorf("%w: %s: %w", ErrInvalidVolume, keyvault.AttrCloudName, err)
	}
	out.Cloud = c
	objs, err := keyvault.ParseObjects(p[keyvault.AttrObjects])
	if err != nil {
		return Parameters{}, fmt.Errorf("%w: %s: %w", ErrInvalidVolume, keyvault.AttrObjects, err)
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

// podInfo reads the pod from the kubelet's volume context (podInfoOnMount).
func podInfo(vc map[string]string) (PodInfo, error) {
	p := PodInfo{
		Name:           vc[identity.ContextPodName],
		Namespace:      vc[identity.ContextPodNamespace],
		UID:            vc[identity.ContextPodUID],
		ServiceAccount: vc[identity.ContextServiceAccount],
	}
	if p.Name == "" || p.Namespace == "" || p.UID == "" {
		return PodInfo{}, fmt.Errorf("%w: the volume context lacks the pod's name, namespace or UID; set podInfoOnMount: true in the CSIDriver", ErrInvalidVolume)
	}
	if !validPathElement(p.UID) {
		return PodInfo{}, fmt.Errorf("%w: the pod UID %q is not valid", ErrInvalidVolume, p.UID)
	}
	return p, nil
}

// mountGroup returns the group ID from the capability's volume_mount_group (the pod's
// fsGroup), or -1 when there is none.
func mountGroup(c *csi.VolumeCapability) (int, error) {
	g := c.GetMount().GetVolumeMountGroup()
	if g == "" {
		return -1, nil
	}
	n, err := strconv.ParseUint(g, 10, 31)
	if err != nil {
		return 0, fmt.Errorf("%w: volume_mount_group %q is not a group ID", ErrInvalidVolume, g)
	}
	return int(n), nil
}
