package cluster

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/kvinject/kvinject/internal/testkit"
	"github.com/kvinject/kvinject/test/e2e/manifests"
)

// Main is the e2e command (test/cmd/e2e): up, down, demo, emulator.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return errors.New("usage: e2e up|down|demo|emulator [flags]")
	}
	fs := flag.NewFlagSet("e2e "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("dir", "", "state directory (default $KVINJECT_CACHE/e2e, else <repo>/.cache/e2e)")
	var eo EmulatorOptions
	if args[0] == "emulator" {
		fs.StringVar(&eo.SeedFile, "seed", "", "tutorial seed")
		fs.StringVar(&eo.SAPublicKey, "sa-public-key", "", "API server service-account public key (PEM)")
		fs.StringVar(&eo.StateDir, "state-dir", "", "emulator state directory")
		fs.StringVar(&eo.CADir, "ca-dir", "", "directory of the cluster CA (ca.crt, ca.key) that issues the emulator's certificate")
	}
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if args[0] == "emulator" {
		return RunEmulator(ctx, eo, stderr)
	}
	repo, err := testkit.RepoRoot()
	if err != nil {
		return err
	}
	if *dir == "" {
		*dir = DefaultDir(repo)
	}
	switch args[0] {
	case "up":
		_, err := UpAll(ctx, repo, *dir)
		if err == nil {
			fmt.Fprintf(stdout, "\nexport KUBECONFIG=%s\n# tear down: make e2e-down\n", KubeconfigPath(*dir))
		}
		return err
	case "down":
		return Down(*dir, nil)
	case "demo":
		return Demo(ctx, repo, *dir, stdout)
	}
	return fmt.Errorf("unknown command %q", args[0])
}

// DefaultDir is the state directory: $KVINJECT_CACHE/e2e, else <repo>/.cache/e2e.
func DefaultDir(repo string) string {
	if c := os.Getenv("KVINJECT_CACHE"); c != "" {
		return filepath.Join(c, "e2e")
	}
	return filepath.Join(repo, ".cache", "e2e")
}

// UpAll installs missing Debian packages, builds (or reuses) the Kubernetes binaries
// and brings up the cluster with kvinject.
func UpAll(ctx context.Context, repo, dir string) (*Cluster, error) {
	began := time.Now()
	step := func(format string, args ...any) {
		fmt.Fprintf(os.Stderr, "[e2e %5.1fs] %s\n", time.Since(began).Seconds(), fmt.Sprintf(format, args...))
	}
	step("checking Debian packages (test/e2e/install-deps.sh)")
	deps := exec.CommandContext(ctx, filepath.Join(repo, "test", "e2e", "install-deps.sh"))
	deps.Stdout, deps.Stderr = os.Stderr, os.Stderr
	if err := deps.Run(); err != nil {
		return nil, fmt.Errorf("install-deps: %w", err)
	}
	step("Kubernetes binaries (test/tools/build.sh; about 13 minutes the first time, instant after)")
	tb := exec.CommandContext(ctx, filepath.Join(repo, "test", "tools", "build.sh"))
	tb.Stderr = os.Stderr
	out, err := tb.Output()
	if err != nil {
		return nil, fmt.Errorf("test/tools/build.sh: %w", err)
	}
	tools := strings.TrimSpace(string(out))
	return Up(ctx, Options{Dir: dir, RepoRoot: repo, ToolsDir: tools, Kvinject: true, Log: func(format string, args ...any) {
		step(format, args...)
	}})
}

// Demo brings the stack up (or reuses a running one), applies the tutorial's
// annotated pod, prints what the webhook patched in and the tutorial's ls/cat check,
// and leaves everything running.
func Demo(ctx context.Context, repo, dir string, out io.Writer) error {
	began := time.Now()
	var c *Cluster
	var err error
	if IsUp(dir) {
		if c, err = Attach(dir); err == nil {
			_, err = c.Client.CoreV1().Nodes().Get(ctx, NodeName, metav1.GetOptions{})
		}
		if err != nil {
			fmt.Fprintf(out, "the recorded cluster does not answer (%v): starting over\n", err)
			c = nil
		} else {
			fmt.Fprintf(out, "reusing the running cluster in %s\n", dir)
		}
	}
	if c == nil {
		if c, err = UpAll(ctx, repo, dir); err != nil {
			return err
		}
	}
	pod := "nginx-secrets-store-inline"
	_, _ = c.Kubectl(ctx, "delete", "pod", pod, "--ignore-not-found", "--wait=true", "--timeout=60s")
	manifest, _ := manifests.FS.ReadFile("tutorial-pod.yaml")
	fmt.Fprintf(out, "\n=== the tutorial's pod, written for kvinject (test/e2e/manifests/tutorial-pod.yaml)\n%s", manifest)
	file := c.path("tutorial-pod.yaml")
	if err := os.WriteFile(file, manifest, 0o644); err != nil {
		return err
	}
	if o, err := c.Kubectl(ctx, "apply", "-f", file); err != nil {
		return fmt.Errorf("%w: %s", err, o)
	}
	if o, err := c.Kubectl(ctx, "wait", "--for=condition=Ready", "pod/"+pod, "--timeout=120s"); err != nil {
		d, _ := c.Kubectl(ctx, "describe", "pod", pod)
		return fmt.Errorf("%w: %s\n%s", err, o, d)
	}
	p, err := c.Client.CoreV1().Pods("default").Get(ctx, pod, metav1.GetOptions{})
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "\n=== what the webhook patched in (kubectl get pod %s -o yaml, relevant parts)\n%s", pod, PatchedParts(p))
	for _, cmd := range [][]string{
		{"ls", "/mnt/secrets-store"},
		{"ls", "-C", "/mnt/secrets-store"}, // what the tutorial's kubectl exec -it shows
		{"cat", "/mnt/secrets-store/DATABASE_LOGIN"},
		{"cat", "/mnt/secrets-store/DATABASE_PASSWORD"},
	} {
		o, err := c.Kubectl(ctx, append([]string{"exec", pod, "--"}, cmd...)...)
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "\n$ kubectl exec %s -- %s\n%s", pod, strings.Join(cmd, " "), o)
		if !strings.HasSuffix(o, "\n") {
			fmt.Fprintln(out)
		}
	}
	fmt.Fprintf(out, "\ndemo ready in %.1fs; the cluster keeps running:\n\n  export KUBECONFIG=%s\n  %s get pods -A\n\ntear it down with: make demo-down\n",
		time.Since(began).Seconds(), c.Kubeconfig, c.KubectlPath())
	return nil
}

// PatchedParts renders the parts of a pod the webhook writes: labels, the status
// annotation, the kvinject-secrets volume and the containers' volume mounts.
func PatchedParts(p *corev1.Pod) string {
	type ctr struct {
		Name         string               `json:"name"`
		VolumeMounts []corev1.VolumeMount `json:"volumeMounts,omitempty"`
	}
	view := struct {
		Metadata struct {
			Labels      map[string]string `json:"labels,omitempty"`
			Annotations map[string]string `json:"annotations,omitempty"`
		} `json:"metadata"`
		Spec struct {
			Volumes    []corev1.Volume `json:"volumes"`
			Containers []ctr           `json:"containers"`
		} `json:"spec"`
	}{}
	view.Metadata.Labels = p.Labels
	view.Metadata.Annotations = map[string]string{}
	for k, v := range p.Annotations {
		if strings.HasPrefix(k, "kvinject.io/") {
			view.Metadata.Annotations[k] = v
		}
	}
	for _, v := range p.Spec.Volumes {
		if v.CSI != nil {
			view.Spec.Volumes = append(view.Spec.Volumes, v)
		}
	}
	for _, c := range p.Spec.Containers {
		var mounts []corev1.VolumeMount
		for _, m := range c.VolumeMounts {
			if !strings.HasPrefix(m.MountPath, "/var/run/secrets/kubernetes.io") {
				mounts = append(mounts, m)
			}
		}
		view.Spec.Containers = append(view.Spec.Containers, ctr{Name: c.Name, VolumeMounts: mounts})
	}
	b, err := yaml.Marshal(view)
	if err != nil {
		return err.Error()
	}
	return string(b)
}
