package csi

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	csiapi "github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/yaml"

	"github.com/kvinject/kvinject/pkg/csi"
	"github.com/kvinject/kvinject/pkg/keyvault"
	"github.com/kvinject/kvinject/test/emulator"
)

var spcGVR = schema.GroupVersionResource{Group: "secrets-store.csi.x-k8s.io", Version: "v1", Resource: "secretproviderclasses"}

// writeKubeconfig writes envtest's admin credentials as a kubeconfig file, which the
// plugin reads with --kubeconfig.
func writeKubeconfig(t *testing.T, rc *rest.Config) string {
	t.Helper()
	kc := map[string]any{
		"apiVersion": "v1", "kind": "Config", "current-context": "envtest",
		"clusters": []any{map[string]any{"name": "envtest", "cluster": map[string]any{"server": rc.Host, "certificate-authority-data": rc.CAData}}},
		"users":    []any{map[string]any{"name": "admin", "user": map[string]any{"client-certificate-data": rc.CertData, "client-key-data": rc.KeyData, "token": rc.BearerToken}}},
		"contexts": []any{map[string]any{"name": "envtest", "context": map[string]any{"cluster": "envtest", "user": "admin"}}},
	}
	b, err := yaml.Marshal(kc)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestSecretProviderClassFromAPIServer publishes the tutorial's volume, which names
// the tutorial's SecretProviderClass, read from a real API server; and records a failed
// refresh as an Event on the pod there.
func TestSecretProviderClassFromAPIServer(t *testing.T) {
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		t.Skip("KUBEBUILDER_ASSETS is unset: set it to the folder printed by test/tools/build.sh (etcd and kube-apiserver) to run the envtest tests")
	}
	requireRoot(t)
	env := &envtest.Environment{CRDDirectoryPaths: []string{"testdata/crds"}, ErrorIfCRDPathMissing: true}
	rc, err := env.Start()
	if err != nil {
		t.Fatalf("start envtest: %v", err)
	}
	t.Cleanup(func() { _ = env.Stop() })
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

	w := startWorld(t)
	root := t.TempDir()
	kubeconfig := writeKubeconfig(t, rc)
	p := newPlugin(t, w, root, csi.PluginOptions{}, func(c *csi.Config) { c.Kubeconfig = kubeconfig })
	classVolume := func(name, class string) *csiapi.NodePublishVolumeRequest {
		return volume{name: name, attrs: map[string]string{
			keyvault.AttrSecretProviderClass: class,
			keyvault.AttrKeyVaultName:        "", keyvault.AttrTenantID: "", keyvault.AttrUsePodIdentity: "",
		}}.request(t, root)
	}
	req := classVolume("secrets-store-inline", "azure-kvname")
	if _, err := p.Node().NodePublishVolume(ctx, req); err != nil {
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
	} {
		_, err := p.Node().NodePublishVolume(ctx, classVolume("v-"+tc.class, tc.class))
		if st, _ := status.FromError(err); st.Code() != tc.code || st.Message() != tc.msg {
			t.Errorf("class %s: %v, want %v %q", tc.class, err, tc.code, tc.msg)
		}
	}

	// A failed refresh is an Event on the pod.
	if err := w.emu.SetEnabled(vault, emulator.ObjectSecret, "DatabasePassword", "", false); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Node().NodePublishVolume(ctx, req); err != nil {
		t.Fatalf("failed refresh: %v", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		evs, err := kube.CoreV1().Events("default").List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=" + podName})
		if err != nil {
			t.Fatal(err)
		}
		if len(evs.Items) == 1 {
			ev := evs.Items[0]
			want := `Key Vault refresh failed; the volume keeps its previous files: vault "az-key-vault-demo": secret "DatabasePassword": Key Vault answered 403 SecretDisabled: the secret is disabled in vault "az-key-vault-demo"; enable it, or set objectVersion to an enabled version`
			if ev.Reason != csi.ReasonRefreshFailed || ev.Type != "Warning" || ev.Message != want || string(ev.InvolvedObject.UID) != podUID || ev.InvolvedObject.Kind != "Pod" {
				t.Fatalf("event %+v", ev)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d events for the pod, want 1", len(evs.Items))
		}
		time.Sleep(100 * time.Millisecond)
	}
}
