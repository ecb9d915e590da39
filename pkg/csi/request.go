package csi

import (
	"errors"
	"fmt"
	"strconv"

	"github.com/container-storage-interface/spec/lib/go/csi"

	"github.com/kvinject/kvinject/pkg/contract"
)

// ErrInvalidVolume is wrapped by every error of the volume's parameters; it maps to
// codes.InvalidArgument.
var ErrInvalidVolume = errors.New("invalid volume")

// PodInfo is the pod a volume is published for, from the kubelet's volume context.
type PodInfo struct {
	Name, Namespace, UID, ServiceAccount string
}

// validatePublish checks the request's required fields.
func validatePublish(req *csi.NodePublishVolumeRequest) error {
	switch {
	case req.GetVolumeId() == "":
		return fmt.Errorf("%w: volume_id is required", ErrInvalidVolume)
	case req.GetTargetPath() == "":
		return fmt.Errorf("%w: target_path is required", ErrInvalidVolume)
	case req.GetVolumeCapability() == nil:
		return fmt.Errorf("%w: volume_capability is required", ErrInvalidVolume)
	case req.GetVolumeCapability().GetMount() == nil:
		return fmt.Errorf("%w: only mount volumes are supported, not block", ErrInvalidVolume)
	case !req.GetReadonly():
		return fmt.Errorf("%w: the volume must be read-only; set readOnly: true on the CSI volume", ErrInvalidVolume)
	case req.GetVolumeContext()[contract.ContextEphemeral] == "false":
		return fmt.Errorf("%w: kvinject serves inline (ephemeral) volumes only, not a PersistentVolume; use a csi volume in the pod spec", ErrInvalidVolume)
	}
	return nil
}

// podInfo reads the pod from the kubelet's volume context (podInfoOnMount).
func podInfo(vc map[string]string) (PodInfo, error) {
	p := PodInfo{
		Name:           vc[contract.ContextPodName],
		Namespace:      vc[contract.ContextPodNamespace],
		UID:            vc[contract.ContextPodUID],
		ServiceAccount: vc[contract.ContextServiceAccount],
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
