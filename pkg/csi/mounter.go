package csi

import (
	"errors"
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
	mountutils "k8s.io/mount-utils"
)

// Mounter mounts and unmounts the tmpfs that backs a volume. Implementations are safe
// for concurrent use on different paths.
type Mounter interface {
	// MountTmpfs mounts a new tmpfs limited to sizeBytes at target (an existing
	// directory), nosuid, nodev, noexec, root directory mode 0755.
	MountTmpfs(target string, sizeBytes int64) error
	// Unmount unmounts target; unmounting a path that is not a mount point is an error.
	Unmount(target string) error
	// IsMountPoint reports whether target is a mount point; a missing target is not.
	IsMountPoint(target string) (bool, error)
}

// NewMounter returns the Mounter of the running system: mount(2) and umount(2)
// directly, so the plugin's image needs no mount binary, and /proc/self/mountinfo for
// mount point checks.
func NewMounter() Mounter {
	return systemMounter{mi: mountutils.New("")}
}

type systemMounter struct {
	mi mountutils.Interface
}

func (m systemMounter) MountTmpfs(target string, sizeBytes int64) error {
	data := "size=" + strconv.FormatInt(sizeBytes, 10) + ",mode=0755"
	if err := unix.Mount("tmpfs", target, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, data); err != nil {
		return fmt.Errorf("mount tmpfs at %s: %w", target, err)
	}
	return nil
}

func (m systemMounter) Unmount(target string) error {
	if err := unix.Unmount(target, 0); err != nil {
		return fmt.Errorf("unmount %s: %w", target, err)
	}
	return nil
}

func (m systemMounter) IsMountPoint(target string) (bool, error) {
	ok, err := m.mi.IsMountPoint(target)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	return ok, err
}
