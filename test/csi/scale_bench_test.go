package csi

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	csiapi "github.com/container-storage-interface/spec/lib/go/csi"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kvinject/kvinject/internal/testkit"
	"github.com/kvinject/kvinject/pkg/apis/kvinject/v1alpha1"
	"github.com/kvinject/kvinject/pkg/contract"
	"github.com/kvinject/kvinject/pkg/csi"
	"github.com/kvinject/kvinject/pkg/policy"
	"github.com/kvinject/kvinject/test/emulator"
	"github.com/kvinject/kvinject/test/framework"
)

// anchorPerVolume is what the Secrets Store CSI driver's Azure provider sends for one
// volume of n objects at every rotation: a token request, Key Vault's challenge, the
// OpenID configuration and n reads, plus its list call (measured side by side: n+4).
func anchorPerVolume(n int) int { return n + 4 }

// BenchmarkRotationRound is 7(a): 100 volumes of 10 objects from 5 identities (20
// replicas each, workload identity) and 2 vaults on one node, rotation on. Each
// iteration moves the plugin's clock past the interval and republishes every volume,
// as the kubelet does; the emulator counts what reached Azure. Run with -benchtime 10x
// for the ten intervals of the issue. Reported per interval: Key Vault reads and
// challenges, Entra ID token requests, new TLS connections, and the ratio to the
// anchor's pods x (objects + 4).
func BenchmarkRotationRound(b *testing.B) {
	testkit.RequireRoot(b)
	for _, http2 := range []bool{false, true} {
		b.Run(map[bool]string{false: "http1", true: "http2"}[http2], func(b *testing.B) {
			w := startWorld(b, func(o *emulator.Options) { o.HTTP2 = http2 })
			apps := w.addApps(b, 5, 10, 0)
			root := b.TempDir()
			p := newPlugin(b, w, root, csi.PluginOptions{})
			var reqs []*csiapi.NodePublishVolumeRequest
			for i := range 100 {
				reqs = append(reqs, w.volumeOf(b, apps[i%5], i).request(b, root))
			}
			if err := publishAll(b, p, reqs, 20); err != nil { // the pods start
				b.Fatal(err)
			}
			for _, r := range reqs {
				unpublishAtEnd(b, p, r)
			}
			w.emu.ResetCounters()
			w.emu.ResetConnections()
			tokens0 := w.tokenRequests(apps)
			rounds := 0
			for b.Loop() {
				p.advance()
				if err := publishAll(b, p, reqs, 20); err != nil {
					b.Fatal(err)
				}
				rounds++
			}
			reads, challenges := w.kvRequests()
			tokens := w.tokenRequests(apps) - tokens0
			conns := w.emu.Connections().TLSHandshakes
			perRound := func(n int) float64 { return float64(n) / float64(rounds) }
			anchor := len(reqs) * anchorPerVolume(10)
			b.ReportMetric(perRound(reads), "kv-reads/interval")
			b.ReportMetric(perRound(challenges), "kv-challenges/interval")
			b.ReportMetric(perRound(tokens), "token-requests/interval")
			b.ReportMetric(perRound(conns), "new-tls/interval")
			b.ReportMetric(float64(anchor)/perRound(reads+challenges+tokens), "x-fewer-than-anchor")
			for _, r := range reqs[:3] {
				if got := readVolume(b, r.TargetPath); len(got) != 10 {
					b.Fatalf("%s: %d files", r.TargetPath, len(got))
				}
			}
		})
	}
}

// BenchmarkWarmPublish50Objects is 7(b): a pod's volume of 50 secrets published by a
// node that has served its identity before (credential, client and connections warm),
// while the emulator adds 20 ms to every Key Vault read. Reported: wall time, in round
// trips of 20 ms, and the token requests it cost (none).
func BenchmarkWarmPublish50Objects(b *testing.B) {
	testkit.RequireRoot(b)
	w := startWorld(b)
	a := w.addApps(b, 1, 50, 0)[0]
	root := b.TempDir()
	p := newPlugin(b, w, root, csi.PluginOptions{})
	warm := w.volumeOf(b, a, 0).request(b, root)
	if _, err := p.NodePublishVolume(b.Context(), warm); err != nil {
		b.Fatal(err)
	}
	unpublishAtEnd(b, p, warm)
	const latency = 20 * time.Millisecond
	w.emu.SetFault(emulator.FaultTarget{Vault: a.vault}, emulator.Fault{Latency: latency})
	tokens0 := w.tokenRequests([]app{a})
	var reqs []*csiapi.NodePublishVolumeRequest
	i := 1
	start := time.Now()
	for b.Loop() {
		req := w.volumeOf(b, a, i).request(b, root)
		i++
		if _, err := p.NodePublishVolume(b.Context(), req); err != nil {
			b.Fatal(err)
		}
		reqs = append(reqs, req)
	}
	per := time.Since(start) / time.Duration(len(reqs))
	b.ReportMetric(float64(per.Microseconds())/1000, "ms/publish")
	b.ReportMetric(float64(per)/float64(latency), "round-trips")
	b.ReportMetric(float64(w.tokenRequests([]app{a})-tokens0)/float64(len(reqs)), "token-requests/publish")
	b.StopTimer()
	for _, req := range reqs {
		if got := readVolume(b, req.TargetPath); len(got) != 50 {
			b.Fatalf("published %d files", len(got))
		}
		if _, err := p.NodeUnpublishVolume(b.Context(), &csiapi.NodeUnpublishVolumeRequest{VolumeId: req.VolumeId, TargetPath: req.TargetPath}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkResidentMemory100Volumes is 7(c): the csi-node binary holding 100 volumes of
// the tutorial's two secrets (pod identity: a credential and a client per pod, the
// caches full), after a rotation round. Reported: VmRSS, split into anonymous and
// file-backed (the binary's own pages), and VmHWM, in MiB. Run with -benchtime 1x.
// "no-api-server" runs the plugin alone; "tenancy" gives it a real API server with
// 20 KeyVaultAccessPolicies, one of which governs the pods' namespace, so every
// volume is checked against them (the namespace's labels and each pod's AAD Pod
// Identity label read and cached). KVINJECT_BENCH_ENV=NAME=value adds one variable to
// the binary's environment. Reported too: the CPU time the plugin used.
func BenchmarkResidentMemory100Volumes(b *testing.B) {
	testkit.RequireRoot(b)
	b.Run("no-api-server", func(b *testing.B) { residentMemory(b, false) })
	b.Run("tenancy", func(b *testing.B) { residentMemory(b, true) })
}

func residentMemory(b *testing.B, tenancy bool) {
	w := startWorld(b)
	bin := testkit.Binary(b, "./cmd/csi-node")
	root := b.TempDir()
	socket := filepath.Join(root, "csi.sock")
	var logs lockedBuffer
	metricsAddr := testkit.FreeAddr(b)
	args := []string{"--kubelet-root", root, "--endpoint", socket, "--node-id", "node-1", "--register=false",
		"--metrics-bind-address", metricsAddr, "--health-probe-bind-address", "0", "--nmi-endpoint", "http://" + w.emu.NMIAddr(),
		"--rotation-poll-interval", "1s"}
	uids := make([]string, 100)
	for i := range uids {
		uids[i] = fmt.Sprintf("mem-%03d", i)
	}
	if tenancy {
		kubeconfig, podUIDs := tenancyAPIServer(b, len(uids))
		args = append(args, "--kubeconfig", kubeconfig)
		uids = podUIDs
	}
	env := w.env()
	if e := os.Getenv("KVINJECT_BENCH_ENV"); e != "" {
		env = append(env, e) // e.g. GOGC=100, to compare with Go's default
	}
	cmd := runBinary(b, bin, socket, &logs, env, args...)
	node := nodeClient(b, socket)
	objs := []contract.Object{{Name: "DatabaseLogin", Alias: "DATABASE_LOGIN"}, {Name: "DatabasePassword", Alias: "DATABASE_PASSWORD"}}
	var reqs []*csiapi.NodePublishVolumeRequest
	for i, uid := range uids {
		req := volume{objects: objs, podUID: uid, attrs: map[string]string{contract.ContextPodName: fmt.Sprintf("mem-%03d", i)}}.request(b, root)
		if _, err := node.NodePublishVolume(b.Context(), req); err != nil {
			b.Fatalf("publish %d: %v", i, err)
		}
		reqs = append(reqs, req)
	}
	var rss, hwm, anon, file float64
	for b.Loop() {
		time.Sleep(1200 * time.Millisecond) // every volume due
		for _, req := range reqs {          // a rotation round
			if _, err := node.NodePublishVolume(b.Context(), req); err != nil {
				b.Fatal(err)
			}
		}
		time.Sleep(500 * time.Millisecond)
		rss, hwm, anon, file = procMemory(b, cmd.Process.Pid)
	}
	b.ReportMetric(rss, "MiB-VmRSS")
	b.ReportMetric(anon, "MiB-anon")
	b.ReportMetric(file, "MiB-file")
	b.ReportMetric(hwm, "MiB-VmHWM")
	b.ReportMetric(procCPU(b, cmd.Process.Pid).Seconds()*1000, "cpu-ms")
	if resp, err := http.Get("http://" + metricsAddr + "/metrics"); err == nil {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		for _, l := range strings.Split(string(body), "\n") {
			if strings.HasPrefix(l, "go_memstats_heap_inuse_bytes") || strings.HasPrefix(l, "go_goroutines") {
				b.Log(l)
			}
		}
	}
	for _, req := range reqs {
		if _, err := node.NodeUnpublishVolume(b.Context(), &csiapi.NodeUnpublishVolumeRequest{VolumeId: req.VolumeId, TargetPath: req.TargetPath}); err != nil {
			b.Fatal(err)
		}
	}
}

// tenancyAPIServer starts an API server holding the KeyVaultAccessPolicy CRD, 20
// policies (one governs the default namespace and allows the tutorial's vault, tenant
// and pod identity) and n pods mem-000... labelled for pod identity; it returns an admin
// kubeconfig and the pods' UIDs.
func tenancyAPIServer(b *testing.B, n int) (string, []string) {
	b.Helper()
	_, rc := startAPIServer(b, framework.Assets(b))
	scheme, err := framework.Scheme()
	if err != nil {
		b.Fatal(err)
	}
	kube, err := client.New(rc, client.Options{Scheme: scheme})
	if err != nil {
		b.Fatal(err)
	}
	ctx := b.Context()
	if err := kube.Patch(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "default"}},
		client.RawPatch(types.MergePatchType, []byte(`{"metadata":{"labels":{"team":"team-00"}}}`))); err != nil {
		b.Fatal(err)
	}
	for i := range 20 {
		team := fmt.Sprintf("team-%02d", i)
		p := &v1alpha1.KeyVaultAccessPolicy{ObjectMeta: metav1.ObjectMeta{Name: team}, Spec: policy.Spec{
			NamespaceSelector: policy.LabelSelector{MatchLabels: map[string]string{"team": team}},
			Vaults:            []string{team + "-*", vault}, Tenants: []string{tenant}, PodIdentities: []string{"azure-kv", team + "-app"},
		}}
		if err := kube.Create(ctx, p); err != nil {
			b.Fatal(err)
		}
	}
	uids := make([]string, n)
	for i := range uids {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("mem-%03d", i), Namespace: "default", Labels: map[string]string{contract.LabelPodIdentity: "azure-kv"}},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "app"}}}}
		if err := kube.Create(ctx, p); err != nil {
			b.Fatal(err)
		}
		uids[i] = string(p.UID)
	}
	return framework.WriteKubeconfig(b, rc), uids
}

// procCPU is the user and system CPU time pid has used.
func procCPU(t testing.TB, pid int) time.Duration {
	t.Helper()
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	// Fields after the command name (which may hold spaces): state is field 3; utime
	// and stime are fields 14 and 15, in clock ticks (100 a second on Linux).
	fields := strings.Fields(string(raw[strings.LastIndexByte(string(raw), ')')+2:]))
	var ticks int64
	for _, f := range fields[11:13] {
		n, err := strconv.ParseInt(f, 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		ticks += n
	}
	return time.Duration(ticks) * 10 * time.Millisecond
}
