package cluster

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
)

// hostPathsCreatedAnyway are the paths the kubelet and containerd 1.6 create whatever
// their flags say (see the local-cluster recipe); Down removes those Up did not find.
// Children come before their parents, so a parent that existed keeps its other
// contents and only what the cluster added goes.
var hostPathsCreatedAnyway = []string{
	"/var/lib/kubelet/device-plugins",
	"/var/lib/kubelet",
	"/var/log/containers",
	"/var/log/pods",
	"/var/lib/cni/results",
	"/var/lib/cni",
	"/var/run/netns",
	"/run/containerd/s",
	"/run/containerd/io.containerd.grpc.v1.cri",
	"/run/containerd",
	"/usr/libexec/kubernetes",
}

func missingPaths(paths []string) []string {
	var out []string
	for _, p := range paths {
		if _, err := os.Lstat(p); errors.Is(err, os.ErrNotExist) {
			out = append(out, p)
		}
	}
	return out
}

func run(name string, args ...string) error {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// loHasAddress reports whether cidr (a.b.c.d/32) is on lo.
func loHasAddress(cidr string) bool {
	out, err := exec.Command("ip", "-o", "-4", "addr", "show", "dev", "lo").Output()
	return err == nil && strings.Contains(string(out), " "+cidr+" ")
}

// mountsUnder lists mount points at or below any of roots, deepest first.
func mountsUnder(roots ...string) []string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	defer f.Close()
	// mountinfo names real paths (/run/netns, not /var/run/netns).
	resolved := make([]string, 0, len(roots))
	for _, r := range roots {
		if real, err := filepath.EvalSymlinks(r); err == nil {
			r = real
		}
		resolved = append(resolved, r)
	}
	roots = resolved
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		mp := unescapeMount(fields[4])
		for _, r := range roots {
			if mp == r || strings.HasPrefix(mp, r+"/") {
				out = append(out, mp)
				break
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return len(out[i]) > len(out[j]) })
	return out
}

func unescapeMount(s string) string {
	return strings.NewReplacer(`\040`, " ", `\011`, "\t", `\012`, "\n", `\134`, `\`).Replace(s)
}

// unmountAll unmounts everything at or below roots, deepest first, lazily when a
// mount is busy. It loops because unmounting a parent can reveal nothing new but
// stacked mounts need one unmount each.
func unmountAll(roots ...string) error {
	var errs []error
	for pass := 0; pass < 5; pass++ {
		mps := mountsUnder(roots...)
		if len(mps) == 0 {
			return nil
		}
		errs = errs[:0]
		for _, mp := range mps {
			if err := syscall.Unmount(mp, 0); err != nil {
				if err2 := syscall.Unmount(mp, syscall.MNT_DETACH); err2 != nil && !errors.Is(err2, syscall.EINVAL) && !errors.Is(err2, syscall.ENOENT) {
					errs = append(errs, fmt.Errorf("unmount %s: %w", mp, err2))
				}
			}
		}
	}
	if mps := mountsUnder(roots...); len(mps) > 0 {
		errs = append(errs, fmt.Errorf("still mounted: %v", mps))
	}
	return errors.Join(errs...)
}

// removeCgroups removes the cgroup subtree name (e.g. "kubepods") in every mounted
// hierarchy, leaves first, after killing any process left in it.
func removeCgroups(name string) error {
	roots, _ := filepath.Glob("/sys/fs/cgroup/*/" + name)
	if fi, err := os.Stat("/sys/fs/cgroup/" + name); err == nil && fi.IsDir() {
		roots = append(roots, "/sys/fs/cgroup/"+name)
	}
	var errs []error
	for _, root := range roots {
		var dirs []string
		_ = filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		sort.Slice(dirs, func(i, j int) bool { return len(dirs[i]) > len(dirs[j]) })
		for _, d := range dirs {
			killCgroupProcs(d)
			if err := os.Remove(d); err != nil && !errors.Is(err, os.ErrNotExist) {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// killCgroupProcs SIGKILLs every process in one cgroup directory: they are the
// containers of this cluster's pods (the kubepods tree is the kubelet's).
func killCgroupProcs(dir string) {
	b, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	if err != nil {
		return
	}
	for _, l := range strings.Fields(string(b)) {
		var pid int
		if _, err := fmt.Sscan(l, &pid); err == nil && pid > 1 {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// listDir returns the names in dir ("" when it does not exist).
func listDir(dir string) []string {
	ents, _ := os.ReadDir(dir)
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

// vethsOf lists the interfaces enslaved to bridge.
func vethsOf(bridge string) []string {
	out, err := exec.Command("ip", "-o", "link", "show", "master", bridge).Output()
	if err != nil {
		return nil
	}
	var names []string
	for _, l := range strings.Split(string(out), "\n") {
		f := strings.Fields(l)
		if len(f) >= 2 {
			names = append(names, strings.SplitN(strings.TrimSuffix(f[1], ":"), "@", 2)[0])
		}
	}
	return names
}

func linkExists(name string) bool {
	return exec.Command("ip", "link", "show", "dev", name).Run() == nil
}

// filteredPath builds dir, a directory of symbolic links to every program on the
// standard PATH except iptables, ip6tables and their relatives, and returns it as a
// PATH value: the kubelet then cannot create KUBE-* chains on the host.
func filteredPath(dir string) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	for _, d := range []string{"/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"} {
		for _, name := range listDir(d) {
			if strings.HasPrefix(name, "iptables") || strings.HasPrefix(name, "ip6tables") ||
				strings.HasPrefix(name, "xtables") || strings.HasPrefix(name, "arptables") || strings.HasPrefix(name, "ebtables") {
				continue
			}
			link := filepath.Join(dir, name)
			if _, err := os.Lstat(link); err == nil {
				continue
			}
			_ = os.Symlink(filepath.Join(d, name), link)
		}
	}
	return dir, nil
}
