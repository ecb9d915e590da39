package cluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/kvinject/kvinject/internal/testcerts"
	"github.com/kvinject/kvinject/internal/testkit"
	"github.com/kvinject/kvinject/test/e2e/image"
)

// Addresses. None of them is ever routed off the host:
//   - NodeIP is an extra /32 on lo: the API server's advertise address and the
//     kubelet's node IP, which may not be loopback addresses. It is taken from
//     TEST-NET-2 (RFC 5737, documentation only) because TEST-NET-1 (192.0.2.0/24) is
//     this machine's own eth0 subnet; an address on lo is local and never leaves.
//   - PodCIDR is the CNI bridge's range (TEST-NET-3, first half): pod addresses live
//     in the network namespaces the cluster creates. The bridge takes the range's
//     first address (isGateway), so the host reaches pod IPs (the API server calls the
//     webhook's pod through its Service's endpoints, the kubelet probes pods) and pods
//     reach NodeIP (the API server, the emulator's proxy) through the one route they
//     get. No default route and no NAT: nothing leaves the host.
//   - ServiceCIDR (TEST-NET-3, second half) is only bookkeeping: there is no
//     kube-proxy, so no packet is ever sent to it.
const (
	NodeIP      = "198.51.100.10"
	PodCIDR     = "203.0.113.0/25"
	ServiceCIDR = "203.0.113.128/25"
	NodeName    = "kvinject-e2e"
	BridgeName  = "kvinject0"
	// ServiceAccountIssuer is the API server's --service-account-issuer; the emulator's
	// federated credential trusts it.
	ServiceAccountIssuer = "https://kubernetes.default.svc.cluster.local"
)

// Ports on 127.0.0.1 (the kubelet's on NodeIP), away from the defaults so a cluster
// elsewhere on the machine does not collide.
const (
	EtcdPort          = 23790
	EtcdPeerPort      = 23800
	APIServerPort     = 16443
	KubeletPort       = 10250
	KubeletHealthPort = 20248
)

// Options configure Up.
type Options struct {
	// Dir is the one state directory (e.g. <repo>/.cache/e2e). Everything the cluster
	// writes is below it: run/ (wiped by Down), images/ (kept, rebuilt cheaply),
	// last-logs/ (the logs of the previous cluster, kept for debugging).
	Dir string
	// RepoRoot is the kvinject checkout (programs and images are built from it).
	RepoRoot string
	// ToolsDir holds etcd, kube-apiserver, ... (test/tools/build.sh's output).
	ToolsDir string
	// Kvinject also starts the Azure emulator and installs kvinject from its chart.
	Kvinject bool
	// Log receives progress lines (nil = stderr).
	Log func(format string, args ...any)
}

// Cluster is a running single-node cluster.
type Cluster struct {
	opts  Options
	run   string
	state *State
	// Kubeconfig is the admin kubeconfig (system:masters).
	Kubeconfig string
	// Client is an admin clientset.
	Client kubernetes.Interface
	// Emulator is where the Azure emulator's admin API listens ("" without Kvinject).
	EmulatorAdmin string
	began         time.Time
	exited        map[string]<-chan struct{}
}

// Paths below the run directory.
func (c *Cluster) path(elem ...string) string {
	return filepath.Join(append([]string{c.run}, elem...)...)
}

func (c *Cluster) logf(format string, args ...any) {
	if c.opts.Log != nil {
		c.opts.Log(format, args...)
		return
	}
	fmt.Fprintf(os.Stderr, "[e2e %5.1fs] %s\n", time.Since(c.began).Seconds(), fmt.Sprintf(format, args...))
}

// RunDir is the run directory of a state directory.
func RunDir(dir string) string { return filepath.Join(dir, "run") }

// KubeconfigPath is the admin kubeconfig of the cluster in dir.
func KubeconfigPath(dir string) string { return filepath.Join(RunDir(dir), "admin.kubeconfig") }

// IsUp reports whether dir holds a cluster (its state file exists).
func IsUp(dir string) bool {
	_, err := os.Stat(filepath.Join(RunDir(dir), "state.json"))
	return err == nil
}

// Up brings the cluster up. On failure it tears down what it started and returns the
// error (with the failing component's log tail). A cluster left in dir by an earlier
// run is torn down first.
func Up(ctx context.Context, opts Options) (_ *Cluster, err error) {
	c := &Cluster{opts: opts, run: RunDir(opts.Dir), began: time.Now(), exited: map[string]<-chan struct{}{}}
	if os.Geteuid() != 0 {
		return nil, errors.New("the e2e cluster needs root (mounts, cgroups, network namespaces)")
	}
	if IsUp(opts.Dir) {
		c.logf("a cluster from an earlier run is still recorded in %s: tearing it down first", c.run)
		if err := Down(opts.Dir, opts.Log); err != nil {
			return nil, fmt.Errorf("tear down the earlier cluster: %w", err)
		}
	}
	if err := checkPortsFree(); err != nil {
		return nil, err
	}
	for _, d := range []string{"pki", "logs", "etcd", "containerd", "cni/net.d", "cni/ipam", "kubelet", "pod-logs", "flexvolume", "emulator", "webhook-tls"} {
		if err := os.MkdirAll(c.path(d), 0o755); err != nil {
			return nil, err
		}
	}
	if err := os.WriteFile(c.path("tools-dir"), []byte(opts.ToolsDir+"\n"), 0o644); err != nil {
		return nil, err
	}
	ipf, _ := os.ReadFile("/proc/sys/net/ipv4/ip_forward")
	c.state = &State{
		HostPathsCreated: missingPaths(hostPathsCreatedAnyway),
		IPForward:        strings.TrimSpace(string(ipf)),
		NetnsBefore:      listDir("/var/run/netns"),
	}
	if err := c.save(); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			c.logf("bring-up failed: %v", err)
			c.logf("tearing down what was started")
			if derr := Down(opts.Dir, opts.Log); derr != nil {
				err = fmt.Errorf("%w (teardown: %v)", err, derr)
			}
		}
	}()

	steps := []struct {
		name string
		fn   func(context.Context) error
	}{
		{"images", c.buildImages},
		{"address", c.addAddress},
		{"certificates", c.writePKI},
		{"etcd", c.startEtcd},
		{"kube-apiserver", c.startAPIServer},
		{"kube-controller-manager and kube-scheduler", c.startControllers},
		{"containerd", c.startContainerd},
		{"kubelet", c.startKubelet},
	}
	if opts.Kvinject {
		steps = append(steps, struct {
			name string
			fn   func(context.Context) error
		}{"kvinject", c.startKvinject})
	}
	for _, s := range steps {
		t := time.Now()
		if err := s.fn(ctx); err != nil {
			return nil, fmt.Errorf("%s: %w", s.name, err)
		}
		c.logf("%s ready (%.1fs)", s.name, time.Since(t).Seconds())
	}
	c.logf("cluster up in %.1fs; KUBECONFIG=%s", time.Since(c.began).Seconds(), c.Kubeconfig)
	return c, nil
}

// Attach returns the running cluster recorded in dir (for tests that reuse one).
func Attach(dir string) (*Cluster, error) {
	c := &Cluster{opts: Options{Dir: dir}, run: RunDir(dir), began: time.Now()}
	st, err := loadState(c.path("state.json"))
	if err != nil {
		return nil, fmt.Errorf("no cluster in %s: %w", dir, err)
	}
	c.state = st
	c.Kubeconfig = c.path("admin.kubeconfig")
	if err := c.connect(); err != nil {
		return nil, err
	}
	b, _ := os.ReadFile(c.path("emulator", "admin-address"))
	c.EmulatorAdmin = strings.TrimSpace(string(b))
	return c, nil
}

// Down tears down the cluster recorded in dir.
func (c *Cluster) Down() error { return Down(c.opts.Dir, c.opts.Log) }

func (c *Cluster) save() error { return c.state.save(c.path("state.json")) }

func checkPortsFree() error {
	for _, a := range []string{
		fmt.Sprintf("127.0.0.1:%d", EtcdPort), fmt.Sprintf("127.0.0.1:%d", EtcdPeerPort),
		fmt.Sprintf("127.0.0.1:%d", APIServerPort), fmt.Sprintf("127.0.0.1:%d", KubeletHealthPort),
	} {
		ln, err := net.Listen("tcp", a)
		if err != nil {
			return fmt.Errorf("port %s is taken (another cluster? run make e2e-down): %w", a, err)
		}
		ln.Close()
	}
	return nil
}

// start launches a component detached, records it, and remembers its exit channel.
func (c *Cluster) start(name, bin string, args []string, env []string) error {
	if env == nil {
		env = os.Environ()
	}
	p, exited, err := startDetached(name, bin, args, env, c.path("logs", name+".log"))
	if err != nil {
		return err
	}
	c.state.Processes = append(c.state.Processes, p)
	c.exited[name] = exited
	return c.save()
}

// waitFor polls check until it returns nil, the component exits, or timeout.
func (c *Cluster) waitFor(ctx context.Context, name string, timeout time.Duration, check func(context.Context) error) error {
	err := testkit.Poll(ctx, 150*time.Millisecond, timeout, name+" ready", func(ctx context.Context) error {
		select {
		case <-c.exited[name]:
			return testkit.Stop(fmt.Errorf("%s exited", name))
		default:
		}
		return check(ctx)
	})
	if err != nil {
		return fmt.Errorf("%w; last log lines:\n%s", err, tail(c.path("logs", name+".log"), 25))
	}
	return nil
}

func (c *Cluster) tool(name string) string { return filepath.Join(c.opts.ToolsDir, name) }

func (c *Cluster) buildImages(ctx context.Context) error {
	_, err := image.BuildAll(ctx, image.BuildOptions{RepoRoot: c.opts.RepoRoot, OutDir: filepath.Join(c.opts.Dir, "images"), Log: c.logf})
	return err
}

func (c *Cluster) addAddress(context.Context) error {
	cidr := NodeIP + "/32"
	if loHasAddress(cidr) {
		return fmt.Errorf("%s is already on lo: another cluster or an interrupted run (make e2e-down removes it only when it recorded it; else: ip addr del %s dev lo)", cidr, cidr)
	}
	if err := run("ip", "addr", "add", cidr, "dev", "lo"); err != nil {
		return err
	}
	c.state.AddedAddress = cidr
	return c.save()
}

// writePKI makes the cluster's one CA (internal/testcerts, the tests' CA) and
// everything it signs: the API server's, the kubelet's and the webhook's serving
// certificates, every client certificate, and the Azure emulator's HTTPS certificate
// (the emulator loads the CA from pki/ca.crt and pki/ca.key), so that the node plugin
// trusts exactly one CA (SSL_CERT_FILE).
func (c *Cluster) writePKI(context.Context) error {
	pki := c.path("pki")
	ca, err := testcerts.NewCA("kvinject-e2e-ca")
	if err != nil {
		return err
	}
	if err := ca.WriteFiles(pki, "ca"); err != nil {
		return err
	}
	certs := []struct {
		name string
		spec testcerts.Spec
	}{
		{"apiserver", testcerts.Spec{CommonName: "kube-apiserver", Hosts: []string{NodeIP, "127.0.0.1", "localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local", "203.0.113.129"}}},
		{"admin", testcerts.Spec{CommonName: "kvinject-e2e-admin", Organizations: []string{"system:masters"}}},
		{"apiserver-kubelet-client", testcerts.Spec{CommonName: "kube-apiserver-kubelet-client", Organizations: []string{"system:masters"}}},
		{"controller-manager", testcerts.Spec{CommonName: "system:kube-controller-manager"}},
		{"scheduler", testcerts.Spec{CommonName: "system:kube-scheduler"}},
		{"kubelet", testcerts.Spec{CommonName: "system:node:" + NodeName, Organizations: []string{"system:nodes"}}},
		{"kubelet-serving", testcerts.Spec{CommonName: NodeName, Hosts: []string{NodeIP, NodeName, "127.0.0.1"}}},
		{"webhook", testcerts.Spec{CommonName: "kvinject-webhook", Hosts: []string{"kvinject-webhook.kvinject.svc", "kvinject-webhook.kvinject.svc.cluster.local"}}},
	}
	for _, ct := range certs {
		pair, err := ca.IssueSpec(ct.spec)
		if err != nil {
			return err
		}
		if err := pair.WriteNamed(pki, ct.name); err != nil {
			return err
		}
	}
	if err := writeServiceAccountKeys(pki); err != nil {
		return err
	}
	server := fmt.Sprintf("https://%s:%d", NodeIP, APIServerPort)
	for _, k := range []string{"admin", "controller-manager", "scheduler", "kubelet"} {
		if err := writeKubeconfig(c.path(k+".kubeconfig"), server, pki, k); err != nil {
			return err
		}
	}
	c.Kubeconfig = c.path("admin.kubeconfig")
	return nil
}

func (c *Cluster) startEtcd(ctx context.Context) error {
	client := fmt.Sprintf("http://127.0.0.1:%d", EtcdPort)
	peer := fmt.Sprintf("http://127.0.0.1:%d", EtcdPeerPort)
	if err := c.start("etcd", c.tool("etcd"), []string{
		"--name=kvinject-e2e", "--data-dir=" + c.path("etcd"),
		"--listen-client-urls=" + client, "--advertise-client-urls=" + client,
		"--listen-peer-urls=" + peer, "--initial-advertise-peer-urls=" + peer,
		"--initial-cluster=kvinject-e2e=" + peer, "--unsafe-no-fsync",
		"--log-level=warn", "--quota-backend-bytes=1073741824",
	}, nil); err != nil {
		return err
	}
	return c.waitFor(ctx, "etcd", 30*time.Second, func(ctx context.Context) error {
		conn, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", EtcdPort), time.Second)
		if err == nil {
			conn.Close()
		}
		return err
	})
}

func (c *Cluster) startAPIServer(ctx context.Context) error {
	pki := c.path("pki")
	p := func(f string) string { return filepath.Join(pki, f) }
	if err := c.start("kube-apiserver", c.tool("kube-apiserver"), []string{
		fmt.Sprintf("--etcd-servers=http://127.0.0.1:%d", EtcdPort),
		// On the node's address (lo), which pods reach through the bridge: the webhook's
		// pod reads namespaces and service accounts from it.
		"--bind-address=" + NodeIP, fmt.Sprintf("--secure-port=%d", APIServerPort),
		"--advertise-address=" + NodeIP,
		"--cert-dir=" + c.path("pki", "apiserver-generated"),
		"--tls-cert-file=" + p("apiserver.crt"), "--tls-private-key-file=" + p("apiserver.key"),
		"--client-ca-file=" + p("ca.crt"),
		"--kubelet-client-certificate=" + p("apiserver-kubelet-client.crt"),
		"--kubelet-client-key=" + p("apiserver-kubelet-client.key"),
		"--kubelet-certificate-authority=" + p("ca.crt"),
		"--kubelet-preferred-address-types=InternalIP",
		"--service-account-issuer=" + ServiceAccountIssuer,
		"--service-account-key-file=" + p("sa.pub"),
		"--service-account-signing-key-file=" + p("sa.key"),
		"--service-cluster-ip-range=" + ServiceCIDR,
		"--authorization-mode=Node,RBAC",
		"--allow-privileged=true",
		// Webhook Services resolve through their endpoints (no kube-proxy here).
		"--enable-aggregator-routing=true",
		"--profiling=false",
		"--v=1",
	}, nil); err != nil {
		return err
	}
	if err := c.waitFor(ctx, "kube-apiserver", 90*time.Second, func(ctx context.Context) error {
		if c.Client == nil {
			if err := c.connect(); err != nil {
				return err
			}
		}
		body, err := c.Client.CoreV1().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		if err != nil {
			return fmt.Errorf("%w: %s", err, body)
		}
		return nil
	}); err != nil {
		return err
	}
	return nil
}

func (c *Cluster) connect() error {
	cfg, err := clientcmd.BuildConfigFromFlags("", c.Kubeconfig)
	if err != nil {
		return err
	}
	cfg.QPS, cfg.Burst = 50, 100
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	c.Client = cs
	return nil
}

func (c *Cluster) startControllers(ctx context.Context) error {
	pki := c.path("pki")
	kcm := c.path("controller-manager.kubeconfig")
	if err := c.start("kube-controller-manager", c.tool("kube-controller-manager"), []string{
		"--kubeconfig=" + kcm, "--authentication-kubeconfig=" + kcm, "--authorization-kubeconfig=" + kcm,
		"--controllers=*", "--leader-elect=false",
		"--bind-address=127.0.0.1", "--secure-port=0",
		"--use-service-account-credentials",
		"--service-account-private-key-file=" + filepath.Join(pki, "sa.key"),
		"--root-ca-file=" + filepath.Join(pki, "ca.crt"),
		"--flex-volume-plugin-dir=" + c.path("flexvolume"),
		"--concurrent-deployment-syncs=5", "--concurrent-replicaset-syncs=5",
		"--v=1",
	}, nil); err != nil {
		return err
	}
	sch := c.path("scheduler.kubeconfig")
	if err := c.start("kube-scheduler", c.tool("kube-scheduler"), []string{
		"--kubeconfig=" + sch, "--authentication-kubeconfig=" + sch, "--authorization-kubeconfig=" + sch,
		"--leader-elect=false", "--bind-address=127.0.0.1", "--secure-port=0", "--v=1",
	}, nil); err != nil {
		return err
	}
	return c.waitFor(ctx, "kube-controller-manager", 90*time.Second, func(ctx context.Context) error {
		_, err := c.Client.CoreV1().ServiceAccounts("default").Get(ctx, "default", metav1.GetOptions{})
		if err != nil {
			return err
		}
		_, err = c.Client.CoreV1().ConfigMaps("default").Get(ctx, "kube-root-ca.crt", metav1.GetOptions{})
		return err
	})
}

func (c *Cluster) startContainerd(ctx context.Context) error {
	path, err := filteredPath(c.path("path"))
	if err != nil {
		return err
	}
	if err := os.WriteFile(c.path("containerd", "config.toml"), []byte(c.containerdConfig()), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(c.path("cni", "net.d", "10-kvinject.conflist"), []byte(c.cniConfig()), 0o644); err != nil {
		return err
	}
	env := []string{"PATH=" + path, "HOME=/root", "TMPDIR=" + c.path("containerd")}
	if err := c.start("containerd", "/usr/bin/containerd", []string{"--config=" + c.path("containerd", "config.toml")}, env); err != nil {
		return err
	}
	sock := c.containerdSocket()
	if err := c.waitFor(ctx, "containerd", 30*time.Second, func(ctx context.Context) error {
		return exec.CommandContext(ctx, "ctr", "--address", sock, "version").Run()
	}); err != nil {
		return err
	}
	// The programs' release images (images/release) are imported under their
	// repository with a digest name too (--digests): the chart pins them by digest.
	images, _ := filepath.Glob(filepath.Join(c.opts.Dir, "images", "*.oci.tar"))
	release, _ := filepath.Glob(filepath.Join(c.opts.Dir, "images", "release", "*.oci.tar"))
	for _, f := range append(images, release...) {
		base := "kvinject.local/e2e"
		if filepath.Base(filepath.Dir(f)) == "release" {
			base = strings.TrimSuffix(image.Webhook[:strings.LastIndex(image.Webhook, "/")+1]+filepath.Base(f), ".oci.tar")
		}
		out, err := exec.CommandContext(ctx, "ctr", "--address", sock, "-n", "k8s.io", "images", "import",
			"--base-name", base, "--digests", f).CombinedOutput()
		if err != nil {
			return fmt.Errorf("import %s: %w: %s", f, err, out)
		}
	}
	out, err := exec.CommandContext(ctx, "ctr", "--address", sock, "-n", "k8s.io", "images", "ls", "-q").Output()
	if err != nil {
		return err
	}
	for _, want := range []string{image.Pause, image.Busybox, image.Webhook, image.CSINode} {
		if !strings.Contains(string(out), want) {
			return fmt.Errorf("image %s missing after import; containerd has:\n%s", want, out)
		}
	}
	c.logf("imported %d images into containerd (namespace k8s.io)", len(images)+len(release))
	return nil
}

func (c *Cluster) containerdSocket() string { return c.path("containerd", "containerd.sock") }

func (c *Cluster) containerdConfig() string {
	return fmt.Sprintf(`version = 2
root = %q
state = %q
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = %q

[ttrpc]
  address = %q

[plugins."io.containerd.internal.v1.opt"]
  path = %q

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %q
  restrict_oom_score_adj = true
  disable_apparmor = true
  enable_selinux = false
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_cdi = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        BinaryName = "/usr/sbin/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = %q
    max_conf_num = 1
`, c.path("containerd", "root"), c.path("containerd", "state"), c.containerdSocket(), c.containerdSocket()+".ttrpc",
		c.path("containerd", "opt"), image.Pause, c.path("cni", "net.d"))
}

func (c *Cluster) cniConfig() string {
	return fmt.Sprintf(`{
  "cniVersion": "0.4.0",
  "name": "kvinject-e2e",
  "plugins": [{
    "type": "bridge",
    "bridge": %q,
    "isGateway": true,
    "ipMasq": false,
    "hairpinMode": false,
    "ipam": {"type": "host-local", "ranges": [[{"subnet": %q}]], "routes": [{"dst": "%s/32"}], "dataDir": %q}
  }]
}
`, BridgeName, PodCIDR, NodeIP, c.path("cni", "ipam"))
}

func (c *Cluster) startKubelet(ctx context.Context) error {
	pki := c.path("pki")
	cfg := fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: %s
port: %d
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: %d
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
containerRuntimeEndpoint: unix://%s
podLogsDir: %s
volumePluginDir: %s
tlsCertFile: %s
tlsPrivateKeyFile: %s
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: %s}
authorization:
  mode: Webhook
clusterDomain: cluster.local
resolvConf: ""
syncFrequency: 10s
fileCheckFrequency: 60s
nodeStatusUpdateFrequency: 10s
serializeImagePulls: false
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard:
  memory.available: "10Mi"
  nodefs.available: "1%%"
  nodefs.inodesFree: "1%%"
  imagefs.available: "1%%"
  imagefs.inodesFree: "1%%"
maxPods: 110
`, NodeIP, KubeletPort, KubeletHealthPort, c.containerdSocket(), c.path("pod-logs"), c.path("flexvolume"),
		filepath.Join(pki, "kubelet-serving.crt"), filepath.Join(pki, "kubelet-serving.key"), filepath.Join(pki, "ca.crt"))
	if err := os.WriteFile(c.path("kubelet-config.yaml"), []byte(cfg), 0o644); err != nil {
		return err
	}
	// The kubelet's directory is a shared mount, so the node plugin's tmpfs mounts
	// (made in its container with Bidirectional propagation) reach the host and the
	// pods. The host's / is private here; Down unmounts it with the rest.
	if err := run("mount", "--bind", c.KubeletRoot(), c.KubeletRoot()); err != nil {
		return err
	}
	if err := run("mount", "--make-rshared", c.KubeletRoot()); err != nil {
		return err
	}
	env := []string{"PATH=" + c.path("path"), "HOME=/root"}
	if err := c.start("kubelet", c.tool("kubelet"), []string{
		"--config=" + c.path("kubelet-config.yaml"),
		"--kubeconfig=" + c.path("kubelet.kubeconfig"),
		"--root-dir=" + c.KubeletRoot(),
		"--node-ip=" + NodeIP,
		"--hostname-override=" + NodeName,
		"--v=1",
	}, env); err != nil {
		return err
	}
	return c.waitFor(ctx, "kubelet", 90*time.Second, func(ctx context.Context) error {
		n, err := c.Client.CoreV1().Nodes().Get(ctx, NodeName, metav1.GetOptions{})
		if err != nil {
			return err
		}
		for _, cond := range n.Status.Conditions {
			if cond.Type == corev1.NodeReady {
				if cond.Status == corev1.ConditionTrue {
					return nil
				}
				return fmt.Errorf("node not ready: %s", cond.Message)
			}
		}
		return errors.New("node has no Ready condition yet")
	})
}

// KubeletRoot is the kubelet's --root-dir.
func (c *Cluster) KubeletRoot() string { return c.path("kubelet") }

// RunPath is a path below the run directory.
func (c *Cluster) RunPath(elem ...string) string { return c.path(elem...) }
