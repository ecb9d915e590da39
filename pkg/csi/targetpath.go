package csi

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// csiVolumesDir is the kubelet's directory of a pod's CSI volumes, below pods/<uid>/.
const csiVolumesDir = "volumes/kubernetes.io~csi"

// KubeletTargetPath is the path the kubelet asks a CSI driver to publish a pod's
// volume at: <root>/pods/<uid>/volumes/kubernetes.io~csi/<volume>/mount.
func KubeletTargetPath(root, podUID, volume string) string {
	return filepath.Join(root, "pods", podUID, csiVolumesDir, volume, "mount")
}

// checkTargetPath verifies that target is the kubelet's path for the pod podUID under
// root (CVE-2020-8568: a request must not make the driver write into another pod's
// volume or anywhere else), and that no directory on the way is a symlink. An empty
// podUID accepts any pod (NodeUnpublishVolume, which has no pod information).
func checkTargetPath(root, podUID, target string) error {
	if !filepath.IsAbs(target) || filepath.Clean(target) != target {
		return fmt.Errorf("target path %q is not a clean absolute path", target)
	}
	rel, err := filepath.Rel(root, target)
	if err != nil || strings.HasPrefix(rel, "..") {
		return fmt.Errorf("target path %q is not under the kubelet directory %s", target, root)
	}
	parts := strings.Split(rel, string(filepath.Separator))
	// pods <uid> volumes kubernetes.io~csi <volume> mount
	if len(parts) != 6 || parts[0] != "pods" || parts[2] != "volumes" || parts[3] != "kubernetes.io~csi" || parts[5] != "mount" {
		return fmt.Errorf("target path %q is not a kubelet CSI volume path (%s)", target, KubeletTargetPath(root, "<pod-uid>", "<volume>"))
	}
	if !validPathElement(parts[1]) || !validPathElement(parts[4]) {
		return fmt.Errorf("target path %q has an invalid pod UID or volume name", target)
	}
	if podUID != "" && parts[1] != podUID {
		return fmt.Errorf("target path %q does not belong to pod UID %s", target, podUID)
	}
	// No symlink on the way from root: the kubelet creates plain directories.
	for p := filepath.Dir(target); p != root && len(p) > len(root); p = filepath.Dir(p) {
		fi, err := os.Lstat(p)
		if err != nil {
			if os.IsNotExist(err) {
				continue
			}
			return fmt.Errorf("target path %q: %w", target, err)
		}
		if fi.Mode()&os.ModeSymlink != 0 || !fi.IsDir() {
			return fmt.Errorf("target path %q: %s is not a plain directory", target, p)
		}
	}
	return nil
}

func validPathElement(s string) bool {
	if s == "" || s == "." || s == ".." || len(s) > 253 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '-' || c == '.' || c == '_' || c == '~') {
			return false
		}
	}
	return true
}
