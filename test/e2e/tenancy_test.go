package e2e_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kvinject/kvinject/internal/testkit"
	"github.com/kvinject/kvinject/test/e2e/cluster"
)

// spPod is a pod written by hand, without kvinject's annotations: an inline volume of
// the secrets-store.kvinject.io driver (or one naming a SecretProviderClass) that
// authenticates as the service principal in the namespace's sp-creds Secret.
func spPod(ns, name, vault, class string, labels map[string]string) string {
	attrs := fmt.Sprintf(`keyvaultName: %s
            tenantId: %s
            usePodIdentity: "false"
            objects: |
              array:
                - |
                  objectName: DatabaseLogin`, vault, cluster.TenantID)
	if class != "" {
		attrs = "secretProviderClass: " + class
	}
	var meta strings.Builder
	for k, v := range labels {
		fmt.Fprintf(&meta, "\n    %s: %s", k, v)
	}
	labelBlock := ""
	if meta.Len() > 0 {
		labelBlock = "\n  labels:" + meta.String()
	}
	return fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata:
  name: %s
  namespace: %s%s
spec:
  terminationGracePeriodSeconds: 1
  containers:
    - name: app
      image: kvinject.local/e2e/busybox:v1
      imagePullPolicy: Never
      command: ["sleep", "86400"]
      volumeMounts:
        - {name: secrets, mountPath: /mnt/secrets-store, readOnly: true}
  volumes:
    - name: secrets
      csi:
        driver: secrets-store.kvinject.io
        readOnly: true
        nodePublishSecretRef: {name: sp-creds}
        volumeAttributes:
            %s
`, name, ns, labelBlock, attrs)
}

// annotatedPod is a pod that asks kvinject for the tutorial's secrets.
func annotatedPod(ns, name, vault, identity string) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata:
  name: %s
  namespace: %s
  annotations:
    kvinject.io/vault: %s
    kvinject.io/identity: %s
    kvinject.io/tenant-id: %s
    kvinject.io/secrets: DatabaseLogin
spec:
  terminationGracePeriodSeconds: 1
  containers:
    - {name: app, image: kvinject.local/e2e/busybox:v1, imagePullPolicy: Never, command: ["sleep", "86400"]}
`, name, ns, vault, identity, cluster.TenantID)
}

// applyText writes yaml to the run directory and applies it, returning kubectl's
// error (a denial) instead of failing; what it created is deleted at the end.
func applyText(t *testing.T, name, yaml string) error {
	t.Helper()
	file := writeText(t, name, yaml)
	_, err := c.Kubectl(t.Context(), "apply", "-f", file)
	if err == nil {
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			_, _ = c.Kubectl(ctx, "delete", "-f", file, "--ignore-not-found", "--wait=true", "--timeout=60s")
		})
	}
	return err
}

// failedMount waits for the pod's FailedMount event and returns its message.
func failedMount(t *testing.T, ns, pod string) string {
	t.Helper()
	var msg string
	testkit.Eventually(t, 60*time.Second, "a FailedMount event on "+ns+"/"+pod, func(ctx context.Context) error {
		evs, err := c.Client.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=" + pod})
		if err != nil {
			return err
		}
		for _, e := range evs.Items {
			if e.Reason == "FailedMount" {
				msg = e.Message
				return nil
			}
		}
		return errors.New("none yet")
	})
	return msg
}

// TestTenancy: on the real node, team B cannot use team A's vault or identity through
// an annotation, a hand-written inline volume, a SecretProviderClass or a hand-set
// label; the webhook's denial and the kubelet's FailedMount say the same words; an
// Audit policy allows and reports; a policy change applies without a restart; an
// invalid policy refuses.
func TestTenancy(t *testing.T) {
	apply(t, "tenancy.yaml")
	apply(t, "tenancy-secrets.yaml")
	const vaultRule = `namespace "team-b" may not use vault "az-key-vault-demo": no KeyVaultAccessPolicy that selects it (team-b) lists it in spec.vaults`

	t.Run("team A mounts its own vault", func(t *testing.T) {
		if err := applyText(t, "team-a-own", spPod("team-a", "own", cluster.Vault, "", nil)); err != nil {
			t.Fatal(err)
		}
		waitReady(t, "team-a", "pod/own")
		if got := kubectl(t, "exec", "-n", "team-a", "own", "--", "cat", "/mnt/secrets-store/DatabaseLogin"); got != "MyDBLoginName" {
			t.Fatalf("DatabaseLogin = %q", got)
		}
	})
	t.Run("team B by annotation: the webhook denies", func(t *testing.T) {
		err := applyText(t, "team-b-annotated", annotatedPod("team-b", "annotated", cluster.Vault, "team-b-app"))
		want := `admission webhook "pods.kvinject.io" denied the request: kvinject.io/vault: ` + vaultRule
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("apply: %v\nwant %s", err, want)
		}
	})
	t.Run("team B by a hand-set label: the webhook denies", func(t *testing.T) {
		err := applyText(t, "team-b-label", spPod("team-b", "label", "team-b-kv", "", map[string]string{"aadpodidbinding": "azure-kv"}))
		want := `admission webhook "pod-identity.kvinject.io" denied the request: metadata.labels.aadpodidbinding: namespace "team-b" may not use AAD Pod Identity "azure-kv": no KeyVaultAccessPolicy that selects it (team-b) lists it in spec.podIdentities`
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("apply: %v\nwant %s", err, want)
		}
	})
	t.Run("team B by a SecretProviderClass: the plugin refuses", func(t *testing.T) {
		if err := applyText(t, "team-b-spc", spPod("team-b", "spc", "", "borrowed", nil)); err != nil {
			t.Fatal(err)
		}
		if msg := failedMount(t, "team-b", "spc"); !strings.HasSuffix(msg, "code = PermissionDenied desc = "+vaultRule) {
			t.Fatalf("FailedMount %q does not end with the policy's words %q", msg, vaultRule)
		}
	})
	t.Run("team B by a hand-written inline volume, until the policy allows it", func(t *testing.T) {
		if err := applyText(t, "team-b-inline", spPod("team-b", "inline", cluster.Vault, "", nil)); err != nil {
			t.Fatal(err)
		}
		if msg := failedMount(t, "team-b", "inline"); !strings.HasSuffix(msg, "code = PermissionDenied desc = "+vaultRule) {
			t.Fatalf("FailedMount %q does not end with the policy's words %q", msg, vaultRule)
		}
		kubectl(t, "patch", "keyvaultaccesspolicy", "team-b", "--type=merge", "-p", `{"spec":{"vaults":["team-b-*","az-key-vault-demo"]}}`)
		changed := time.Now()
		waitReady(t, "team-b", "pod/inline")
		t.Logf("the pod mounted %.1fs after the policy change (the kubelet's retry backoff included)", time.Since(changed).Seconds())
	})
	t.Run("an Audit policy allows and reports", func(t *testing.T) {
		if err := applyText(t, "team-c-audited", spPod("team-c", "audited", cluster.Vault, "", nil)); err != nil {
			t.Fatal(err)
		}
		waitReady(t, "team-c", "pod/audited")
		want := `allowed, but KeyVaultAccessPolicy team-c-trial (Audit) would refuse it: namespace "team-c" may not use vault "az-key-vault-demo": no KeyVaultAccessPolicy that selects it (team-c-trial) lists it in spec.vaults; ` +
			`namespace "team-c" may not use a service principal from nodePublishSecretRef: no KeyVaultAccessPolicy that selects it (team-c-trial) sets spec.allowServicePrincipal`
		testkit.Eventually(t, 30*time.Second, "a PolicyAudit event on the pod", func(ctx context.Context) error {
			evs, err := c.Client.CoreV1().Events("team-c").List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=audited"})
			if err != nil {
				return err
			}
			for _, e := range evs.Items {
				if e.Reason == "PolicyAudit" {
					if e.Message != want {
						return fmt.Errorf("message %q", e.Message)
					}
					return nil
				}
			}
			return errors.New("none yet")
		})
	})
	t.Run("a pinned identity beats the annotation", func(t *testing.T) {
		kubectl(t, "patch", "keyvaultaccesspolicy", "team-a", "--type=merge", "-p", `{"spec":{"pinnedIdentity":{"workloadIdentityClientID":"`+cluster.ClientID+`"}}}`)
		testkit.Eventually(t, 10*time.Second, "the pin in force", func(ctx context.Context) error {
			out, err := c.Kubectl(ctx, "apply", "--dry-run=server", "-o", `jsonpath={.spec.volumes[?(@.name=="kvinject-secrets")].csi.volumeAttributes.clientID}`, "-f", writeText(t, "team-a-pinned", annotatedPod("team-a", "pinned", cluster.Vault, "azure-kv")))
			if err != nil {
				return err
			}
			if out != cluster.ClientID {
				return fmt.Errorf("clientID %q", out)
			}
			return nil
		})
	})
	t.Run("an invalid policy refuses", func(t *testing.T) {
		if err := applyText(t, "team-d-refused", spPod("team-d", "refused", cluster.Vault, "", nil)); err != nil {
			t.Fatal(err)
		}
		want := `KeyVaultAccessPolicy team-d, which selects namespace "team-d", is invalid, so it refuses everything there until it is fixed: spec.vaults[0]: "not_a_vault" is not a Key Vault name: it may hold only letters, digits and '-'`
		if msg := failedMount(t, "team-d", "refused"); !strings.HasSuffix(msg, want) {
			t.Fatalf("FailedMount %q does not end with %q", msg, want)
		}
		if got := kubectl(t, "get", "keyvaultaccesspolicy", "team-d", "-o", `jsonpath={.status.conditions[?(@.type=="Valid")].status}`); got != "False" {
			t.Errorf("team-d Valid=%q, want False", got)
		}
	})
}

// writeText writes yaml to the run directory and returns the file.
func writeText(t *testing.T, name, yaml string) string {
	t.Helper()
	file := c.RunPath(name + ".yaml")
	if err := os.WriteFile(file, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	return file
}
