package csi

import (
	"encoding/json"
	"os"
	"path/filepath"

	"k8s.io/klog/v2"
)

// volDataFile is what the kubelet writes next to every CSI volume's mount directory:
// among other things the driver that serves it.
const volDataFile = "vol_data.json"

// recoverVolumes tidies, once at start, every volume this driver serves on the node:
// a process killed in the middle of a write leaves a data directory ..data does not
// point to, or a ..data_tmp link, which no reader must find. The current set, and the
// volume, stay as they are; the kubelet's next call refreshes or unpublishes it. A
// volume is this driver's when the kubelet's vol_data.json names it: other drivers'
// volumes, even in the same layout, are never touched. It returns how many volumes
// it tidied.
func (s *NodeServer) recoverVolumes(log klog.Logger) int {
	dirs, _ := filepath.Glob(filepath.Join(s.opts.KubeletRoot, "pods", "*", csiVolumesDir, "*"))
	tidied := 0
	for _, dir := range dirs {
		var vd struct {
			DriverName string `json:"driverName"`
		}
		b, err := os.ReadFile(filepath.Join(dir, volDataFile))
		if err != nil || json.Unmarshal(b, &vd) != nil || vd.DriverName != s.opts.DriverName {
			continue
		}
		target := filepath.Join(dir, "mount")
		if mounted, err := s.opts.Mounter.IsMountPoint(target); err != nil || !mounted {
			continue
		}
		unlock := s.locks.lock(target)
		err = s.opts.Writer.Tidy(target)
		unlock()
		if err != nil {
			log.Error(err, "Cannot tidy a volume after a restart", "targetPath", target)
			continue
		}
		tidied++
	}
	return tidied
}
