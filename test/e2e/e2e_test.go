// Package e2e_test is issue 7's acceptance on a real node: a single-node cluster
// (package cluster) with the Azure emulator, kvinject's webhook and node plugin, and
// the reference tutorial's check run through kubectl.
//
// It runs only with KVINJECT_E2E=1 (make e2e): it needs root and changes the host
// (an lo address, a bridge, cgroups, mounts), all undone at the end. With
// KVINJECT_E2E_REUSE=1 it uses a cluster left running by make e2e-up and leaves it up.
package e2e_test

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kvinject/kvinject/internal/testkit"
	"github.com/kvinject/kvinject/test/e2e/cluster"
	"github.com/kvinject/kvinject/test/e2e/image"
	"github.com/kvinject/kvinject/test/e2e/manifests"
)

var c *cluster.Cluster

func TestMain(m *testing.M) {
	if os.Getenv("KVINJECT_E2E") != "1" {
		if testkit.InCI() {
			fmt.Println("CI=true but KVINJECT_E2E is not 1: the end-to-end tests must run in CI (make e2e sets it)")
			os.Exit(1)
		}
		fmt.Println("skipping the end-to-end tests: set KVINJECT_E2E=1 (make e2e; needs root)")
		os.Exit(0)
	}
	os.Exit(run(m))
}

func run(m *testing.M) int {
	ctx := context.Background()
	repo, err := testkit.RepoRoot()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	dir := cluster.DefaultDir(repo)
	began := time.Now()
	if os.Getenv("KVINJECT_E2E_REUSE") == "1" && cluster.IsUp(dir) {
		if c, err = cluster.Attach(dir); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		fmt.Fprintf(os.Stderr, "reusing the cluster in %s\n", dir)
		return m.Run()
	}
	netnsBefore := cluster.NetNamespaces()
	if c, err = cluster.UpAll(ctx, repo, dir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	upTook := time.Since(began)
	code := m.Run()
	t := time.Now()
	if err := c.Down(); err != nil {
		fmt.Fprintln(os.Stderr, "teardown:", err)
		code = 1
	}
	left := cluster.Leftovers(dir)
	if ns := cluster.NetNamespaces(); !slices.Equal(ns, netnsBefore) {
		left = append(left, fmt.Sprintf("network namespaces %v (before: %v)", ns, netnsBefore))
	}
	if len(left) > 0 {
		fmt.Fprintf(os.Stderr, "teardown left behind: %q\n", left)
		code = 1
	}
	fmt.Fprintf(os.Stderr, "e2e timings: bring-up %.1fs, teardown %.1fs\n", upTook.Seconds(), time.Since(t).Seconds())
	return code
}

// kubectl runs kubectl and fails the test on error; it returns stdout.
func kubectl(t *testing.T, args ...string) string {
	t.Helper()
	out, err := c.Kubectl(t.Context(), args...)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	return out
}

// writeManifest writes an embedded manifest to the run directory.
func writeManifest(t testing.TB, name string) {
	t.Helper()
	b, err := manifests.FS.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(c.RunPath(name), b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// apply writes an embedded manifest to the run directory and applies it; the objects
// are deleted when the test ends.
func apply(t *testing.T, name string) {
	t.Helper()
	writeManifest(t, name)
	file := c.RunPath(name)
	kubectl(t, "apply", "-f", file)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		_, _ = c.Kubectl(ctx, "delete", "-f", file, "--ignore-not-found", "--wait=true", "--timeout=60s")
	})
}

func waitReady(t *testing.T, ns, selector string) {
	t.Helper()
	if out, err := c.Kubectl(t.Context(), "wait", "-n", ns, "--for=condition=Ready", selector, "--timeout=120s"); err != nil {
		d, _ := c.Kubectl(context.Background(), "describe", "-n", ns, selector)
		t.Fatalf("%v\n%s\n%s", err, out, d)
	}
}

// checkTutorial is the tutorial's final check in pod ns/pod: ls shows the two files,
// cat shows the values.
func checkTutorial(t *testing.T, ns, pod string) {
	t.Helper()
	// Without a terminal ls prints one name a line; on a terminal (the tutorial's
	// kubectl exec -it) it prints columns, which ls -C prints anywhere. GNU ls aligns
	// columns with tabs; a terminal shows them as spaces to the next multiple of 8.
	if got := kubectl(t, "exec", "-n", ns, pod, "--", "ls", "/mnt/secrets-store"); got != "DATABASE_LOGIN\nDATABASE_PASSWORD\n" {
		t.Errorf("%s: ls /mnt/secrets-store = %q, want DATABASE_LOGIN and DATABASE_PASSWORD", pod, got)
	}
	if got := kubectl(t, "exec", "-n", ns, pod, "--", "ls", "-C", "/mnt/secrets-store"); expandTabs(got) != "DATABASE_LOGIN  DATABASE_PASSWORD\n" {
		t.Errorf("%s: ls -C /mnt/secrets-store = %q, want the tutorial's %q", pod, got, "DATABASE_LOGIN  DATABASE_PASSWORD\n")
	}
	for file, want := range map[string]string{"DATABASE_LOGIN": "MyDBLoginName", "DATABASE_PASSWORD": "MyP@ssword123456"} {
		if got := kubectl(t, "exec", "-n", ns, pod, "--", "cat", "/mnt/secrets-store/"+file); got != want {
			t.Errorf("%s: cat %s = %q, want %q", pod, file, got, want)
		}
	}
}

// expandTabs renders tabs as a terminal does (stops every 8 columns).
func expandTabs(s string) string {
	var b strings.Builder
	col := 0
	for _, r := range s {
		switch r {
		case '\t':
			n := 8 - col%8
			b.WriteString(strings.Repeat(" ", n))
			col += n
		case '\n':
			b.WriteRune(r)
			col = 0
		default:
			b.WriteRune(r)
			col++
		}
	}
	return b.String()
}

// TestInstalled: kvinject runs the way users run it, installed from the chart alone
// with the local images: the webhook as a Deployment on the pod network behind its
// Service, the node plugin as a DaemonSet registered with the kubelet.
func TestInstalled(t *testing.T) {
	// The release images, pinned by digest (make images builds them the same way).
	want := map[string]string{}
	for obj, ref := range map[string]string{"deployment/kvinject-webhook": image.Webhook, "daemonset/kvinject-csi-node": image.CSINode} {
		digest, err := c.ImageDigest(ref)
		if err != nil {
			t.Fatal(err)
		}
		want[obj] = ref + "@" + digest
	}
	for obj, img := range want {
		got := kubectl(t, "get", "-n", "kvinject", obj, "-o", "jsonpath={.spec.template.spec.containers[0].image}")
		if got != img {
			t.Errorf("%s runs %q, want %q", obj, got, img)
		}
	}
	kubectl(t, "rollout", "status", "-n", "kvinject", "daemonset/kvinject-csi-node", "--timeout=60s")
	kubectl(t, "rollout", "status", "-n", "kvinject", "deployment/kvinject-webhook", "--timeout=60s")
	drivers := kubectl(t, "get", "csinode", cluster.NodeName, "-o", "jsonpath={.spec.drivers[*].name}")
	if drivers != cluster.DriverName {
		t.Errorf("CSINode drivers = %q, want %s", drivers, cluster.DriverName)
	}
}

// TestPlainPod: the cluster runs a pod from the locally imported busybox image and
// kubectl exec reaches it (no kvinject involved: the pod has no annotation).
func TestPlainPod(t *testing.T) {
	kubectl(t, "run", "plain", "--image=kvinject.local/e2e/busybox:v1", "--image-pull-policy=Never",
		"--restart=Never", "--command", "--", "sleep", "86400")
	t.Cleanup(func() { _, _ = c.Kubectl(context.Background(), "delete", "pod", "plain", "--wait=false") })
	waitReady(t, "default", "pod/plain")
	out := kubectl(t, "exec", "plain", "--", "ls", "/")
	for _, d := range []string{"bin", "dev", "etc", "proc", "sys", "tmp"} {
		if !slices.Contains(strings.Fields(out), d) {
			t.Errorf("ls / = %q: no %s", out, d)
		}
	}
	p, err := c.Client.CoreV1().Pods("default").Get(t.Context(), "plain", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Spec.Volumes) != 1 || p.Annotations["kvinject.io/status"] != "" {
		t.Errorf("a pod without kvinject annotations was changed: volumes %v, annotations %v", p.Spec.Volumes, p.Annotations)
	}
}

// TestTutorialAnnotatedPod: the tutorial's pod with only the three annotations.
func TestTutorialAnnotatedPod(t *testing.T) {
	apply(t, "tutorial-pod.yaml")
	pod := "nginx-secrets-store-inline"
	waitReady(t, "default", "pod/"+pod)
	p, err := c.Client.CoreV1().Pods("default").Get(t.Context(), pod, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if p.Labels["aadpodidbinding"] != "azure-kv" || p.Annotations["kvinject.io/status"] != "injected" {
		t.Errorf("patched pod: labels %v, annotations %v", p.Labels, p.Annotations)
	}
	var vol *corev1.Volume
	for i := range p.Spec.Volumes {
		if p.Spec.Volumes[i].Name == "kvinject-secrets" {
			vol = &p.Spec.Volumes[i]
		}
	}
	if vol == nil || vol.CSI == nil || vol.CSI.Driver != cluster.DriverName || vol.CSI.VolumeAttributes["keyvaultName"] != cluster.Vault {
		t.Errorf("no kvinject-secrets CSI volume for %s: %+v", cluster.DriverName, p.Spec.Volumes)
	}
	checkTutorial(t, "default", pod)
}

// TestTutorialOriginalYAML: the tutorial's SecretProviderClass and labelled pod, with
// only the driver name (and the image) changed.
func TestTutorialOriginalYAML(t *testing.T) {
	apply(t, "tutorial-original.yaml")
	pod := "nginx-secrets-store-inline-original"
	waitReady(t, "default", "pod/"+pod)
	p, err := c.Client.CoreV1().Pods("default").Get(t.Context(), pod, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if p.Annotations["kvinject.io/status"] != "" {
		t.Errorf("the webhook touched a pod without kvinject annotations: %v", p.Annotations)
	}
	checkTutorial(t, "default", pod)
}

// TestWorkloadIdentityDeployment: three replicas under the federated service account;
// every replica reads its secrets through the kubelet's token exchanged at Entra ID.
func TestWorkloadIdentityDeployment(t *testing.T) {
	apply(t, "workload-deployment.yaml")
	if out, err := c.Kubectl(t.Context(), "rollout", "status", "deployment/workload-identity-app", "--timeout=180s"); err != nil {
		d, _ := c.Kubectl(context.Background(), "describe", "pods", "-l", "app=workload-identity-app")
		t.Fatalf("%v\n%s\n%s", err, out, d)
	}
	pods, err := c.Client.CoreV1().Pods("default").List(t.Context(), metav1.ListOptions{LabelSelector: "app=workload-identity-app"})
	if err != nil {
		t.Fatal(err)
	}
	ready := 0
	for _, p := range pods.Items {
		if p.DeletionTimestamp != nil || p.Status.Phase != corev1.PodRunning {
			continue
		}
		ready++
		if p.Labels["aadpodidbinding"] != "" {
			t.Errorf("%s: workload-identity pod got a pod-identity label", p.Name)
		}
		if got := p.Spec.Volumes[len(p.Spec.Volumes)-1].CSI; got == nil || got.VolumeAttributes["clientID"] != cluster.ClientID {
			t.Errorf("%s: volume attributes %+v, want clientID %s", p.Name, got, cluster.ClientID)
		}
		checkTutorial(t, "default", p.Name)
	}
	if ready != 3 {
		t.Errorf("%d running replicas, want 3", ready)
	}
}

// TestWorkloadIdentityOnPodNetwork: with podIdentity.enabled=false the node plugin
// runs without host networking, and workload identity still mounts.
func TestWorkloadIdentityOnPodNetwork(t *testing.T) {
	rollout := func(ctx context.Context) error {
		out, err := c.Kubectl(ctx, "rollout", "status", "-n", "kvinject", "daemonset/kvinject-csi-node", "--timeout=120s")
		if err != nil {
			return fmt.Errorf("%w: %s", err, out)
		}
		return nil
	}
	if err := c.ReapplyChart(t.Context(), map[string]any{"podIdentity": map[string]any{"enabled": false}}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx := context.Background()
		if err := c.ReapplyChart(ctx, nil); err != nil {
			t.Errorf("restore the chart: %v", err)
		}
		if err := rollout(ctx); err != nil {
			t.Errorf("restore the chart: %v", err)
		}
	})
	if err := rollout(t.Context()); err != nil {
		t.Fatal(err)
	}
	pods, err := c.Client.CoreV1().Pods("kvinject").List(t.Context(), metav1.ListOptions{LabelSelector: "app.kubernetes.io/component=csi-node"})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pods.Items {
		if p.DeletionTimestamp == nil && (p.Spec.HostNetwork || p.Status.PodIP == cluster.NodeIP) {
			t.Fatalf("node plugin pod %s is on the host network (pod IP %s)", p.Name, p.Status.PodIP)
		}
	}
	// New pods of the workload-identity Deployment mount through the plugin on the
	// pod network.
	apply(t, "workload-deployment.yaml")
	kubectl(t, "rollout", "restart", "deployment/workload-identity-app")
	if out, err := c.Kubectl(t.Context(), "rollout", "status", "deployment/workload-identity-app", "--timeout=180s"); err != nil {
		d, _ := c.Kubectl(context.Background(), "describe", "pods", "-l", "app=workload-identity-app")
		t.Fatalf("%v\n%s\n%s", err, out, d)
	}
	apps, err := c.Client.CoreV1().Pods("default").List(t.Context(), metav1.ListOptions{LabelSelector: "app=workload-identity-app"})
	if err != nil {
		t.Fatal(err)
	}
	checked := 0
	for _, p := range apps.Items {
		if p.DeletionTimestamp == nil && p.Status.Phase == corev1.PodRunning {
			checkTutorial(t, "default", p.Name)
			checked++
		}
	}
	if checked == 0 {
		t.Fatal("no running workload-identity pod to check")
	}
}

// TestAccessDenied: an identity without get on secrets; the pod stays in
// ContainerCreating and its events name the vault, the object and the permission.
func TestAccessDenied(t *testing.T) {
	apply(t, "denied-pod.yaml")
	ns, pod := cluster.DeniedNamespace, "denied"
	msg := failedMount(t, ns, pod)
	for _, want := range []string{`vault "az-key-vault-demo"`, `secret "DatabasePassword"`, "get permission", "ForbiddenByPolicy"} {
		if !strings.Contains(msg, want) {
			t.Errorf("FailedMount event %q does not say %s", msg, want)
		}
	}
	// The kubelet posts the ContainerCreating status separately from the event: wait
	// until kubectl describe shows both.
	var describe string
	testkit.Eventually(t, 30*time.Second, "kubectl describe pod shows the pod waiting with the reason", func(ctx context.Context) error {
		describe = kubectl(t, "describe", "pod", "-n", ns, pod)
		if strings.Contains(describe, "ContainerCreating") && strings.Contains(describe, `lacks get permission on secrets in vault "az-key-vault-demo"`) {
			return nil
		}
		return fmt.Errorf("describe:\n%s", describe)
	})
	p, err := c.Client.CoreV1().Pods(ns).Get(t.Context(), pod, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if p.Status.Phase != corev1.PodPending {
		t.Errorf("phase %s, want Pending (ContainerCreating)", p.Status.Phase)
	}
	for _, want := range []string{"MyP@ssword123456", "eyJ"} {
		if strings.Contains(describe, want) {
			t.Errorf("kubectl describe shows a secret value or token (%q)", want)
		}
	}
}

// TestPluginRestart: the node plugin's pod is deleted while an application pod runs
// (as a DaemonSet update or a crash would do). The application's files stay readable
// the whole time, the DaemonSet's new pod registers again, and rotation resumes.
func TestPluginRestart(t *testing.T) {
	apply(t, "tutorial-pod.yaml")
	pod := "nginx-secrets-store-inline"
	waitReady(t, "default", "pod/"+pod)
	old := kubectl(t, "get", "pods", "-n", cluster.Namespace, "-l", "app.kubernetes.io/component=csi-node", "-o", "jsonpath={.items[0].metadata.uid}")

	var reads, failures atomic.Int32
	var firstFailure atomic.Value
	stop := make(chan struct{})
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		for {
			select {
			case <-stop:
				return
			default:
			}
			out, err := c.Kubectl(context.Background(), "exec", pod, "--", "cat", "/mnt/secrets-store/DATABASE_PASSWORD")
			reads.Add(1)
			if err != nil || out != "MyP@ssword123456" {
				failures.Add(1)
				firstFailure.CompareAndSwap(nil, fmt.Sprintf("%q %v", out, err))
			}
		}
	}()
	kubectl(t, "delete", "pod", "-n", cluster.Namespace, "-l", "app.kubernetes.io/component=csi-node", "--wait=false")
	testkit.Eventually(t, 90*time.Second, "a new node plugin pod, registered with the kubelet", func(ctx context.Context) error {
		out, err := c.Kubectl(ctx, "get", "pods", "-n", cluster.Namespace, "-l", "app.kubernetes.io/component=csi-node",
			"-o", `jsonpath={range .items[*]}{.metadata.uid} {.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}`)
		if err != nil {
			return err
		}
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			uid, ready, _ := strings.Cut(line, " ")
			if uid != old && ready == "True" {
				drivers, err := c.Kubectl(ctx, "get", "csinode", cluster.NodeName, "-o", "jsonpath={.spec.drivers[*].name}")
				if err == nil && drivers == cluster.DriverName {
					return nil
				}
				return fmt.Errorf("new pod ready; CSINode drivers %q", drivers)
			}
		}
		return fmt.Errorf("pods: %s", out)
	})
	time.Sleep(3 * time.Second) // and a little after it
	close(stop)
	<-readerDone
	t.Logf("%d reads across the restart, %d failed", reads.Load(), failures.Load())
	if failures.Load() != 0 || reads.Load() < 5 {
		t.Fatalf("%d of %d reads failed across the plugin's restart (first: %v)", failures.Load(), reads.Load(), firstFailure.Load())
	}

	const rotated = "After-Restart-P@ss"
	if _, err := c.SetSecret(t.Context(), cluster.Vault, "DatabasePassword", rotated); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_, _ = c.SetSecret(context.Background(), cluster.Vault, "DatabasePassword", "MyP@ssword123456")
	})
	testkit.Eventually(t, 60*time.Second, "rotation by the new plugin pod", func(context.Context) error {
		if got := kubectl(t, "exec", pod, "--", "cat", "/mnt/secrets-store/DATABASE_PASSWORD"); got != rotated {
			return fmt.Errorf("the file still says %q", got)
		}
		return nil
	})
}

// TestRotation: a new version in the emulator appears in the running container's file
// (the kubelet republishes every sync period, 10 s here), without restarting the pod.
// It runs last: it changes DatabasePassword, and restores it at the end.
func TestRotation(t *testing.T) {
	apply(t, "tutorial-pod.yaml")
	pod := "nginx-secrets-store-inline"
	waitReady(t, "default", "pod/"+pod)
	before, err := c.Client.CoreV1().Pods("default").Get(t.Context(), pod, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := kubectl(t, "exec", pod, "--", "cat", "/mnt/secrets-store/DATABASE_PASSWORD"); got != "MyP@ssword123456" {
		t.Fatalf("before rotation DATABASE_PASSWORD = %q", got)
	}
	const rotated = "Rotated-P@ssword-2"
	if _, err := c.SetSecret(t.Context(), cluster.Vault, "DatabasePassword", rotated); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_, _ = c.SetSecret(context.Background(), cluster.Vault, "DatabasePassword", "MyP@ssword123456")
	})
	began := time.Now()
	// The kubelet republishes every sync period (10 s here), with jitter.
	testkit.Eventually(t, 45*time.Second, "the new version in the running container", func(context.Context) error {
		if got := kubectl(t, "exec", pod, "--", "cat", "/mnt/secrets-store/DATABASE_PASSWORD"); got != rotated {
			return fmt.Errorf("the file still says %q", got)
		}
		return nil
	})
	t.Logf("new version visible after %.1fs", time.Since(began).Seconds())
	after, err := c.Client.CoreV1().Pods("default").Get(t.Context(), pod, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if after.UID != before.UID || after.Status.ContainerStatuses[0].RestartCount != 0 {
		t.Errorf("the pod was replaced or restarted: uid %s -> %s, restarts %d", before.UID, after.UID, after.Status.ContainerStatuses[0].RestartCount)
	}
	if got := kubectl(t, "exec", pod, "--", "cat", "/mnt/secrets-store/DATABASE_LOGIN"); got != "MyDBLoginName" {
		t.Errorf("DATABASE_LOGIN = %q after rotation", got)
	}
}
