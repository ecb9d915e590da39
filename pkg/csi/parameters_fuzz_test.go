package csi

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/kvinject/kvinject/pkg/contract"
)

// FuzzParseParameters feeds arbitrary attributes to the volume parser: it never
// panics, every error wraps ErrInvalidVolume, and every accepted object's file name
// passes the writer's path check (so no accepted input can name a path outside the
// volume). Seeds are in testdata/fuzz/FuzzParseParameters.
func FuzzParseParameters(f *testing.F) {
	f.Add("az-key-vault-demo", "", "array:\n  - |\n    objectName: DatabaseLogin\n    objectAlias: DATABASE_LOGIN\n    objectType: secret\n")
	f.Add("kv", "AzureChinaCloud", "array:\n  - |\n    objectName: a\n    objectAlias: ../x\n")
	f.Add("v-1", "azureusgovernmentcloud", "array: []")
	f.Fuzz(func(t *testing.T, vault, cloud, objects string) {
		p, err := ParseParameters(map[string]string{
			contract.AttrKeyVaultName: vault,
			contract.AttrCloudName:    cloud,
			contract.AttrObjects:      objects,
		}, 8)
		if err != nil {
			if !errors.Is(err, ErrInvalidVolume) {
				t.Fatalf("error %v does not wrap ErrInvalidVolume", err)
			}
			return
		}
		if len(p.Objects) == 0 || len(p.Objects) > 8 {
			t.Fatalf("accepted a volume with %d objects", len(p.Objects))
		}
		if strings.ContainsAny(p.Vault, "./:@\\") {
			t.Fatalf("accepted vault name %q", p.Vault)
		}
		for _, o := range p.Objects {
			if err := ValidateFileName(o.FileName()); err != nil {
				t.Fatalf("accepted object with unsafe file name %q", o.FileName())
			}
		}
	})
}

// FuzzClassParameters: any SecretProviderClass spec is either refused with an error
// that wraps ErrClass and stays short, or accepted only when its provider is azure and
// it has no field kvinject ignores.
func FuzzClassParameters(f *testing.F) {
	f.Add(`{"provider":"azure","parameters":{"keyvaultName":"kv-demo","usePodIdentity":"true"}}`)
	f.Add(`{"provider":"azure","parameters":{},"secretObjects":[]}`)
	f.Add(`{"provider":"azure","parameters":{},"secretObjects":[{"secretName":"s"}]}`)
	f.Add(`{"provider":"azure","parameters":{"a":1},"x":{},"y":null}`)
	f.Add(`{"provider":7}`)
	f.Fuzz(func(t *testing.T, spec string) {
		var spc secretProviderClass
		if json.Unmarshal([]byte(`{"spec":`+spec+`}`), &spc) != nil {
			return
		}
		params, err := classParameters("default/c", spc)
		if err != nil {
			if !errors.Is(err, ErrClass) {
				t.Fatalf("error %v does not wrap ErrClass", err)
			}
			if len(err.Error()) > 2048 {
				t.Fatalf("a %d-byte error for a %d-byte spec", len(err.Error()), len(spec))
			}
			return
		}
		var provider string
		if json.Unmarshal(spc.Spec["provider"], &provider) != nil || provider != "azure" {
			t.Fatalf("accepted provider %s", spc.Spec["provider"])
		}
		for field, raw := range spc.Spec {
			if field == "secretObjects" {
				var objs []json.RawMessage
				if json.Unmarshal(raw, &objs) != nil || len(objs) > 0 {
					t.Fatalf("accepted secretObjects %s", raw)
				}
			} else if field != "provider" && field != "parameters" {
				t.Fatalf("accepted spec field %q", field)
			}
		}
		if params == nil {
			t.Fatal("accepted with nil parameters")
		}
	})
}
