package integration

import (
	"encoding/json"
	"errors"
	"os/exec"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/kvinject/kvinject/internal/testkit"
	"github.com/kvinject/kvinject/pkg/check"
	"github.com/kvinject/kvinject/pkg/contract"
)

const tutorialObjects2 = `array:
  - |
    objectName: DatabaseLogin
    objectType: secret
    objectAlias: DATABASE_LOGIN
`

// TestCheck: kubectl kvinject check against a real API server holding
// SecretProviderClasses and workloads of the Secrets Store driver: each gets the
// right answer with the field and the alternative named, the JSON output is the
// same, and the exit status is 1 because something cannot move.
func TestCheck(t *testing.T) {
	ns := namespace(t, "check", nil)
	ctx := t.Context()
	dyn := dynamic.NewForConfigOrDie(cp.Config)
	kube := kubernetes.NewForConfigOrDie(cp.Config)
	class := func(name string, spec map[string]any) {
		u := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "secrets-store.csi.x-k8s.io/v1", "kind": "SecretProviderClass",
			"metadata": map[string]any{"name": name, "namespace": ns}, "spec": spec,
		}}
		if _, err := dyn.Resource(check.ClassResource).Namespace(ns).Create(ctx, u, metav1.CreateOptions{}); err != nil {
			t.Fatalf("create SecretProviderClass %s: %v", name, err)
		}
	}
	params := func(extra ...string) map[string]any {
		p := map[string]any{"usePodIdentity": "true", "keyvaultName": "az-key-vault-demo", "tenantId": tenant, "objects": tutorialObjects2}
		for i := 0; i < len(extra); i += 2 {
			p[extra[i]] = extra[i+1]
		}
		return p
	}
	class("tutorial", map[string]any{"provider": "azure", "parameters": params()})
	class("with-rg", map[string]any{"provider": "azure", "parameters": params("resourceGroup", "rg")})
	class("synced", map[string]any{"provider": "azure", "parameters": params(), "secretObjects": []any{
		map[string]any{"secretName": "db", "type": "Opaque", "data": []any{map[string]any{"objectName": "DatabaseLogin", "key": "login"}}}}})
	class("vm", map[string]any{"provider": "azure", "parameters": params("usePodIdentity", "false", "useVMManagedIdentity", "true")})
	class("gcp", map[string]any{"provider": "gcp", "parameters": map[string]any{}})

	podSpec := func(class string, readOnly bool) corev1.PodSpec {
		return corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever, Containers: []corev1.Container{{Name: "c", Image: "nginx",
			VolumeMounts: []corev1.VolumeMount{{Name: "secrets", MountPath: "/mnt/secrets-store", ReadOnly: true}}}},
			Volumes: []corev1.Volume{{Name: "secrets", VolumeSource: corev1.VolumeSource{CSI: &corev1.CSIVolumeSource{
				Driver: contract.SecretsStoreDriverName, ReadOnly: ptr.To(readOnly), VolumeAttributes: map[string]string{"secretProviderClass": class}}}}}}
	}
	labels := map[string]string{"app": "x"}
	deployment := func(name, class string, readOnly bool) *appsv1.Deployment {
		spec := podSpec(class, readOnly)
		spec.RestartPolicy = corev1.RestartPolicyAlways
		return &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](0), Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: spec}}}
	}
	for _, d := range []*appsv1.Deployment{deployment("web", "tutorial", true), deployment("rw", "tutorial", false), deployment("rg", "with-rg", true)} {
		if _, err := kube.AppsV1().Deployments(ns).Create(ctx, d, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	job := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Name: "sync", Namespace: ns}, Spec: batchv1.JobSpec{Suspend: ptr.To(true),
		Template: corev1.PodTemplateSpec{Spec: podSpec("synced", true)}}}
	if _, err := kube.BatchV1().Jobs(ns).Create(ctx, job, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "missing", Namespace: ns}, Spec: podSpec("nope", true)}
	if _, err := kube.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	got, err := check.Scan(ctx, kube, dyn, ns)
	if err != nil {
		t.Fatal(err)
	}
	find := func(kind, name string) check.Finding { return check.Finding{Kind: kind, Namespace: ns, Name: name} }
	want := []check.Finding{
		with(find("Deployment", "rg"), check.Changes, []string{"volume secrets: SecretProviderClass with-rg: kvinject ignores spec.parameters resourceGroup (they cannot change the files); remove them"}, nil),
		with(find("Deployment", "rw"), check.Changes, []string{"volume secrets: set readOnly: true (kvinject mounts read-only volumes only)"}, nil),
		with(find("Deployment", "web"), check.Unchanged, nil, nil),
		with(find("Job", "sync"), check.Cannot, nil, []string{"volume secrets: SecretProviderClass synced cannot move: SecretProviderClass check/synced: spec.secretObjects is not supported: kvinject mounts files and syncs no Kubernetes Secret, so environment variables fed from one would go stale; read the mounted files instead (or keep this workload on the Secrets Store CSI driver)"}),
		with(find("Pod", "missing"), check.Cannot, nil, []string{"volume secrets: SecretProviderClass check/nope not found (or not provider azure)"}),
		with(find("SecretProviderClass", "synced"), check.Cannot, nil, []string{"SecretProviderClass check/synced: spec.secretObjects is not supported: kvinject mounts files and syncs no Kubernetes Secret, so environment variables fed from one would go stale; read the mounted files instead (or keep this workload on the Secrets Store CSI driver)"}),
		with(find("SecretProviderClass", "tutorial"), check.Unchanged, nil, nil),
		with(find("SecretProviderClass", "vm"), check.Cannot, nil, []string{"node identity refused: the volume asks for the node's managed identity (useVMManagedIdentity/userAssignedIdentityID), which every pod on the node could use; use pod identity (usePodIdentity), workload identity (clientID) or a service principal (nodePublishSecretRef)"}),
		with(find("SecretProviderClass", "with-rg"), check.Changes, []string{"kvinject ignores spec.parameters resourceGroup (they cannot change the files); remove them"}, nil),
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("findings (-want +got):\n%s", diff)
	}

	// The command: the same answers as JSON, a table, and exit status 1.
	bin := testkit.Binary(t, "./cmd/kubectl-kvinject")
	out, err := exec.CommandContext(ctx, bin, "check", "--kubeconfig", cp.Kubeconfig, "-n", ns, "-o", "json").Output()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Fatalf("check -o json: %v, want exit status 1", err)
	}
	var fromJSON []check.Finding
	if err := json.Unmarshal(out, &fromJSON); err != nil {
		t.Fatalf("check -o json printed %s: %v", out, err)
	}
	if diff := cmp.Diff(want, fromJSON); diff != "" {
		t.Errorf("-o json (-want +got):\n%s", diff)
	}
	table, _ := exec.CommandContext(ctx, bin, "check", "--kubeconfig", cp.Kubeconfig, "-n", ns).Output()
	rows := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(table)), "\n") {
		if f := strings.Fields(line); len(f) >= 5 && f[0] == ns {
			rows[f[1]+"/"+f[2]] = strings.Join(f[3:], " ")
		}
	}
	if !strings.HasPrefix(string(table), "NAMESPACE") || rows["Deployment/web"] != "moves unchanged -" ||
		!strings.HasPrefix(rows["Job/sync"], "cannot move volume secrets: SecretProviderClass synced cannot move") || len(rows) != len(want) {
		t.Errorf("table:\n%s", table)
	}
	t.Logf("kubectl kvinject check -n %s:\n%s", ns, table)
}

func with(f check.Finding, v check.Verdict, changes, problems []string) check.Finding {
	f.Verdict, f.Changes, f.Problems = v, changes, problems
	return f
}
