package policy

import (
	"encoding/json"
	"testing"

	"k8s.io/apimachinery/pkg/labels"
)

// FuzzCheck decodes a policy as the node plugin receives it from the API server (JSON)
// and asks it about an arbitrary request: it never panics, never both refuses and
// reports, an Audit policy never refuses, and a namespace it does not select is never
// governed.
func FuzzCheck(f *testing.F) {
	f.Add(`{"namespaceSelector":{"matchLabels":{"team":"a"}},"vaults":["team-a-*"],"tenants":["*"],"podIdentities":["app"]}`,
		"team-a-kv", "72f988bf-86f1-41af-91ab-2d7cd011db47", "app", "", false, "team", "a")
	f.Fuzz(func(t *testing.T, specJSON, vault, tenant, selector, clientID string, sp bool, labelKey, labelValue string) {
		var spec Spec
		if json.Unmarshal([]byte(specJSON), &spec) != nil {
			return
		}
		set := NewSet([]Object{{Name: "p", Spec: spec}})
		ns := set.Namespace("ns", map[string]string{labelKey: labelValue})
		res := ns.Check(Request{Vault: vault, Tenant: tenant, Identity: Identity{PodIdentity: selector, WorkloadIdentityClientID: clientID}, ServicePrincipal: sp})
		if res.Denied != nil && res.Audited != nil {
			t.Fatalf("both refused and reported: %v / %v", res.Denied, res.Audited)
		}
		for _, e := range []*Error{res.Denied, res.Audited} {
			if e != nil && (len(e.Violations) == 0 || e.Error() == "") {
				t.Fatalf("an empty refusal: %+v", e)
			}
		}
		if spec.Mode == Audit && res.Denied != nil {
			t.Fatalf("an Audit policy refused: %v", res.Denied)
		}
		if sel, err := spec.NamespaceSelector.selector(); err == nil && !sel.Matches(labelsOf(labelKey, labelValue)) {
			if ns.Governed() || res.Denied != nil || res.Audited != nil {
				t.Fatalf("a namespace the selector does not select is governed: %+v", res)
			}
		}
	})
}

func labelsOf(k, v string) labels.Set { return labels.Set{k: v} }
