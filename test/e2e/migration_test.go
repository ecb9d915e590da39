package e2e_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kvinject/kvinject/internal/testkit"
	"github.com/kvinject/kvinject/pkg/contract"
	"github.com/kvinject/kvinject/test/e2e/cluster"
)

// TestMigration follows docs/migration.md step by step on the real node: the Secrets
// Store CSI driver and kvinject side by side under their two names, kubectl kvinject
// check, kubectl kvinject migrate for one workload, then the old driver removed. The
// workload's files before and after the migration are the same, byte for byte, with
// the same names and modes, in the same container only.
//
// The Secrets Store CSI driver and its Azure provider cannot be built here (the module
// proxy serves neither), so kvinject's own node plugin stands in for them, registered
// as secrets-store.csi.k8s.io (cluster.InstallSecretsStoreStandIn): it serves the
// SecretProviderClass as the Azure provider does.
func TestMigration(t *testing.T) {
	ctx := t.Context()
	const ns, app = "default", "migration-app"

	// Step 1: the Secrets Store CSI driver runs, and kvinject is installed beside it
	// under its own name (the cluster's release).
	standIn, err := c.InstallSecretsStoreStandIn(ctx, "secrets-store", "secrets-store")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		_, _ = c.Kubectl(ctx, "delete", "-f", standIn, "--ignore-not-found", "--wait=true", "--timeout=60s")
	})
	drivers := kubectl(t, "get", "csinode", cluster.NodeName, "-o", "jsonpath={.spec.drivers[*].name}")
	if got := strings.Fields(drivers); len(got) != 2 || !slices.Contains(got, cluster.DriverName) || !slices.Contains(got, contract.SecretsStoreDriverName) {
		t.Fatalf("the node's CSI drivers are %q, want both %s and %s", drivers, cluster.DriverName, contract.SecretsStoreDriverName)
	}

	// The workload as it runs on the Secrets Store CSI driver.
	apply(t, "migration.yaml")
	kubectl(t, "rollout", "status", "-n", ns, "deployment/"+app, "--timeout=120s")
	before := appPod(t, ns, app, contract.SecretsStoreDriverName)
	beforeFiles := filesIn(t, ns, before, "app")
	want := map[string]file{"DATABASE_LOGIN": {"440", "MyDBLoginName"}, "DatabasePassword": {"644", "MyP@ssword123456"}}
	if diff := cmp.Diff(want, beforeFiles); diff != "" {
		t.Fatalf("files on the Secrets Store driver (-want +got):\n%s", diff)
	}
	noFiles(t, ns, before, "sidecar")

	// Step 2: kubectl kvinject check says the workload and its class move unchanged.
	findings := check(t, ns)
	for _, what := range []string{"SecretProviderClass/migration-db", "Deployment/migration-app"} {
		if findings[what] != "moves unchanged" {
			t.Errorf("check says %s %q, want moves unchanged (all: %v)", what, findings[what], findings)
		}
	}

	// Step 3: kubectl kvinject migrate rewrites the workload; apply it.
	manifest := c.RunPath("migration.yaml") // written by apply
	migrated, errOut, err := plugin(t, "", "migrate", "-f", manifest)
	if err != nil {
		t.Fatalf("kubectl kvinject migrate: %v\n%s", err, errOut)
	}
	if !strings.Contains(errOut, "migrated: "+manifest+"#2 Deployment default/migration-app") {
		t.Fatalf("migrate's report:\n%s", errOut)
	}
	file := c.RunPath("migration.kvinject.yaml")
	if err := os.WriteFile(file, []byte(migrated), 0o644); err != nil {
		t.Fatal(err)
	}
	kubectl(t, "apply", "-f", file)
	kubectl(t, "rollout", "status", "-n", ns, "deployment/"+app, "--timeout=120s")
	after := appPod(t, ns, app, cluster.DriverName)
	afterFiles := filesIn(t, ns, after, "app")
	if diff := cmp.Diff(beforeFiles, afterFiles); diff != "" {
		t.Fatalf("the files changed with the migration (-before +after):\n%s", diff)
	}
	noFiles(t, ns, after, "sidecar")

	// Step 4: nothing mounts through the old driver any more; remove it. A new pod of
	// the workload gets the same files from kvinject alone.
	if f := check(t, ns); f["Deployment/migration-app"] != "" || f["SecretProviderClass/migration-db"] != "moves unchanged" {
		t.Fatalf("check after the migration: %v; want the class alone", f)
	}
	kubectl(t, "delete", "-f", standIn, "--wait=true", "--timeout=60s")
	if err := testkit.Poll(ctx, 200*time.Millisecond, 30*time.Second, "the Secrets Store driver gone from the node", func(ctx context.Context) error {
		if d := kubectl(t, "get", "csinode", cluster.NodeName, "-o", "jsonpath={.spec.drivers[*].name}"); d != cluster.DriverName {
			return fmt.Errorf("drivers %q", d)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	kubectl(t, "delete", "pod", "-n", ns, after, "--wait=false")
	kubectl(t, "rollout", "status", "-n", ns, "deployment/"+app, "--timeout=120s")
	again := appPod(t, ns, app, cluster.DriverName)
	if again == after {
		t.Fatal("the deleted pod is still the workload's")
	}
	if diff := cmp.Diff(beforeFiles, filesIn(t, ns, again, "app")); diff != "" {
		t.Fatalf("files without the old driver (-before +now):\n%s", diff)
	}
}

// check runs kubectl kvinject check -n ns -o json and returns each finding's verdict
// by kind/name.
func check(t *testing.T, ns string) map[string]string {
	t.Helper()
	out, errOut, err := plugin(t, "", "check", "-n", ns, "-o", "json")
	if err != nil {
		t.Fatalf("kubectl kvinject check: %v\n%s%s", err, out, errOut)
	}
	var findings []struct{ Kind, Name, Verdict string }
	if err := json.Unmarshal([]byte(out), &findings); err != nil {
		t.Fatalf("check -o json: %v\n%s", err, out)
	}
	verdicts := map[string]string{}
	for _, f := range findings {
		verdicts[f.Kind+"/"+f.Name] = f.Verdict
	}
	return verdicts
}

// file is a mounted file as a container sees it.
type file struct{ Mode, Content string }

// filesIn returns the files container of pod sees under /mnt/secrets-store.
func filesIn(t *testing.T, ns, pod, container string) map[string]file {
	t.Helper()
	out := map[string]file{}
	for _, name := range strings.Fields(kubectl(t, "exec", "-n", ns, pod, "-c", container, "--", "ls", "/mnt/secrets-store")) {
		p := "/mnt/secrets-store/" + name
		out[name] = file{
			Mode:    strings.TrimSpace(kubectl(t, "exec", "-n", ns, pod, "-c", container, "--", "stat", "-L", "-c", "%a", p)),
			Content: kubectl(t, "exec", "-n", ns, pod, "-c", container, "--", "cat", p),
		}
	}
	return out
}

// noFiles fails unless container of pod has no /mnt/secrets-store.
func noFiles(t *testing.T, ns, pod, container string) {
	t.Helper()
	if out, err := c.Kubectl(t.Context(), "exec", "-n", ns, pod, "-c", container, "--", "ls", "/mnt/secrets-store"); err == nil {
		t.Errorf("container %s of %s sees /mnt/secrets-store: %q", container, pod, out)
	}
}

// appPod waits for the workload's one pod, not terminating and ready, whose secrets
// volume is of driver, and returns its name.
func appPod(t *testing.T, ns, app, driver string) string {
	t.Helper()
	var name string
	err := testkit.Poll(t.Context(), 200*time.Millisecond, 120*time.Second, "the pod of "+app+" on "+driver, func(ctx context.Context) error {
		pods, err := c.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=" + app})
		if err != nil {
			return err
		}
		if len(pods.Items) != 1 {
			return fmt.Errorf("%d pods", len(pods.Items))
		}
		p := pods.Items[0]
		ready := p.DeletionTimestamp == nil
		for _, cond := range p.Status.Conditions {
			if cond.Type == corev1.PodReady && cond.Status != corev1.ConditionTrue {
				ready = false
			}
		}
		if !ready || p.Status.Phase != corev1.PodRunning {
			return fmt.Errorf("pod %s is %s", p.Name, p.Status.Phase)
		}
		for _, v := range p.Spec.Volumes {
			if v.CSI != nil && v.CSI.Driver != driver {
				return fmt.Errorf("pod %s mounts volume %s of %s", p.Name, v.Name, v.CSI.Driver)
			}
		}
		name = p.Name
		return nil
	})
	if err != nil {
		d, _ := c.Kubectl(context.Background(), "describe", "pods", "-n", ns, "-l", "app="+app)
		t.Fatalf("%v\n%s", err, d)
	}
	return name
}

// plugin runs kubectl kvinject as a user does: kubectl finds kubectl-kvinject on the
// PATH; the kubeconfig comes from KUBECONFIG.
func plugin(t *testing.T, stdin string, args ...string) (string, string, error) {
	t.Helper()
	dir := t.TempDir()
	if err := os.Symlink(testkit.Binary(t, "./cmd/kubectl-kvinject"), filepath.Join(dir, "kubectl-kvinject")); err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(t.Context(), c.KubectlPath(), append([]string{"kvinject"}, args...)...)
	cmd.Env = append(os.Environ(), "PATH="+dir+string(os.PathListSeparator)+os.Getenv("PATH"), "KUBECONFIG="+c.Kubeconfig)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errOut strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	return out.String(), errOut.String(), err
}
