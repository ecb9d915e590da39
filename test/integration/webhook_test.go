package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	admissionv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	crwebhook "sigs.k8s.io/controller-runtime/pkg/webhook"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/kvinject/kvinject/internal/testkit"
	"github.com/kvinject/kvinject/pkg/contract"
)

// tutorialObjects is the objects attribute DESIGN.md's tutorial pod must carry.
const tutorialObjects = `array:
- |
  objectAlias: DATABASE_LOGIN
  objectName: DatabaseLogin
  objectType: secret
- |
  objectAlias: DATABASE_PASSWORD
  objectName: DatabasePassword
  objectType: secret
`

var readOnly = true

func wantVolume(attrs map[string]string) corev1.Volume {
	return corev1.Volume{Name: contract.VolumeName, VolumeSource: corev1.VolumeSource{CSI: &corev1.CSIVolumeSource{
		Driver: contract.DefaultDriverName, ReadOnly: &readOnly, VolumeAttributes: attrs,
	}}}
}

func tutorialAttrs(vault, objects string) map[string]string {
	return map[string]string{"keyvaultName": vault, "tenantId": tenant, "cloudName": "AzurePublicCloud", "usePodIdentity": "true", "objects": objects}
}

var wantMount = corev1.VolumeMount{Name: contract.VolumeName, MountPath: "/mnt/secrets-store", ReadOnly: true}

// assertInjected checks what the API server stored: label, volume, mounts, status.
func assertInjected(t *testing.T, p *corev1.Pod, label string, volume corev1.Volume, containers ...string) {
	t.Helper()
	if got := p.Labels["aadpodidbinding"]; got != label {
		t.Errorf("pod %s: label aadpodidbinding = %q, want %q", p.Name, got, label)
	}
	if got := p.Annotations[contract.AnnotationStatus]; got != contract.StatusInjected {
		t.Errorf("pod %s: status annotation = %q", p.Name, got)
	}
	var found *corev1.Volume
	for i := range p.Spec.Volumes {
		if p.Spec.Volumes[i].Name == contract.VolumeName {
			found = &p.Spec.Volumes[i]
		}
	}
	if found == nil {
		t.Fatalf("pod %s: no volume %s; volumes %v", p.Name, contract.VolumeName, p.Spec.Volumes)
	}
	if diff := cmp.Diff(volume, *found); diff != "" {
		t.Errorf("pod %s: volume (-want +got):\n%s", p.Name, diff)
	}
	all := append(append([]corev1.Container{}, p.Spec.InitContainers...), p.Spec.Containers...)
	for _, c := range all {
		want := false
		for _, name := range containers {
			want = want || name == c.Name
		}
		has := false
		for _, m := range c.VolumeMounts {
			if m.Name == contract.VolumeName {
				has = true
				if diff := cmp.Diff(wantMount, m); diff != "" {
					t.Errorf("pod %s container %s: mount (-want +got):\n%s", p.Name, c.Name, diff)
				}
			}
		}
		if has != want {
			t.Errorf("pod %s container %s: mounts the volume: %v, want %v", p.Name, c.Name, has, want)
		}
	}
}

func TestTutorialPod(t *testing.T) {
	startWebhook(t)
	ns := namespace(t, "tutorial", nil)
	if err := cp.Client.Create(t.Context(), tutorialPod(ns, "nginx-secrets-store-inline")); err != nil {
		t.Fatal(err)
	}
	var stored corev1.Pod
	if err := cp.Client.Get(t.Context(), client.ObjectKey{Namespace: ns, Name: "nginx-secrets-store-inline"}, &stored); err != nil {
		t.Fatal(err)
	}
	assertInjected(t, &stored, "azure-kv", wantVolume(tutorialAttrs("az-key-vault-demo", tutorialObjects)), "nginx")
}

func TestDeploymentReplicasAndRollout(t *testing.T) {
	startWebhook(t)
	ns := namespace(t, "deployment", nil)
	replicas := int32(3)
	labels := map[string]string{"app": "web"}
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: ns},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			// Without a kubelet no pod becomes available, so a rolling update would stall
			// after the surge; Recreate replaces all three.
			Strategy: appsv1.DeploymentStrategy{Type: appsv1.RecreateDeploymentStrategyType},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels, Annotations: tutorialAnnotations()},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "nginx", Image: "nginx"}}},
			},
		},
	}
	if err := cp.Client.Create(t.Context(), d); err != nil {
		t.Fatal(err)
	}
	pods := waitPods(t, ns, labels, 3, func(p *corev1.Pod) bool { return true })
	for i := range pods {
		assertInjected(t, &pods[i], "azure-kv", wantVolume(tutorialAttrs("az-key-vault-demo", tutorialObjects)), "nginx")
	}

	// Roll out a new alias list: the new ReplicaSet's pods get the new list.
	// The deployment controller writes the status meanwhile: retry on a conflict.
	const newList = "DatabaseLogin=login, secret:DatabasePassword=password;mode=0400"
	if err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if err := cp.Client.Get(t.Context(), client.ObjectKeyFromObject(d), d); err != nil {
			return err
		}
		d.Spec.Template.Annotations[contract.AnnotationSecrets] = newList
		return cp.Client.Update(t.Context(), d)
	}); err != nil {
		t.Fatal(err)
	}
	newObjects := `array:
- |
  objectAlias: login
  objectName: DatabaseLogin
  objectType: secret
- |
  filePermission: "0400"
  objectAlias: password
  objectName: DatabasePassword
  objectType: secret
`
	pods = waitPods(t, ns, labels, 3, func(p *corev1.Pod) bool {
		return p.Annotations[contract.AnnotationSecrets] == newList
	})
	for i := range pods {
		if pods[i].DeletionTimestamp != nil {
			continue
		}
		assertInjected(t, &pods[i], "azure-kv", wantVolume(tutorialAttrs("az-key-vault-demo", newObjects)), "nginx")
	}
}

// waitPods waits until exactly n live pods with labels match keep, and returns them.
func waitPods(t *testing.T, ns string, labels map[string]string, n int, keep func(*corev1.Pod) bool) []corev1.Pod {
	t.Helper()
	var matched []corev1.Pod
	testkit.Eventually(t, 60*time.Second, fmt.Sprintf("%d pods in %s", n, ns), func(context.Context) error {
		var list corev1.PodList
		if err := cp.Client.List(t.Context(), &list, client.InNamespace(ns), client.MatchingLabels(labels)); err != nil {
			return err
		}
		matched = matched[:0]
		live := 0
		for _, p := range list.Items {
			if p.DeletionTimestamp != nil {
				continue
			}
			live++
			if keep(&p) {
				matched = append(matched, p)
			}
		}
		if len(matched) != n || live != n {
			return fmt.Errorf("%d live pods, %d of them matching, want %d", live, len(matched), n)
		}
		return nil
	})
	return matched
}

func TestPodWithoutAnnotationNeverReachesWebhook(t *testing.T) {
	w := startWebhook(t)
	ns := namespace(t, "plain", nil)
	requests := func() float64 {
		return w.metric(t, "controller_runtime_webhook_requests_total", `webhook="/mutate-pod"`)
	}
	reviews := func() float64 { return w.metric(t, "kvinject_webhook_reviews_total") }
	beforeRequests, beforeReviews := requests(), reviews()
	for i := 0; i < 5; i++ {
		if err := cp.Client.Create(t.Context(), plainPod(ns, fmt.Sprintf("plain-%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	if r, v := requests(), reviews(); r != beforeRequests || v != beforeReviews {
		t.Fatalf("pods without the annotation reached the webhook: requests %v -> %v, reviews %v -> %v", beforeRequests, r, beforeReviews, v)
	}
	// The counters do move for an annotated pod, so the check above can fail.
	if err := cp.Client.Create(t.Context(), tutorialPod(ns, "annotated")); err != nil {
		t.Fatal(err)
	}
	if r := requests(); r != beforeRequests+1 {
		t.Fatalf("an annotated pod: requests %v -> %v, want +1", beforeRequests, r)
	}
	if v := w.metric(t, "kvinject_webhook_reviews_total", `outcome="injected"`); v < 1 {
		t.Fatalf("injected reviews = %v", v)
	}
}

func TestInvalidAliasListIsRefused(t *testing.T) {
	startWebhook(t)
	ns := namespace(t, "invalid", nil)
	p := tutorialPod(ns, "bad")
	p.Annotations[contract.AnnotationSecrets] = "DatabaseLogin=DATABASE_LOGIN, DatabasePassword=../../etc/passwd"
	err := cp.Client.Create(t.Context(), p)
	want := `admission webhook "pods.kvinject.io" denied the request: kvinject.io/secrets: entry 2 "DatabasePassword=../../etc/passwd": the file name "../../etc/passwd" contains a path separator; use a plain file name`
	if err == nil || err.Error() != want {
		t.Fatalf("create: %v\nwant: %s", err, want)
	}
	if !apierrors.IsForbidden(err) {
		t.Fatalf("create: %v is not Forbidden", err)
	}
	var stored corev1.Pod
	if err := cp.Client.Get(t.Context(), client.ObjectKeyFromObject(p), &stored); !apierrors.IsNotFound(err) {
		t.Fatalf("refused pod was stored: %v", err)
	}
}

func TestServerSideDryRun(t *testing.T) {
	startWebhook(t)
	ns := namespace(t, "dryrun", nil)
	dry := tutorialPod(ns, "dry")
	if err := cp.Client.Create(t.Context(), dry, client.DryRunAll); err != nil {
		t.Fatal(err)
	}
	assertInjected(t, dry, "azure-kv", wantVolume(tutorialAttrs("az-key-vault-demo", tutorialObjects)), "nginx")
	var stored corev1.Pod
	if err := cp.Client.Get(t.Context(), client.ObjectKeyFromObject(dry), &stored); !apierrors.IsNotFound(err) {
		t.Fatalf("dry-run stored the pod: %v", err)
	}
	// A real create gives the same pod spec and labels.
	real := tutorialPod(ns, "dry")
	if err := cp.Client.Create(t.Context(), real); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(dry.Spec, real.Spec); diff != "" {
		t.Fatalf("dry-run and real create differ (-dry +real):\n%s", diff)
	}
	if diff := cmp.Diff(dry.Labels, real.Labels); diff != "" {
		t.Fatalf("labels differ (-dry +real):\n%s", diff)
	}
}

func TestWebhookDown(t *testing.T) {
	w := startWebhook(t)
	ns := namespace(t, "down", nil)
	w.stop()
	err := cp.Client.Create(t.Context(), tutorialPod(ns, "annotated"))
	if err == nil || !strings.Contains(err.Error(), `failed calling webhook "pods.kvinject.io"`) {
		t.Fatalf("annotated pod with the webhook down: %v, want a webhook call failure", err)
	}
	if err := cp.Client.Create(t.Context(), plainPod(ns, "plain")); err != nil {
		t.Fatalf("a pod without the annotation must not depend on the webhook: %v", err)
	}
}

func TestNamespaceDefaults(t *testing.T) {
	startWebhook(t)
	ns := namespace(t, "team-a", map[string]string{
		contract.AnnotationVault:    "team-a-vault",
		contract.AnnotationIdentity: "team-a-id",
	})
	c, warnings := warningClient(t)
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "only-secrets", Namespace: ns, Annotations: map[string]string{
			contract.AnnotationSecrets: "DatabaseLogin=DATABASE_LOGIN, DatabasePassword=DATABASE_PASSWORD",
		}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "app"}}},
	}
	if err := c.Create(t.Context(), p); err != nil {
		t.Fatal(err)
	}
	var stored corev1.Pod
	if err := cp.Client.Get(t.Context(), client.ObjectKeyFromObject(p), &stored); err != nil {
		t.Fatal(err)
	}
	assertInjected(t, &stored, "team-a-id", wantVolume(tutorialAttrs("team-a-vault", tutorialObjects)), "app")
	want := []string{
		`kvinject.io/vault: using "team-a-vault" from namespace "team-a"`,
		`kvinject.io/tenant-id: using "72f988bf-86f1-41af-91ab-2d7cd011db47" from the cluster configuration`,
		`kvinject.io/identity: using "team-a-id" from namespace "team-a"`,
	}
	if diff := cmp.Diff(want, warnings.get()); diff != "" {
		t.Fatalf("warnings the client saw (-want +got):\n%s", diff)
	}
}

func TestWorkloadIdentityFromServiceAccount(t *testing.T) {
	startWebhook(t)
	ns := namespace(t, "workload", nil)
	const clientID = "6b9e2a55-6c0b-4a1f-9a8e-2f1f6f1d9c01"
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "app", Namespace: ns,
		Annotations: map[string]string{contract.AnnotationWorkloadClientID: clientID}}}
	if err := cp.Client.Create(t.Context(), sa); err != nil {
		t.Fatal(err)
	}
	p := tutorialPod(ns, "wi")
	delete(p.Annotations, contract.AnnotationIdentity)
	p.Spec.ServiceAccountName = "app"
	// The webhook reads service accounts from its cache: retry until it has seen it.
	testkit.Eventually(t, 10*time.Second, "pod admitted", func(context.Context) error { return cp.Client.Create(t.Context(), p.DeepCopy()) })
	var stored corev1.Pod
	if err := cp.Client.Get(t.Context(), client.ObjectKeyFromObject(p), &stored); err != nil {
		t.Fatal(err)
	}
	attrs := tutorialAttrs("az-key-vault-demo", tutorialObjects)
	attrs["usePodIdentity"], attrs["clientID"] = "false", clientID
	assertInjected(t, &stored, "", wantVolume(attrs), "nginx")
}

// TestReinvocation registers a second mutating webhook, called after ours, that adds a
// container. With reinvocationPolicy IfNeeded the API server calls ours again and the
// added container gets the mount too.
func TestReinvocation(t *testing.T) {
	startWebhook(t)
	ns := namespace(t, "reinvoke", nil)
	port := testkit.MustFreePort(t)
	sidecar := crwebhook.NewServer(crwebhook.Options{Host: "127.0.0.1", Port: port, CertDir: certDir})
	sidecar.Register("/sidecar", &admission.Webhook{Handler: admission.HandlerFunc(addSidecar)})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); _ = sidecar.Start(ctx) }()
	t.Cleanup(func() { cancel(); wg.Wait() })

	url := fmt.Sprintf("https://127.0.0.1:%d/sidecar", port)
	none, never, fail := admissionv1.SideEffectClassNone, admissionv1.NeverReinvocationPolicy, admissionv1.Fail
	// Mutating webhooks run in the order of their configurations' names: "zz-..."
	// comes after "kvinject".
	cfg := &admissionv1.MutatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: "zz-test-sidecar-injector"},
		Webhooks: []admissionv1.MutatingWebhook{{
			Name:                    "sidecar.test.kvinject.io",
			AdmissionReviewVersions: []string{"v1"},
			ClientConfig:            admissionv1.WebhookClientConfig{URL: &url, CABundle: ca.CertPEM},
			Rules: []admissionv1.RuleWithOperations{{
				Operations: []admissionv1.OperationType{admissionv1.Create},
				Rule:       admissionv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}},
			}},
			NamespaceSelector:  &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": ns}},
			SideEffects:        &none,
			ReinvocationPolicy: &never,
			FailurePolicy:      &fail,
		}},
	}
	if err := cp.Client.Create(t.Context(), cfg); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cp.Client.Delete(context.Background(), cfg) })

	var stored corev1.Pod
	testkit.Eventually(t, 30*time.Second, "sidecar webhook active", func(context.Context) error {
		p := tutorialPod(ns, "reinvoked")
		if err := cp.Client.Create(t.Context(), p, client.DryRunAll); err != nil {
			return err
		}
		if len(p.Spec.Containers) != 2 {
			return fmt.Errorf("sidecar not added yet")
		}
		return nil
	})
	if err := cp.Client.Create(t.Context(), tutorialPod(ns, "reinvoked")); err != nil {
		t.Fatal(err)
	}
	if err := cp.Client.Get(t.Context(), client.ObjectKey{Namespace: ns, Name: "reinvoked"}, &stored); err != nil {
		t.Fatal(err)
	}
	if len(stored.Spec.Containers) != 2 || stored.Spec.Containers[1].Name != "late-sidecar" {
		t.Fatalf("containers: %v", stored.Spec.Containers)
	}
	assertInjected(t, &stored, "azure-kv", wantVolume(tutorialAttrs("az-key-vault-demo", tutorialObjects)), "nginx", "late-sidecar")
}

// addSidecar is the second webhook: it appends a container to every pod lacking it.
func addSidecar(_ context.Context, req admission.Request) admission.Response {
	var p corev1.Pod
	if err := json.Unmarshal(req.Object.Raw, &p); err != nil {
		return admission.Errored(http.StatusBadRequest, err)
	}
	for _, c := range p.Spec.Containers {
		if c.Name == "late-sidecar" {
			return admission.Allowed("")
		}
	}
	p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: "late-sidecar", Image: "envoy"})
	b, err := json.Marshal(&p)
	if err != nil {
		return admission.Errored(http.StatusInternalServerError, err)
	}
	return admission.PatchResponseFromRaw(req.Object.Raw, b)
}

// warningClient returns a client of the API server that records the warnings it
// returns.
func warningClient(t *testing.T) (client.Client, *warningRecorder) {
	t.Helper()
	warnings := &warningRecorder{}
	cfg := rest.CopyConfig(cp.Config)
	cfg.WarningHandler = warnings
	c, err := client.New(cfg, client.Options{Scheme: cp.Client.Scheme()})
	if err != nil {
		t.Fatal(err)
	}
	return c, warnings
}

// warningRecorder collects the warnings the API server returns.
type warningRecorder struct {
	mu       sync.Mutex
	warnings []string
}

func (w *warningRecorder) HandleWarningHeader(code int, _ string, text string) {
	if code != 299 {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.warnings = append(w.warnings, text)
}

func (w *warningRecorder) get() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.warnings...)
}

// TestSecretsStoreVolumeGivesWay: a pod half way through its migration (kvinject's
// annotations, and the Secrets Store CSI volume still mounted at the same path) is
// stored with kvinject's volume in that place and without the old volume, and the
// client that created it is told which one won.
func TestSecretsStoreVolumeGivesWay(t *testing.T) {
	startWebhook(t)
	ns := namespace(t, "half-migrated", nil)
	c, warnings := warningClient(t)
	p := tutorialPod(ns, "half-migrated")
	p.Labels = map[string]string{"aadpodidbinding": "azure-kv"}
	p.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "secrets-store-inline", MountPath: "/mnt/secrets-store", ReadOnly: true}}
	p.Spec.Volumes = []corev1.Volume{{Name: "secrets-store-inline", VolumeSource: corev1.VolumeSource{CSI: &corev1.CSIVolumeSource{
		Driver: contract.SecretsStoreDriverName, ReadOnly: ptr.To(true), VolumeAttributes: map[string]string{"secretProviderClass": "azure-kvname"}}}}}
	if err := c.Create(t.Context(), p); err != nil {
		t.Fatal(err)
	}
	var stored corev1.Pod
	if err := cp.Client.Get(t.Context(), client.ObjectKeyFromObject(p), &stored); err != nil {
		t.Fatal(err)
	}
	assertInjected(t, &stored, "azure-kv", wantVolume(tutorialAttrs("az-key-vault-demo", tutorialObjects)), "nginx")
	if len(stored.Spec.Volumes) != 1 || len(stored.Spec.Containers[0].VolumeMounts) != 1 {
		t.Errorf("stored pod keeps the Secrets Store volume or mount: volumes %v, mounts %v", stored.Spec.Volumes, stored.Spec.Containers[0].VolumeMounts)
	}
	want := []string{
		`kvinject.io/tenant-id: using "72f988bf-86f1-41af-91ab-2d7cd011db47" from the cluster configuration`,
		`container "nginx" mounted the Secrets Store CSI driver's volume "secrets-store-inline" at /mnt/secrets-store; kvinject's volume takes its place there, as kvinject.io/secrets asks: remove that mount (or kvinject.io/secrets to keep the Secrets Store volume)`,
		`volume "secrets-store-inline" of the Secrets Store CSI driver is no longer mounted by any container and is left out of the pod: remove it from the pod template`,
	}
	if diff := cmp.Diff(want, warnings.get()); diff != "" {
		t.Fatalf("warnings the client saw (-want +got):\n%s", diff)
	}
}
