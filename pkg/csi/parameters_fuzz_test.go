package csi

import (
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
