package cluster

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"time"
)

// Down tears down the cluster recorded in dir and leaves the host as Up found it:
// it stops every recorded process (reverse start order) and the containers and shims
// of the cluster's containerd, unmounts everything under the run directory and the
// network namespaces the cluster created, deletes the CNI bridge and its veths, removes
// the lo address, the kubepods cgroups, the host paths created by the kubelet and
// containerd, restores ip_forward, moves the logs to last-logs/ and deletes the run
// directory. It keeps going after an error and returns all of them. Without a
// recorded cluster it still sweeps (idempotent).
func Down(dir string, logf func(string, ...any)) error {
	began := time.Now()
	if logf == nil {
		logf = func(format string, args ...any) {
			fmt.Fprintf(os.Stderr, "[e2e-down %5.1fs] %s\n", time.Since(began).Seconds(), fmt.Sprintf(format, args...))
		}
	}
	runDir := RunDir(dir)
	st, err := loadState(filepath.Join(runDir, "state.json"))
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			return err
		}
		st = &State{}
		if _, err := os.Stat(runDir); errors.Is(err, os.ErrNotExist) {
			logf("nothing recorded in %s", dir)
			return nil
		}
		logf("no state file; sweeping %s", runDir)
	}
	var errs []error
	note := func(err error) {
		if err != nil {
			errs = append(errs, err)
			logf("teardown: %v", err)
		}
	}

	// 1. The kubelet first (it would restart containers), then our programs.
	procs := slices.Clone(st.Processes)
	slices.Reverse(procs)
	stopNamed := func(names ...string) {
		for _, p := range procs {
			if slices.Contains(names, p.Name) {
				note(p.stop(10 * time.Second))
			}
		}
	}
	stopNamed("kubelet")
	stopNamed("csi-node", "webhook", "emulator")

	// 2. Every container of the cluster: processes in the kubepods cgroups, then the
	// shims of our containerd (their command line names its socket).
	sock := filepath.Join(runDir, "containerd", "containerd.sock")
	for i := 0; i < 3; i++ {
		_ = removeCgroups("kubepods")
		for _, pid := range pidsWhere("containerd-shim", sock) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		time.Sleep(200 * time.Millisecond)
	}
	stopNamed("containerd")
	// 3. The control plane.
	stopNamed("kube-scheduler", "kube-controller-manager", "kube-apiserver", "etcd")
	for _, p := range procs {
		if p.alive() {
			note(p.stop(5 * time.Second))
		}
	}
	logf("processes stopped")

	// 4. Mounts: pod volumes, tmpfs, overlay rootfs, shm, netns, all under the run
	// directory; and the network namespaces containerd 1.6 puts in /var/run/netns.
	var netns []string
	for _, n := range listDir("/var/run/netns") {
		if !slices.Contains(st.NetnsBefore, n) {
			netns = append(netns, filepath.Join("/var/run/netns", n))
		}
	}
	note(unmountAll(append([]string{runDir, "/run/containerd/io.containerd.grpc.v1.cri"}, netns...)...))
	for _, n := range netns {
		note(ignoreNotExist(os.Remove(n)))
	}
	logf("mounts and network namespaces removed")

	// 5. Network: veths on the bridge (normally gone with their namespaces), the bridge,
	// the lo address.
	for _, v := range vethsOf(BridgeName) {
		note(run("ip", "link", "del", v))
	}
	if linkExists(BridgeName) {
		note(run("ip", "link", "del", BridgeName))
	}
	if st.AddedAddress != "" && loHasAddress(st.AddedAddress) {
		note(run("ip", "addr", "del", st.AddedAddress, "dev", "lo"))
	}
	if st.IPForward != "" {
		if cur, _ := os.ReadFile("/proc/sys/net/ipv4/ip_forward"); string(cur) != st.IPForward+"\n" {
			note(os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte(st.IPForward), 0o644))
		}
	}
	logf("network restored")

	// 6. cgroups and host paths.
	note(removeCgroups("kubepods"))
	for _, p := range st.HostPathsCreated {
		note(unmountAll(p))
		note(ignoreNotExist(os.RemoveAll(p)))
	}

	// 7. Keep the logs, delete the rest.
	last := filepath.Join(dir, "last-logs")
	_ = os.RemoveAll(last)
	_ = os.Rename(filepath.Join(runDir, "logs"), last)
	if mps := mountsUnder(runDir); len(mps) == 0 {
		note(os.RemoveAll(runDir))
	} else {
		note(fmt.Errorf("not removing %s: still mounted: %v", runDir, mps))
	}
	logf("teardown done in %.1fs (logs kept in %s)", time.Since(began).Seconds(), last)
	return errors.Join(errs...)
}

func ignoreNotExist(err error) error {
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return err
}

// NetNamespaces lists the named network namespaces (/var/run/netns); the tests
// compare it before Up and after Down.
func NetNamespaces() []string { return listDir("/var/run/netns") }

// Leftovers lists what a cluster in dir could have left on the host: nothing after a
// successful Down. The tests call it after tearing down.
func Leftovers(dir string) []string {
	var out []string
	if loHasAddress(NodeIP + "/32") {
		out = append(out, "address "+NodeIP+"/32 on lo")
	}
	if linkExists(BridgeName) {
		out = append(out, "bridge "+BridgeName)
	}
	for _, m := range mountsUnder(dir) {
		out = append(out, "mount "+m)
	}
	if roots, _ := filepath.Glob("/sys/fs/cgroup/*/kubepods"); len(roots) > 0 {
		out = append(out, fmt.Sprintf("cgroups %v", roots))
	}
	sock := filepath.Join(RunDir(dir), "containerd", "containerd.sock")
	if pids := pidsWhere(sock); len(pids) > 0 {
		out = append(out, fmt.Sprintf("processes using %s: %v", sock, pids))
	}
	if pids := pidsWhere(RunDir(dir)); len(pids) > 0 {
		out = append(out, fmt.Sprintf("processes of %s: %v", RunDir(dir), pids))
	}
	if _, err := os.Stat(RunDir(dir)); err == nil {
		out = append(out, "directory "+RunDir(dir))
	}
	return out
}
