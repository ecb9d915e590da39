package csi

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/kvinject/kvinject/pkg/contract"
)

// TestParameterKeys: a parameter kvinject does not honour fails the volume with a
// message naming it and what to do instead; only the documented IgnoredParameters and
// the kubelet's own keys pass unread.
func TestParameterKeys(t *testing.T) {
	base := func(extra ...string) map[string]string {
		p := map[string]string{
			contract.AttrKeyVaultName: "kv-demo", contract.AttrUsePodIdentity: "true",
			contract.AttrObjects:    "array:\n  - |\n    objectName: a\n",
			contract.ContextPodName: "p", contract.ContextTokens: "{}",
		}
		for i := 0; i < len(extra); i += 2 {
			p[extra[i]] = extra[i+1]
		}
		return p
	}
	for _, tc := range []struct {
		name string
		p    map[string]string
		want string
	}{
		{"the kubelet's keys and the provider's ignored ones", base("resourceGroup", "rg", "subscriptionId", "sub"), ""},
		{"useAzureTokenProxy", base("useAzureTokenProxy", "true"),
			"invalid volume: useAzureTokenProxy is not supported: kvinject exchanges the pod's service-account token with Entra ID itself; remove useAzureTokenProxy and set clientID (workload identity)"},
		{"cloudEnvFileName", base("cloudEnvFileName", "/etc/kubernetes/custom.json"),
			"invalid volume: cloudEnvFileName is not supported: it configures AzureStackCloud, which kvinject does not serve; use cloudName with a public or sovereign cloud"},
		{"a typo", base("keyVaultName", "kv"),
			`invalid volume: unknown parameter "keyVaultName": kvinject reads keyvaultName, tenantId, cloudName, usePodIdentity, clientID and objects; check the spelling, or remove it`},
		{"many unknown keys", base("a", "", "b", "", "c", "", "d", "", "e", "", "f", "", "g", ""),
			`invalid volume: unknown parameter "a", "b", "c", "d", "e" and 2 more: kvinject reads`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseParameters(tc.p, 8)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.want != "" && (err == nil || !strings.HasPrefix(err.Error(), tc.want) || !errors.Is(err, ErrInvalidVolume)):
				t.Fatalf("got %v, want %q", err, tc.want)
			}
		})
	}
}

// TestClassFields: every field of a SecretProviderClass's spec is read; one kvinject
// does not honour fails the mount, naming the class, the field and the alternative.
func TestClassFields(t *testing.T) {
	for _, tc := range []struct {
		name, spec, want string
	}{
		{"provider and parameters", `{"provider":"azure","parameters":{"keyvaultName":"kv"}}`, ""},
		{"an empty secretObjects", `{"provider":"azure","parameters":{"keyvaultName":"kv"},"secretObjects":[]}`, ""},
		{"secretObjects", `{"provider":"azure","parameters":{},"secretObjects":[{"secretName":"db","type":"Opaque","data":[{"objectName":"a","key":"a"}]}]}`,
			"SecretProviderClass default/c: spec.secretObjects is not supported: kvinject mounts files and syncs no Kubernetes Secret, so environment variables fed from one would go stale; read the mounted files instead (or keep this workload on the Secrets Store CSI driver)"},
		{"an unknown field", `{"provider":"azure","parameters":{},"secretObject":[],"zz":1}`,
			`SecretProviderClass default/c: unknown field in spec: "secretObject", "zz"; a SecretProviderClass for kvinject has spec.provider and spec.parameters (and an empty spec.secretObjects); remove it`},
		{"another provider", `{"provider":"vault","parameters":{}}`, `SecretProviderClass default/c has provider "vault"; kvinject serves provider azure only`},
		{"no provider", `{"parameters":{}}`, `SecretProviderClass default/c has provider ""; kvinject serves provider azure only`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var spc secretProviderClass
			if err := json.Unmarshal([]byte(`{"spec":`+tc.spec+`}`), &spc); err != nil {
				t.Fatal(err)
			}
			_, err := classParameters("default/c", spc)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.want != "" && (err == nil || err.Error() != tc.want || !errors.Is(err, ErrClass)):
				t.Fatalf("got %v\nwant %s", err, tc.want)
			}
		})
	}
}
