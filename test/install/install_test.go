package install

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	cmapiutil "github.com/cert-manager/cert-manager/pkg/api/util"
	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	cmscheme "github.com/cert-manager/cert-manager/pkg/client/clientset/versioned/scheme"
	"github.com/go-logr/logr"
	"github.com/go-logr/logr/testr"
	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/release"
	admissionv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	policyv1 "k8s.io/api/policy/v1"
	storagev1 "k8s.io/api/storage/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/kvinject/kvinject/internal/chartrender"
	"github.com/kvinject/kvinject/internal/images"
	kvrelease "github.com/kvinject/kvinject/internal/release"
	"github.com/kvinject/kvinject/internal/testkit"
	"github.com/kvinject/kvinject/pkg/apis/kvinject/v1alpha1"
	"github.com/kvinject/kvinject/pkg/contract"
	"github.com/kvinject/kvinject/pkg/csi"
	"github.com/kvinject/kvinject/pkg/policy"
	"github.com/kvinject/kvinject/test/framework"
	"github.com/kvinject/kvinject/test/framework/certmanager"
)

const (
	releaseName = chartrender.ReleaseName
	namespace   = chartrender.Namespace
	tenant      = "72f988bf-86f1-41af-91ab-2d7cd011db47"
	// serverName is the DNS name the API server verifies the webhook's certificate
	// against: <service>.<namespace>.svc.
	serverName = "kvinject-webhook.kvinject.svc"
)

// TestInstall is the install path end to end on a local control plane: cert-manager's
// CRDs and its real controllers and CA injector, `helm install` of the chart through
// the Helm SDK, the Certificate issued and its CA injected into the chart's
// MutatingWebhookConfiguration, the webhook (this repository's, in process, with the
// installed ConfigMap, the issued Secret and the chart's ServiceAccount) called by
// the API server through the chart's Service, a forced renewal picked up without a
// restart while pod creation keeps succeeding, `helm upgrade`, and `helm uninstall`
// leaving nothing behind.
//
// The API server reaches the webhook through the installed Service unchanged: it
// runs with --enable-aggregator-routing, so it resolves the Service to an
// EndpointSlice, which the test points at an address it adds to lo (webhookIP) and
// the webhook's port (there are no nodes to run the Deployment's pods). The installed webhook
// configuration keeps its service reference and injected caBundle, and the API
// server verifies the certificate for kvinject-webhook.kvinject.svc.
func TestInstall(t *testing.T) {
	assets := framework.Assets(t)
	began := time.Now()
	crdDir, err := certmanager.CRDDir()
	if err != nil {
		t.Fatal(err)
	}
	hostIP := hostIPv4(t)
	cp, err := framework.Start(assets, framework.Options{
		ControllerManager: true,
		CRDDirectoryPaths: []string{crdDir},
		APIServerArgs:     map[string][]string{"enable-aggregator-routing": {"true"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cp.Stop() })
	t.Logf("control plane with cert-manager CRDs from %s up in %v", crdDir, since(began))

	ctx := t.Context()
	c := newClient(t, cp.Config)

	cmStart := time.Now()
	cm, err := certmanager.Start(ctx, certmanager.Options{
		Kubeconfig:     cp.Kubeconfig,
		RestConfig:     cp.Config,
		Log:            errorsOnly(t),
		EnableOwnerRef: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cm.Stop)
	t.Logf("cert-manager controllers %v and CA injector started in %v", certmanager.Controllers, since(cmStart))

	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}}); err != nil {
		t.Fatal(err)
	}
	shippedAreValid(t, c)
	helm := helmConfig(t, cp.Kubeconfig)
	// The chart as a release ships it: packaged by make release's code, version set,
	// images pinned (to placeholders: no kubelet runs them here; the e2e runs the
	// release chart with the real images).
	ch, err := loader.Load(packagedChart(t))
	if err != nil {
		t.Fatal(err)
	}
	if ch.Metadata.Version != "0.0.0-install" {
		t.Fatalf("installing chart version %s, want the packaged 0.0.0-install", ch.Metadata.Version)
	}

	// Each phase needs the ones before it: the first that fails ends the test.
	var (
		rel1, rel2 *release.Release
		secret     *corev1.Secret
		wh         *runningWebhook
		pod, p     *corev1.Pod
	)
	installStart := time.Now()
	phases := []struct {
		name string
		run  func(t *testing.T)
	}{
		{"helm install", func(t *testing.T) {
			install := action.NewInstall(helm)
			install.ReleaseName, install.Namespace, install.Timeout = releaseName, namespace, 2*time.Minute
			var err error
			rel1, err = install.RunWithContext(ctx, ch, map[string]any{"webhook": map[string]any{"defaults": map[string]any{"tenantId": tenant}}})
			if err != nil {
				t.Fatalf("helm install: %v", err)
			}
			if rel1.Info.Status != release.StatusDeployed {
				t.Fatalf("release status %s", rel1.Info.Status)
			}
			// The installed workloads run the images the package pinned.
			var dep appsv1.Deployment
			if err := c.Get(ctx, client.ObjectKey{Namespace: namespace, Name: "kvinject-webhook"}, &dep); err != nil {
				t.Fatal(err)
			}
			sum := sha256.Sum256([]byte("kvinject-webhook"))
			if want := "kvinject.local/kvinject-webhook:v0.0.0-install@sha256:" + hex.EncodeToString(sum[:]); dep.Spec.Template.Spec.Containers[0].Image != want {
				t.Errorf("webhook image %s, want the pinned %s", dep.Spec.Template.Spec.Containers[0].Image, want)
			}
			t.Logf("helm install: %v", since(installStart))
		}},
		{"certificate issued", func(t *testing.T) {
			crtKey := client.ObjectKey{Namespace: namespace, Name: "kvinject-webhook"}
			testkit.Eventually(t, time.Minute, "Certificate kvinject-webhook Ready", func(context.Context) error {
				var crt cmapi.Certificate
				if err := c.Get(ctx, crtKey, &crt); err != nil {
					return err
				}
				if !cmapiutil.CertificateHasCondition(&crt, cmapi.CertificateCondition{Type: cmapi.CertificateConditionReady, Status: cmmeta.ConditionTrue}) {
					return fmt.Errorf("conditions %+v", crt.Status.Conditions)
				}
				return nil
			})
			t.Logf("Certificate Ready %v after helm install returned", since(installStart))
			secret = tlsSecret(t, c)
			leaf := parseCert(t, secret.Data["tls.crt"])
			if err := leaf.VerifyHostname(serverName); err != nil {
				t.Errorf("issued certificate: %v", err)
			}
			caPool := x509.NewCertPool()
			if !caPool.AppendCertsFromPEM(secret.Data["ca.crt"]) {
				t.Fatal("Secret ca.crt holds no certificate")
			}
			if _, err := leaf.Verify(x509.VerifyOptions{Roots: caPool, DNSName: serverName}); err != nil {
				t.Errorf("issued certificate does not verify against ca.crt: %v", err)
			}
		}},
		{"CA injected", func(t *testing.T) {
			testkit.Eventually(t, time.Minute, "CA bundle injected into the MutatingWebhookConfiguration", func(context.Context) error {
				var mwc admissionv1.MutatingWebhookConfiguration
				if err := c.Get(ctx, client.ObjectKey{Name: releaseName}, &mwc); err != nil {
					return err
				}
				if got := string(mwc.Webhooks[0].ClientConfig.CABundle); got != string(secret.Data["ca.crt"]) {
					return fmt.Errorf("caBundle is %d bytes, not the CA", len(got))
				}
				var vwc admissionv1.ValidatingWebhookConfiguration
				if err := c.Get(ctx, client.ObjectKey{Name: releaseName}, &vwc); err != nil {
					return err
				}
				if got := string(vwc.Webhooks[0].ClientConfig.CABundle); got != string(secret.Data["ca.crt"]) {
					return fmt.Errorf("pod identity check caBundle is %d bytes, not the CA", len(got))
				}
				return nil
			})
			t.Logf("CA bundle injected %v after helm install returned", since(installStart))
		}},
		{"webhook called through the Service", func(t *testing.T) {
			pointServiceAt(t, c, hostIP, wh.port)
			testkit.Eventually(t, 30*time.Second, "API server calls the installed webhook", func(context.Context) error {
				p := tutorialPod("probe")
				if err := c.Create(ctx, p, client.DryRunAll); err != nil {
					return err
				}
				if p.Annotations[contract.AnnotationStatus] != contract.StatusInjected {
					return errors.New("pod not injected")
				}
				return nil
			})
			pod = tutorialPod("tutorial")
			if err := c.Create(ctx, pod); err != nil {
				t.Fatalf("create the tutorial pod: %v", err)
			}
			checkInjected(t, pod, "secrets-store.kvinject.io")
			t.Logf("tutorial pod created and injected through the installed registration, %v after helm install", since(installStart))
		}},
		{"node plugin RBAC", func(t *testing.T) {
			// The chart's node-plugin RBAC is enough for what the plugin calls, and no more.
			checkCSIAccess(t, cp, c)
		}},
		{"renewal", func(t *testing.T) { renewal(t, c, wh, secret) }},
		{"helm upgrade", func(t *testing.T) {
			upStart := time.Now()
			upgrade := action.NewUpgrade(helm)
			upgrade.Namespace, upgrade.Timeout = namespace, 2*time.Minute
			var err error
			rel2, err = upgrade.RunWithContext(ctx, releaseName, ch, map[string]any{
				"webhook": map[string]any{
					"replicas":            3,
					"timeoutSeconds":      5,
					"podDisruptionBudget": map[string]any{"enabled": false},
					"defaults":            map[string]any{"tenantId": tenant, "vault": "az-key-vault-demo"},
				},
				"csi": map[string]any{"rotation": map[string]any{"enabled": true}},
			})
			if err != nil {
				t.Fatalf("helm upgrade: %v", err)
			}
			t.Logf("helm upgrade: %v", since(upStart))
			var dep appsv1.Deployment
			get(t, c, client.ObjectKey{Namespace: namespace, Name: "kvinject-webhook"}, &dep)
			if *dep.Spec.Replicas != 3 {
				t.Errorf("replicas %d after upgrade, want 3", *dep.Spec.Replicas)
			}
			if err := c.Get(ctx, client.ObjectKey{Namespace: namespace, Name: "kvinject-webhook"}, &policyv1.PodDisruptionBudget{}); !apierrors.IsNotFound(err) {
				t.Errorf("PodDisruptionBudget after disabling it: %v", err)
			}
			var drv storagev1.CSIDriver
			get(t, c, client.ObjectKey{Name: "secrets-store.kvinject.io"}, &drv)
			if drv.Spec.RequiresRepublish == nil || !*drv.Spec.RequiresRepublish {
				t.Errorf("CSIDriver requiresRepublish %v after turning rotation on", drv.Spec.RequiresRepublish)
			}
			var cmap corev1.ConfigMap
			get(t, c, client.ObjectKey{Namespace: namespace, Name: "kvinject-webhook-config"}, &cmap)
			if !strings.Contains(cmap.Data["config.yaml"], "vault: az-key-vault-demo") {
				t.Errorf("config.yaml after upgrade:\n%s", cmap.Data["config.yaml"])
			}
			var mwc admissionv1.MutatingWebhookConfiguration
			get(t, c, client.ObjectKey{Name: releaseName}, &mwc)
			if *mwc.Webhooks[0].TimeoutSeconds != 5 {
				t.Errorf("timeoutSeconds %d after upgrade", *mwc.Webhooks[0].TimeoutSeconds)
			}
			if string(mwc.Webhooks[0].ClientConfig.CABundle) != string(secret.Data["ca.crt"]) {
				t.Errorf("helm upgrade dropped the injected caBundle")
			}
			// The release installed the SecretProviderClass CRD, so the upgrade keeps it.
			get(t, c, client.ObjectKey{Name: spcCRD}, &apiextensionsv1.CustomResourceDefinition{})
			// The upgraded registration still works.
			p = tutorialPod("after-upgrade")
			if err := c.Create(ctx, p); err != nil {
				t.Fatalf("create a pod after the upgrade: %v", err)
			}
			checkInjected(t, p, "secrets-store.kvinject.io")
		}},
		{"helm uninstall", func(t *testing.T) {
			wh.stop()
			for _, obj := range []client.Object{pod, p, testEndpointSlice(hostIP, 0)} {
				if err := c.Delete(ctx, obj); err != nil && !apierrors.IsNotFound(err) {
					t.Fatal(err)
				}
			}
			kept := &v1alpha1.KeyVaultAccessPolicy{ObjectMeta: metav1.ObjectMeta{Name: "survives-uninstall"},
				Spec: policy.Spec{NamespaceSelector: policy.LabelSelector{MatchLabels: map[string]string{"team": "a"}}}}
			if err := c.Create(ctx, kept); err != nil {
				t.Fatal(err)
			}
			unStart := time.Now()
			uninstall := action.NewUninstall(helm)
			uninstall.Timeout = 2 * time.Minute
			if _, err := uninstall.Run(releaseName); err != nil {
				t.Fatalf("helm uninstall: %v", err)
			}
			t.Logf("helm uninstall: %v", since(unStart))
			nothingLeft(t, cp, c, rel1, rel2)
			t.Logf("nothing of the release left %v after helm uninstall; whole test %v", since(unStart), since(began))
			// Both CRDs and the cluster's policies outlive the release.
			get(t, c, client.ObjectKey{Name: policyCRD}, &apiextensionsv1.CustomResourceDefinition{})
			get(t, c, client.ObjectKey{Name: spcCRD}, &apiextensionsv1.CustomResourceDefinition{})
			get(t, c, client.ObjectKey{Name: kept.Name}, &v1alpha1.KeyVaultAccessPolicy{})
			if err := cm.Err(); err != nil {
				t.Errorf("cert-manager: %v", err)
			}
		}},
		{"foreign CRD left alone", func(t *testing.T) { foreignCRD(t, c, helm, ch) }},
	}
	for i, ph := range phases {
		if ph.name == "webhook called through the Service" {
			// The webhook as the Deployment would run it (with the installed ConfigMap,
			// the issued Secret and the chart's ServiceAccount), for the rest of the test.
			wh = startWebhook(t, c, cp.Config, hostIP)
		}
		if !t.Run(fmt.Sprintf("%d %s", i+1, ph.name), ph.run) {
			return
		}
	}
}

// spcCRD outlives the release too: uninstalling kvinject never deletes a cluster's
// SecretProviderClasses.
const spcCRD = "secretproviderclasses.secrets-store.csi.x-k8s.io"

// policyCRD outlives the release (helm.sh/resource-policy: keep): uninstalling kvinject
// never deletes a cluster's policies.
const policyCRD = "keyvaultaccesspolicies.kvinject.io"

// foreignCRD: on a cluster whose SecretProviderClass CRD belongs to someone else (the
// Secrets Store CSI driver), csi.secretProviderClassCRD.install=false installs without
// touching it, and the default (true) stops with Helm's ownership error, which
// docs/install.md quotes. Checked with server-side dry-run installs, which run Helm's
// ownership check against the cluster. The CRD the uninstalled release kept is made the
// driver's: its labels and no Helm ownership.
func foreignCRD(t *testing.T, c client.Client, helm *action.Configuration, ch *chart.Chart) {
	t.Helper()
	var crd apiextensionsv1.CustomResourceDefinition
	get(t, c, client.ObjectKey{Name: spcCRD}, &crd)
	crd.Labels = map[string]string{"app.kubernetes.io/name": "secrets-store-csi-driver"}
	crd.Annotations = nil
	if err := c.Update(t.Context(), &crd); err != nil {
		t.Fatal(err)
	}
	manifest, err := rel0Manifest(t, helm, ch, map[string]any{"csi": map[string]any{"secretProviderClassCRD": map[string]any{"install": false}}})
	if err != nil {
		t.Fatalf("install=false on a cluster with the driver's CRD: %v", err)
	}
	for _, d := range chartrender.Split(manifest) {
		if strings.HasSuffix(d.Source, "secretproviderclass-crd.yaml") {
			t.Errorf("install=false renders the SecretProviderClass CRD")
		}
	}
	_, err = rel0Manifest(t, helm, ch, nil)
	if err == nil || !strings.Contains(err.Error(), `CustomResourceDefinition "`+spcCRD+`" in namespace "" exists and cannot be imported into the current release`) {
		t.Errorf("the default install on a cluster with the driver's CRD: %v, want Helm's ownership error", err)
	}
}

// packagedChart packages the chart as make release does (internal/release), with
// version v0.0.0-install and placeholder image digests, and returns the .tgz.
func packagedChart(t *testing.T) string {
	t.Helper()
	pins := map[string]kvrelease.Image{}
	for _, p := range images.Programs {
		sum := sha256.Sum256([]byte(p.Name))
		pins[p.Name] = kvrelease.Image{Repository: "kvinject.local/" + p.Name, Tag: "v0.0.0-install", Digest: "sha256:" + hex.EncodeToString(sum[:])}
	}
	tgz, err := kvrelease.PackageChart(chartDir(t), t.TempDir(), "v0.0.0-install", pins)
	if err != nil {
		t.Fatal(err)
	}
	return tgz
}

// rel0Manifest renders the chart with values through a server-side dry-run install
// (Helm checks ownership against the cluster).
func rel0Manifest(t *testing.T, helm *action.Configuration, ch *chart.Chart, values map[string]any) (string, error) {
	t.Helper()
	install := action.NewInstall(helm)
	install.ReleaseName, install.Namespace = releaseName, namespace
	install.DryRun, install.DryRunOption = true, "server"
	rel, err := install.RunWithContext(t.Context(), ch, values)
	if err != nil {
		return "", fmt.Errorf("helm install --dry-run=server: %w", err)
	}
	return rel.Manifest, nil
}

// shippedAreValid creates every object of the plain manifests in deploy/ with a
// server-side dry run and strict field validation: the API server (with cert-manager's
// CRDs) accepts them as they are.
func shippedAreValid(t *testing.T, c client.Client) {
	t.Helper()
	files, err := chartrender.Shipped(chartDir(t))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, f := range files {
		for _, d := range chartrender.Split(string(f.Content)) {
			u := &unstructured.Unstructured{}
			if err := yaml.Unmarshal([]byte(d.YAML), &u.Object); err != nil {
				t.Fatalf("%s: %v", f.Path, err)
			}
			if err := c.Create(t.Context(), u, client.DryRunAll, client.FieldValidation("Strict")); err != nil {
				t.Errorf("%s: %s %s: the API server refuses it: %v", f.Path, u.GetKind(), u.GetName(), err)
			}
			n++
		}
	}
	t.Logf("the API server accepts all %d objects of deploy/ (server-side dry run, strict field validation)", n)
}

// renewal forces cert-manager to re-issue the serving certificate twice, by its renew
// path (the Issuing condition, as `cmctl renew` sets it) and by deleting the Secret;
// each time it writes the new files where the webhook reads them and checks that the
// webhook serves the new certificate without a restart, while pods keep being admitted.
func renewal(t *testing.T, c client.Client, wh *runningWebhook, old *corev1.Secret) {
	ctx := t.Context()

	// Pod creations (server-side dry run: the API server calls the webhook all the
	// same) run throughout; every one must be admitted and injected.
	var admitted, failed atomic.Int64
	var firstErr atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			p := tutorialPod(fmt.Sprintf("renewal-%d", i))
			err := c.Create(context.Background(), p, client.DryRunAll)
			if err == nil && p.Annotations[contract.AnnotationStatus] != contract.StatusInjected {
				err = errors.New("admitted but not injected")
			}
			if err != nil {
				failed.Add(1)
				firstErr.CompareAndSwap(nil, err.Error())
			} else {
				admitted.Add(1)
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
	defer func() {
		close(stop)
		wg.Wait()
		t.Logf("renewal: %d pod creations admitted and injected, %d failed", admitted.Load(), failed.Load())
		if failed.Load() > 0 {
			t.Errorf("%d pod creations failed during renewal, first: %v", failed.Load(), firstErr.Load())
		}
		if admitted.Load() == 0 {
			t.Error("no pod creation ran during renewal")
		}
	}()

	current := old
	for _, path := range []struct {
		name    string
		trigger func()
	}{
		{"cert-manager's renew path (Issuing condition, as cmctl renew)", func() {
			var crt cmapi.Certificate
			get(t, c, client.ObjectKey{Namespace: namespace, Name: "kvinject-webhook"}, &crt)
			cmapiutil.SetCertificateCondition(&crt, crt.Generation, cmapi.CertificateConditionIssuing, cmmeta.ConditionTrue, "ManuallyTriggered", "Certificate re-issuance manually triggered by the install test")
			if err := c.Status().Update(ctx, &crt); err != nil {
				t.Fatalf("trigger renewal: %v", err)
			}
		}},
		{"Secret deleted", func() {
			if err := c.Delete(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: "kvinject-webhook-tls"}}); err != nil {
				t.Fatalf("delete the serving Secret: %v", err)
			}
		}},
	} {
		current = renewOnce(t, c, wh, current, path.name, path.trigger)
		// Let cert-manager finish the issuance (Issuing condition gone, the next private
		// key released) before the next trigger: a Secret deleted while the last request
		// is still current is restored from that request, with the same serial.
		testkit.Eventually(t, time.Minute, "cert-manager settles after "+path.name, func(context.Context) error {
			var crt cmapi.Certificate
			if err := c.Get(ctx, client.ObjectKey{Namespace: namespace, Name: "kvinject-webhook"}, &crt); err != nil {
				return err
			}
			if crt.Status.NextPrivateKeySecretName != nil {
				return fmt.Errorf("next private key %s still held", *crt.Status.NextPrivateKeySecretName)
			}
			for _, cond := range crt.Status.Conditions {
				if cond.Type == cmapi.CertificateConditionIssuing && cond.Status == cmmeta.ConditionTrue {
					return errors.New("still issuing")
				}
			}
			return nil
		})
	}
	// Keep admitting pods with the new certificate for a moment.
	time.Sleep(time.Second)
}

// renewOnce triggers a re-issuance, waits for cert-manager to write a new certificate,
// writes it where the webhook reads it, and waits until the webhook serves it.
func renewOnce(t *testing.T, c client.Client, wh *runningWebhook, old *corev1.Secret, how string, trigger func()) *corev1.Secret {
	t.Helper()
	oldLeaf := parseCert(t, old.Data["tls.crt"])
	start := time.Now()
	trigger()
	var renewed *corev1.Secret
	testkit.Eventually(t, time.Minute, "cert-manager re-issues the certificate ("+how+")", func(context.Context) error {
		var s corev1.Secret
		if err := c.Get(t.Context(), client.ObjectKey{Namespace: namespace, Name: "kvinject-webhook-tls"}, &s); err != nil {
			return err
		}
		if len(s.Data["tls.crt"]) == 0 || len(s.Data["tls.key"]) == 0 {
			return errors.New("Secret not filled yet")
		}
		if leaf := parseCert(t, s.Data["tls.crt"]); leaf.SerialNumber.Cmp(oldLeaf.SerialNumber) == 0 {
			return errors.New("same serial")
		}
		renewed = &s
		return nil
	})
	issued := since(start)
	newLeaf := parseCert(t, renewed.Data["tls.crt"])
	if string(renewed.Data["tls.key"]) == string(old.Data["tls.key"]) {
		t.Errorf("%s: the renewed certificate kept the old private key (rotationPolicy Always)", how)
	}
	if string(renewed.Data["ca.crt"]) != string(old.Data["ca.crt"]) {
		t.Errorf("%s: the CA changed; the injected caBundle would be stale", how)
	}
	// What the kubelet does for a mounted Secret: new files appear in the volume.
	written := time.Now()
	writeCertFiles(t, wh.certDir, renewed)
	testkit.Eventually(t, 30*time.Second, "the webhook serves the renewed certificate", func(context.Context) error {
		served, err := servedCert(wh.addr, renewed.Data["ca.crt"])
		if err != nil {
			return err
		}
		if served.SerialNumber.Cmp(newLeaf.SerialNumber) != 0 {
			return fmt.Errorf("still serving serial %s", served.SerialNumber)
		}
		return nil
	})
	t.Logf("renewal (%s): re-issued in %v; webhook serving it %v after the files changed, no restart", how, issued, since(written))
	return renewed
}

// runningWebhook is pkg/webhook.Run in this process, configured from the installed
// Deployment's args, ConfigMap and Secret.
type runningWebhook struct {
	addr, certDir string
	port          int
	stop          func()
}

func startWebhook(t *testing.T, c client.Client, admin *rest.Config, hostIP string) *runningWebhook {
	t.Helper()
	var dep appsv1.Deployment
	get(t, c, client.ObjectKey{Namespace: namespace, Name: "kvinject-webhook"}, &dep)
	spec := dep.Spec.Template.Spec
	cfg := webhookConfig(t, nil, spec.Containers[0])

	// Files: the Secret and the ConfigMap, as the pod's volumes would hold them.
	dir := t.TempDir()
	certDir := filepath.Join(dir, "tls")
	if err := os.Mkdir(certDir, 0o700); err != nil {
		t.Fatal(err)
	}
	writeCertFiles(t, certDir, tlsSecret(t, c))
	var cm corev1.ConfigMap
	get(t, c, client.ObjectKey{Namespace: namespace, Name: "kvinject-webhook-config"}, &cm)
	configFile := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(configFile, []byte(cm.Data["config.yaml"]), 0o600); err != nil {
		t.Fatal(err)
	}
	port := testkit.MustFreePort(t)
	cfg.Host, cfg.Port, cfg.CertDir, cfg.Config = hostIP, port, certDir, configFile
	cfg.MetricsBindAddress = testkit.FreeAddr(t)
	cfg.HealthProbeBindAddress = testkit.FreeAddr(t)
	cfg.CertPollInterval = time.Second
	cfg.ShutdownTimeout = 5 * time.Second
	if err := cfg.LoadConfigFile(); err != nil {
		t.Fatal(err)
	}
	if cfg.Cluster.TenantID != tenant {
		t.Fatalf("the installed ConfigMap does not carry the tenant value: %+v", cfg.Cluster)
	}
	// The webhook's identity is the chart's ServiceAccount, so its RBAC is what is tested.
	restCfg := rest.CopyConfig(admin)
	restCfg.Impersonate = rest.ImpersonationConfig{UserName: fmt.Sprintf("system:serviceaccount:%s:%s", namespace, spec.ServiceAccountName)}
	cfg.Kubeconfig = framework.WriteKubeconfig(t, restCfg)

	run := framework.RunWebhook(t, cfg, errorsOnly(t))
	w := &runningWebhook{addr: fmt.Sprintf("%s:%d", hostIP, port), certDir: certDir, port: port, stop: run.Stop}
	return w
}

// testEndpointSlice points the chart's Service at ip:port (port 0: for deletion).
func testEndpointSlice(ip string, port int) *discoveryv1.EndpointSlice {
	return &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{
			Name:      "kvinject-webhook-install-test",
			Namespace: namespace,
			Labels: map[string]string{
				discoveryv1.LabelServiceName: "kvinject-webhook",
				discoveryv1.LabelManagedBy:   "kvinject-install-test",
			},
		},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{ip}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}}},
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("https"), Port: ptr.To(int32(port)), Protocol: ptr.To(corev1.ProtocolTCP)}},
	}
}

func pointServiceAt(t *testing.T, c client.Client, ip string, port int) {
	t.Helper()
	if err := c.Create(t.Context(), testEndpointSlice(ip, port)); err != nil {
		t.Fatal(err)
	}
}

// checkCSIAccess runs the node plugin's own API client (pkg/csi.KubeClient) with a
// token of the chart's node-plugin ServiceAccount: reading a SecretProviderClass and
// recording an Event must work; what the plugin never does must be forbidden.
func checkCSIAccess(t *testing.T, cp *framework.ControlPlane, c client.Client) {
	t.Helper()
	ctx := t.Context()
	const sa = "kvinject-csi-node"
	tr := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To(int64(600))}}
	if err := c.SubResource("token").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: sa}}, tr); err != nil {
		t.Fatalf("token for %s: %v", sa, err)
	}
	kc := clientcmdapi.NewConfig()
	kc.Clusters["local"] = &clientcmdapi.Cluster{Server: cp.Config.Host, CertificateAuthorityData: cp.Config.CAData}
	kc.AuthInfos["csi"] = &clientcmdapi.AuthInfo{Token: tr.Status.Token}
	kc.Contexts["local"] = &clientcmdapi.Context{Cluster: "local", AuthInfo: "csi"}
	kc.CurrentContext = "local"
	file := filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*kc, file); err != nil {
		t.Fatal(err)
	}
	kube, err := csi.NewKubeClient(csi.KubeClientOptions{Kubeconfig: file, Component: "kvinject-csi-node", Node: "node-1"})
	if err != nil {
		t.Fatal(err)
	}
	spc := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "secrets-store.csi.x-k8s.io/v1",
		"kind":       "SecretProviderClass",
		"metadata":   map[string]any{"name": "azure-kvname", "namespace": "default"},
		"spec": map[string]any{"provider": "azure", "parameters": map[string]any{
			"keyvaultName": "az-key-vault-demo", "tenantId": tenant, "usePodIdentity": "true",
			"objects": "array:\n  - |\n    objectName: DatabaseLogin\n    objectType: secret\n",
		}},
	}}
	if err := c.Create(ctx, spc); err != nil {
		t.Fatalf("create a SecretProviderClass through the chart's CRD: %v", err)
	}
	params, err := kube.Parameters(ctx, "default", "azure-kvname")
	if err != nil {
		t.Fatalf("the node plugin cannot read a SecretProviderClass with the chart's RBAC: %v", err)
	}
	if params["keyvaultName"] != "az-key-vault-demo" {
		t.Errorf("parameters %v", params)
	}
	// An Event, then the same one again: aggregated into one object (create, then patch).
	for range 2 {
		kube.Event(ctx, csi.PodInfo{Name: "tutorial", Namespace: "default", UID: "uid-1"}, csi.EventWarning, csi.ReasonRefreshFailed, "install test")
	}
	testkit.Eventually(t, 10*time.Second, "the node plugin's Event is recorded and aggregated", func(context.Context) error {
		var evs corev1.EventList
		if err := c.List(ctx, &evs, client.InNamespace("default")); err != nil {
			return err
		}
		var ours []corev1.Event
		for _, e := range evs.Items {
			if e.Reason == csi.ReasonRefreshFailed && e.Source.Component == "kvinject-csi-node" {
				ours = append(ours, e)
			}
		}
		if len(ours) != 1 || ours[0].Count != 2 {
			return fmt.Errorf("%d events (counts %v), want one with count 2", len(ours), ours)
		}
		return nil
	})
	// The policies: listed and watched, then a namespace's labels and a pod's read for a
	// pod identity volume. The policy governs every namespace and allows everything.
	everything := &v1alpha1.KeyVaultAccessPolicy{ObjectMeta: metav1.ObjectMeta{Name: "install-test"}, Spec: policy.Spec{
		Vaults: []string{"*"}, Tenants: []string{"*"}, PodIdentities: []string{"*"}, WorkloadIdentityClientIDs: []string{"*"}}}
	if err := c.Create(ctx, everything); err != nil {
		t.Fatalf("create a KeyVaultAccessPolicy through the chart's CRD: %v", err)
	}
	defer func() { _ = c.Delete(context.Background(), everything) }()
	var tutorial corev1.Pod
	get(t, c, client.ObjectKey{Namespace: "default", Name: "tutorial"}, &tutorial)
	policies := csi.NewKubePolicies(kube, nil)
	wctx, stop := context.WithCancel(ctx)
	defer stop()
	go policies.Run(wctx)
	testkit.Eventually(t, 10*time.Second, "the node plugin reads the policies with the chart's RBAC", func(context.Context) error {
		res := policies.Check(ctx, csi.PodInfo{Name: "tutorial", Namespace: "default", UID: string(tutorial.UID)},
			policy.Request{Vault: "team-b-kv", Tenant: tenant}, true)
		if res.Denied != nil || res.Audited != nil {
			return fmt.Errorf("%+v", res)
		}
		return nil
	})
	// Proof the pod was read: its label decides, and a policy listing another selector
	// refuses it.
	patch := client.RawPatch(types.MergePatchType, []byte(`{"spec":{"podIdentities":["someone-else"]}}`))
	if err := c.Patch(ctx, everything, patch); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 40*time.Second, "the pod's label checked", func(context.Context) error {
		res := policies.Check(ctx, csi.PodInfo{Name: "tutorial", Namespace: "default", UID: string(tutorial.UID)}, policy.Request{Vault: "x-kv"}, true)
		if res.Denied == nil || !strings.Contains(res.Denied.Error(), `may not use AAD Pod Identity "azure-kv"`) {
			return fmt.Errorf("%+v", res.Denied)
		}
		return nil
	})

	user := fmt.Sprintf("system:serviceaccount:%s:%s", namespace, sa)
	for _, ra := range []authorizationv1.ResourceAttributes{
		{Group: "secrets-store.csi.x-k8s.io", Resource: "secretproviderclasses", Verb: "list"},
		{Group: "secrets-store.csi.x-k8s.io", Resource: "secretproviderclasses", Verb: "update", Namespace: "default"},
		{Resource: "secrets", Verb: "get", Namespace: "default"},
		{Resource: "pods", Verb: "list", Namespace: "default"},
		{Resource: "namespaces", Verb: "list"},
		{Group: "kvinject.io", Resource: "keyvaultaccesspolicies", Verb: "update"},
		{Resource: "events", Verb: "delete", Namespace: "default"},
	} {
		sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{User: user, ResourceAttributes: &ra}}
		if err := c.Create(ctx, sar); err != nil {
			t.Fatal(err)
		}
		if sar.Status.Allowed {
			t.Errorf("the node plugin's ServiceAccount may %s %s: more than the plugin calls", ra.Verb, ra.Resource)
		}
	}
}

// nothingLeft checks through the API server that no object of either release
// revision, and nothing made from them (cert-manager's Secrets and requests, the
// Deployment's ReplicaSets and Pods, Helm's release records), is left.
func nothingLeft(t *testing.T, cp *framework.ControlPlane, c client.Client, rels ...*release.Release) {
	t.Helper()
	ctx := t.Context()
	type ref struct{ apiVersion, kind, namespace, name string }
	seen := map[ref]bool{}
	var refs []ref
	for _, rel := range rels {
		for _, d := range chartrender.Split(rel.Manifest) {
			var u unstructured.Unstructured
			if err := yaml.Unmarshal([]byte(d.YAML), &u.Object); err != nil {
				t.Fatal(err)
			}
			r := ref{u.GetAPIVersion(), u.GetKind(), u.GetNamespace(), u.GetName()}
			if r.namespace == "" && r.kind != "MutatingWebhookConfiguration" && r.kind != "ClusterRole" && r.kind != "ClusterRoleBinding" && r.kind != "CSIDriver" && r.kind != "CustomResourceDefinition" {
				r.namespace = namespace
			}
			if !seen[r] {
				seen[r] = true
				refs = append(refs, r)
			}
		}
	}
	for _, s := range []string{"kvinject-ca", "kvinject-webhook-tls"} {
		refs = append(refs, ref{"v1", "Secret", namespace, s})
	}
	var kinds []string
	for _, r := range refs {
		kinds = append(kinds, r.kind+"/"+r.name)
	}
	t.Logf("checking %d objects are gone: %s", len(refs), strings.Join(kinds, ", "))
	testkit.Eventually(t, 90*time.Second, "every object of the release deleted", func(context.Context) error {
		var left []string
		for _, r := range refs {
			u := &unstructured.Unstructured{}
			u.SetAPIVersion(r.apiVersion)
			u.SetKind(r.kind)
			err := c.Get(ctx, client.ObjectKey{Namespace: r.namespace, Name: r.name}, u)
			switch {
			case err == nil:
				left = append(left, r.kind+" "+r.namespace+"/"+r.name)
			case apierrors.IsNotFound(err):
			case r.kind != "CustomResourceDefinition" && strings.Contains(err.Error(), "no matches for kind"):
				// The kind's CRD is gone, so are its objects.
			default:
				return err
			}
			if err == nil && r.kind == "CustomResourceDefinition" && (r.name == policyCRD || r.name == spcCRD) {
				left = left[:len(left)-1] // kept: helm.sh/resource-policy: keep
			}
		}
		// What controllers made from the release's objects: the namespace held
		// nothing else.
		for _, l := range []client.ObjectList{&appsv1.ReplicaSetList{}, &corev1.PodList{}, &corev1.SecretList{}, &cmapi.CertificateRequestList{}} {
			if err := c.List(ctx, l, client.InNamespace(namespace)); err != nil {
				return err
			}
			items, _ := metaItems(l)
			for _, it := range items {
				left = append(left, fmt.Sprintf("%T %s", l, it))
			}
		}
		if len(left) > 0 {
			return fmt.Errorf("left: %s", strings.Join(left, ", "))
		}
		return nil
	})
}

// metaItems lists the names in a typed list.
func metaItems(l client.ObjectList) ([]string, error) {
	var names []string
	switch l := l.(type) {
	case *appsv1.ReplicaSetList:
		for _, x := range l.Items {
			names = append(names, x.Name)
		}
	case *corev1.PodList:
		for _, x := range l.Items {
			names = append(names, x.Name)
		}
	case *corev1.SecretList:
		for _, x := range l.Items {
			names = append(names, x.Name)
		}
	case *cmapi.CertificateRequestList:
		for _, x := range l.Items {
			names = append(names, x.Name)
		}
	default:
		return nil, fmt.Errorf("list %T", l)
	}
	return names, nil
}

// --- helpers ---

func newClient(t *testing.T, cfg *rest.Config) client.Client {
	t.Helper()
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{clientgoscheme.AddToScheme, cmscheme.AddToScheme, apiextensionsv1.AddToScheme, v1alpha1.AddToScheme} {
		if err := add(scheme); err != nil {
			t.Fatal(err)
		}
	}
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// helmConfig is the Helm SDK's action configuration for the control plane, as the
// helm CLI builds it from a kubeconfig (release records in Secrets).
func helmConfig(t *testing.T, kubeconfig string) *action.Configuration {
	t.Helper()
	flags := genericclioptions.NewConfigFlags(false)
	flags.KubeConfig = ptr.To(kubeconfig)
	flags.Namespace = ptr.To(namespace)
	cfg := new(action.Configuration)
	if err := cfg.Init(flags, namespace, "secret", func(format string, v ...any) {}); err != nil {
		t.Fatal(err)
	}
	return cfg
}

func get(t *testing.T, c client.Client, key client.ObjectKey, obj client.Object) {
	t.Helper()
	if err := c.Get(t.Context(), key, obj); err != nil {
		t.Fatal(err)
	}
}

func tlsSecret(t *testing.T, c client.Client) *corev1.Secret {
	t.Helper()
	var s corev1.Secret
	get(t, c, client.ObjectKey{Namespace: namespace, Name: "kvinject-webhook-tls"}, &s)
	for _, k := range []string{"tls.crt", "tls.key", "ca.crt"} {
		if len(s.Data[k]) == 0 {
			t.Fatalf("Secret kvinject-webhook-tls lacks %s", k)
		}
	}
	return &s
}

func parseCert(t *testing.T, pemBytes []byte) *x509.Certificate {
	t.Helper()
	b, _ := pem.Decode(pemBytes)
	if b == nil {
		t.Fatal("no PEM certificate")
	}
	cert, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

// writeCertFiles writes tls.crt and tls.key the way a Secret volume updates: each file
// replaced whole (rename), never seen half written.
func writeCertFiles(t *testing.T, dir string, s *corev1.Secret) {
	t.Helper()
	for _, k := range []string{"tls.key", "tls.crt"} {
		tmp := filepath.Join(dir, "."+k+".tmp")
		if err := os.WriteFile(tmp, s.Data[k], 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, k)); err != nil {
			t.Fatal(err)
		}
	}
}

// servedCert is the certificate the webhook presents for serverName, verified
// against caPEM.
func servedCert(addr string, caPEM []byte) (*x509.Certificate, error) {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, &tls.Config{RootCAs: pool, ServerName: serverName, MinVersion: tls.VersionTLS12})
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0], nil
}

func tutorialPod(name string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", Annotations: map[string]string{
			contract.AnnotationVault:    "az-key-vault-demo",
			contract.AnnotationIdentity: "azure-kv",
			contract.AnnotationSecrets:  "DatabaseLogin=DATABASE_LOGIN, DatabasePassword=DATABASE_PASSWORD",
		}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "nginx", Image: "nginx"}}},
	}
}

func checkInjected(t *testing.T, p *corev1.Pod, driver string) {
	t.Helper()
	if p.Annotations[contract.AnnotationStatus] != contract.StatusInjected || p.Labels[contract.LabelPodIdentity] != "azure-kv" {
		t.Errorf("pod %s not injected: annotations %v labels %v", p.Name, p.Annotations, p.Labels)
	}
	var vol *corev1.Volume
	for i := range p.Spec.Volumes {
		if p.Spec.Volumes[i].Name == contract.VolumeName {
			vol = &p.Spec.Volumes[i]
		}
	}
	if vol == nil || vol.CSI == nil || vol.CSI.Driver != driver || vol.CSI.VolumeAttributes["tenantId"] != tenant {
		t.Fatalf("pod %s volume %+v", p.Name, vol)
	}
	m := p.Spec.Containers[0].VolumeMounts
	if len(m) == 0 || m[len(m)-1].MountPath != contract.DefaultMountPath {
		t.Errorf("pod %s mounts %+v", p.Name, m)
	}
}

// webhookIP is where the webhook under test listens for the API server. An
// EndpointSlice may not point at a loopback address, so the test adds this address as
// an extra /32 on lo for its duration: it is local to this machine and never routed
// off it. It comes from TEST-NET-2 (RFC 5737, documentation only) and differs from
// the e2e cluster's node IP (test/e2e/cluster.NodeIP), so both can run.
const webhookIP = "198.51.100.20"

// hostIPv4 puts webhookIP on lo until the test ends and returns it.
func hostIPv4(t *testing.T) string {
	t.Helper()
	cidr := webhookIP + "/32"
	if out, err := exec.Command("ip", "-o", "-4", "addr", "show", "dev", "lo").Output(); err != nil {
		t.Fatalf("list the addresses of lo (needs iproute2): %v", err)
	} else if strings.Contains(string(out), " "+cidr+" ") || strings.Contains(string(out), " "+webhookIP+"/") {
		t.Fatalf("%s is already on lo (an interrupted run?): remove it with 'ip addr del %s dev lo'", webhookIP, cidr)
	}
	if out, err := exec.Command("ip", "addr", "add", cidr, "dev", "lo").CombinedOutput(); err != nil {
		t.Fatalf("add %s to lo (the install test needs root): %v: %s", cidr, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "addr", "del", cidr, "dev", "lo").CombinedOutput(); err != nil {
			t.Errorf("remove %s from lo: %v: %s", cidr, err, out)
		}
	})
	return webhookIP
}

func since(t time.Time) time.Duration { return time.Since(t).Round(time.Millisecond) }

// errorsOnly logs only errors (with KVINJECT_TEST_VERBOSE set, everything).
func errorsOnly(t *testing.T) logr.Logger {
	if os.Getenv("KVINJECT_TEST_VERBOSE") != "" {
		return testr.New(t)
	}
	return logr.New(&errorSink{t: t})
}

type errorSink struct {
	t    *testing.T
	name string
}

func (s *errorSink) Init(logr.RuntimeInfo)    {}
func (s *errorSink) Enabled(int) bool         { return false }
func (s *errorSink) Info(int, string, ...any) {}
func (s *errorSink) Error(err error, msg string, kv ...any) {
	s.t.Logf("%s: %s: %v %v", s.name, msg, err, kv)
}
func (s *errorSink) WithValues(...any) logr.LogSink { return s }
func (s *errorSink) WithName(n string) logr.LogSink {
	return &errorSink{t: s.t, name: strings.TrimPrefix(s.name+"/"+n, "/")}
}
