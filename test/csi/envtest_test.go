package csi

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	csiapi "github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/yaml"

	"github.com/kvinject/kvinject/internal/testkit"
	"github.com/kvinject/kvinject/pkg/contract"
	"github.com/kvinject/kvinject/pkg/csi"
	"github.com/kvinject/kvinject/test/emulator"
	"github.com/kvinject/kvinject/test/framework"
)

var spcGVR = schema.GroupVersionResource{Group: "secrets-store.csi.x-k8s.io", Version: "v1", Resource: "secretproviderclasses"}

// startAPIServer starts a kube-apiserver and etcd (envtest, with the binaries in
// assets) holding the SecretProviderClass and KeyVaultAccessPolicy CRDs, until the
// test ends.
func startAPIServer(t testing.TB, assets string) (*envtest.Environment, *rest.Config) {
	t.Helper()
	policyCRDs, err := framework.PolicyCRDDir()
	if err != nil {
		t.Fatal(err)
	}
	env := &envtest.Environment{BinaryAssetsDirectory: assets, CRDDirectoryPaths: []string{"testdata/crds", policyCRDs}, ErrorIfCRDPathMissing: true}
	rc, err := env.Start()
	if err != nil {
		t.Fatalf("start envtest: %v", err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	return env, rc
}

// TestSecretProviderClassFromAPIServer publishes the tutorial's volume, which names
// the tutorial's SecretProviderClass, read from a real API server; and records a failed
// refresh as an Event on the pod there.
func TestSecretProviderClassFromAPIServer(t *testing.T) {
	assets := framework.Assets(t)
	testkit.RequireRoot(t)
	_, rc := startAPIServer(t, assets)
	kube := kubernetes.NewForConfigOrDie(rc)
	dyn := dynamic.NewForConfigOrDie(rc)
	ctx := t.Context()

	raw, err := os.ReadFile("testdata/tutorial-spc.yaml")
	if err != nil {
		t.Fatal(err)
	}
	spc := &unstructured.Unstructured{}
	if err := yaml.Unmarshal(raw, &spc.Object); err != nil {
		t.Fatal(err)
	}
	if _, err := dyn.Resource(spcGVR).Namespace("default").Create(ctx, spc, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create SecretProviderClass: %v", err)
	}
	other := spc.DeepCopy()
	other.SetName("gcp-class")
	_ = unstructured.SetNestedField(other.Object, "gcp", "spec", "provider")
	if _, err := dyn.Resource(spcGVR).Namespace("default").Create(ctx, other, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	// A class that syncs a Kubernetes Secret, and one that asks for the token proxy:
	// fields kvinject does not honour fail the mount instead of being ignored.
	synced := spc.DeepCopy()
	synced.SetName("synced-class")
	if err := unstructured.SetNestedSlice(synced.Object, []any{map[string]any{
		"secretName": "db", "type": "Opaque", "data": []any{map[string]any{"objectName": "DatabasePassword", "key": "password"}},
	}}, "spec", "secretObjects"); err != nil {
		t.Fatal(err)
	}
	proxy := spc.DeepCopy()
	proxy.SetName("token-proxy")
	if err := unstructured.SetNestedField(proxy.Object, "true", "spec", "parameters", "useAzureTokenProxy"); err != nil {
		t.Fatal(err)
	}
	for _, c := range []*unstructured.Unstructured{synced, proxy} {
		if _, err := dyn.Resource(spcGVR).Namespace("default").Create(ctx, c, metav1.CreateOptions{}); err != nil {
			t.Fatalf("create %s: %v", c.GetName(), err)
		}
	}

	w := startWorld(t)
	root := t.TempDir()
	kubeconfig := framework.WriteKubeconfig(t, rc)
	p := newPlugin(t, w, root, csi.PluginOptions{}, func(c *csi.Options) { c.Kubeconfig = kubeconfig })
	classVolume := func(name, class string) *csiapi.NodePublishVolumeRequest {
		return volume{name: name, attrs: map[string]string{
			contract.AttrSecretProviderClass: class,
			contract.AttrKeyVaultName:        "", contract.AttrTenantID: "", contract.AttrUsePodIdentity: "",
		}}.request(t, root)
	}
	req := classVolume("secrets-store-inline", "azure-kvname")
	if _, err := p.NodePublishVolume(ctx, req); err != nil {
		t.Fatalf("publish: %v", err)
	}
	unpublishAtEnd(t, p, req)
	if got := readVolume(t, req.TargetPath); len(got) != 2 || got["DATABASE_LOGIN"] != "MyDBLoginName" || got["DATABASE_PASSWORD"] != "MyP@ssword123456" {
		t.Fatalf("files %v", got)
	}

	for _, tc := range []struct {
		class string
		code  codes.Code
		msg   string
	}{
		{"missing", codes.FailedPrecondition, "SecretProviderClass default/missing not found: create it in the pod's namespace"},
		{"gcp-class", codes.FailedPrecondition, `SecretProviderClass default/gcp-class has provider "gcp"; kvinject serves provider azure only`},
		{"synced-class", codes.FailedPrecondition, "SecretProviderClass default/synced-class: spec.secretObjects is not supported: kvinject mounts files and syncs no Kubernetes Secret, so environment variables fed from one would go stale; read the mounted files instead (or keep this workload on the Secrets Store CSI driver)"},
		{"token-proxy", codes.InvalidArgument, "invalid volume: useAzureTokenProxy is not supported: kvinject exchanges the pod's service-account token with Entra ID itself; remove useAzureTokenProxy and set clientID (workload identity) (spec.parameters of SecretProviderClass default/token-proxy)"},
	} {
		_, err := p.NodePublishVolume(ctx, classVolume("v-"+tc.class, tc.class))
		if st, _ := status.FromError(err); st.Code() != tc.code || st.Message() != tc.msg {
			t.Errorf("class %s: %v, want %v %q", tc.class, err, tc.code, tc.msg)
		}
	}

	// A failed refresh is an Event on the pod; ten failed refreshes are still one Event
	// object, with count 10 (not ten objects a minute for a broken vault).
	if err := w.emu.SetEnabled(vault, emulator.ObjectSecret, "DatabasePassword", "", false); err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		p.advance()
		if _, err := p.NodePublishVolume(ctx, req); err != nil {
			t.Fatalf("failed refresh %d: %v", i+1, err)
		}
	}
	var events []corev1.Event
	testkit.Eventually(t, 10*time.Second, "one Event for the pod, with count 10", func(ctx context.Context) error {
		evs, err := kube.CoreV1().Events("default").List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=" + podName})
		if err != nil {
			return err
		}
		if events = evs.Items; len(events) != 1 || events[0].Count != 10 {
			return fmt.Errorf("%d events: %+v", len(events), events)
		}
		return nil
	})
	ev := events[0]
	want := `Key Vault refresh failed; the volume keeps its previous files: vault "az-key-vault-demo": secret "DatabasePassword": Key Vault answered 403 SecretDisabled: the secret is disabled in vault "az-key-vault-demo"; enable it, or set objectVersion to an enabled version`
	if ev.Reason != csi.ReasonRefreshFailed || ev.Type != "Warning" || ev.Message != want || string(ev.InvolvedObject.UID) != podUID || ev.InvolvedObject.Kind != "Pod" {
		t.Fatalf("event %+v", ev)
	}
}
