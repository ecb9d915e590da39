package policy

import (
	"errors"
	"slices"
	"testing"
)

const (
	tenantA = "72f988bf-86f1-41af-91ab-2d7cd011db47"
	clientA = "11111111-1111-1111-1111-111111111111"
	clientB = "22222222-2222-2222-2222-222222222222"
)

var teamA = LabelSelector{MatchLabels: map[string]string{"kvinject.io/team": "a"}}

func TestCheck(t *testing.T) {
	base := Spec{NamespaceSelector: teamA, Vaults: []string{"team-a-*", "shared-config"}, Tenants: []string{tenantA},
		PodIdentities: []string{"team-a-app"}, WorkloadIdentityClientIDs: []string{clientA}}
	with := func(f func(*Spec)) Spec { s := base; f(&s); return s }
	ok := Request{Vault: "team-a-kv", Tenant: tenantA, Identity: Identity{WorkloadIdentityClientID: clientA}}
	req := func(f func(*Request)) Request { r := ok; f(&r); return r }
	labelsA := map[string]string{"kvinject.io/team": "a"}

	tests := []struct {
		name       string
		set        *Set
		labels     map[string]string
		req        Request
		governed   bool
		denied     string
		audited    string
		fields     []string
		pin        *Identity
		namespaced []string
	}{
		{name: "no policy at all", set: NewSet(nil), labels: labelsA, req: req(func(r *Request) { r.Vault = "anything" })},
		{name: "nil set", set: nil, labels: labelsA, req: ok},
		{name: "namespace not selected", set: NewSet([]Object{{"a", base}}), labels: map[string]string{"kvinject.io/team": "b"},
			req: req(func(r *Request) { r.Vault = "team-b-kv" })},
		{name: "allowed by prefix", set: NewSet([]Object{{"a", base}}), labels: labelsA, req: ok, governed: true, namespaced: []string{"a"}},
		{name: "vault names fold case", set: NewSet([]Object{{"a", base}}), labels: labelsA,
			req: req(func(r *Request) { r.Vault = "Shared-Config" }), governed: true, namespaced: []string{"a"}},
		{name: "prefix folds case", set: NewSet([]Object{{"a", base}}), labels: labelsA,
			req: req(func(r *Request) { r.Vault = "TEAM-A-x" }), governed: true, namespaced: []string{"a"}},
		{name: "other team's vault", set: NewSet([]Object{{"a", base}}), labels: labelsA,
			req: req(func(r *Request) { r.Vault = "team-b-kv" }), governed: true, namespaced: []string{"a"},
			denied: `namespace "ns" may not use vault "team-b-kv": no KeyVaultAccessPolicy that selects it (a) lists it in spec.vaults`,
			fields: []string{FieldVaults}},
		{name: "every rule broken at once", set: NewSet([]Object{{"a", base}}), labels: labelsA, governed: true, namespaced: []string{"a"},
			req:    Request{Vault: "team-b-kv", Tenant: "contoso.onmicrosoft.com", Identity: Identity{WorkloadIdentityClientID: clientB}},
			denied: `namespace "ns" may not use vault "team-b-kv": no KeyVaultAccessPolicy that selects it (a) lists it in spec.vaults; namespace "ns" may not use tenant "contoso.onmicrosoft.com": no KeyVaultAccessPolicy that selects it (a) lists it in spec.tenants; namespace "ns" may not use workload identity client ID "22222222-2222-2222-2222-222222222222": no KeyVaultAccessPolicy that selects it (a) lists it in spec.workloadIdentityClientIDs`,
			fields: []string{FieldVaults, FieldTenants, FieldClientIDs}},
		{name: "client IDs fold case", set: NewSet([]Object{{"a", with(func(s *Spec) { s.WorkloadIdentityClientIDs = []string{"AAAAAAAA-1111-1111-1111-111111111111"} })}}),
			labels: labelsA, req: req(func(r *Request) { r.Identity.WorkloadIdentityClientID = "aaaaaaaa-1111-1111-1111-111111111111" }), governed: true, namespaced: []string{"a"}},
		{name: "pod identity allowed", set: NewSet([]Object{{"a", base}}), labels: labelsA,
			req: req(func(r *Request) { r.Identity = Identity{PodIdentity: "team-a-app"} }), governed: true, namespaced: []string{"a"}},
		{name: "pod identity of another team", set: NewSet([]Object{{"a", base}}), labels: labelsA,
			req: req(func(r *Request) { r.Identity = Identity{PodIdentity: "team-b-app"} }), governed: true, namespaced: []string{"a"},
			denied: `namespace "ns" may not use AAD Pod Identity "team-b-app": no KeyVaultAccessPolicy that selects it (a) lists it in spec.podIdentities`,
			fields: []string{FieldPodIdentities}},
		{name: "pod identity selectors are case-sensitive", set: NewSet([]Object{{"a", base}}), labels: labelsA,
			req: req(func(r *Request) { r.Identity = Identity{PodIdentity: "Team-A-App"} }), governed: true, namespaced: []string{"a"},
			denied: `namespace "ns" may not use AAD Pod Identity "Team-A-App": no KeyVaultAccessPolicy that selects it (a) lists it in spec.podIdentities`,
			fields: []string{FieldPodIdentities}},
		{name: "service principal not allowed", set: NewSet([]Object{{"a", base}}), labels: labelsA, governed: true, namespaced: []string{"a"},
			req:    req(func(r *Request) { r.ServicePrincipal = true }),
			denied: `namespace "ns" may not use a service principal from nodePublishSecretRef: no KeyVaultAccessPolicy that selects it (a) sets spec.allowServicePrincipal`,
			fields: []string{FieldServicePrincipal}},
		{name: "service principal allowed", set: NewSet([]Object{{"a", with(func(s *Spec) { s.AllowServicePrincipal = true })}}), labels: labelsA,
			req: req(func(r *Request) { r.ServicePrincipal = true }), governed: true, namespaced: []string{"a"}},
		{name: "allowances add together", labels: labelsA, governed: true, namespaced: []string{"a-identities", "a-vaults"},
			set: NewSet([]Object{{"a-vaults", Spec{NamespaceSelector: teamA, Vaults: []string{"*"}, Tenants: []string{"*"}}},
				{"a-identities", Spec{NamespaceSelector: teamA, WorkloadIdentityClientIDs: []string{clientA}}}}),
			req: req(func(r *Request) { r.Vault = "anything"; r.Tenant = "contoso.onmicrosoft.com" })},
		{name: "an empty list allows nothing", labels: labelsA, governed: true, namespaced: []string{"a"},
			set:    NewSet([]Object{{"a", Spec{NamespaceSelector: teamA, Vaults: []string{"*"}, Tenants: []string{"*"}}}}),
			req:    ok,
			denied: `namespace "ns" may not use workload identity client ID "11111111-1111-1111-1111-111111111111": no KeyVaultAccessPolicy that selects it (a) lists it in spec.workloadIdentityClientIDs`,
			fields: []string{FieldClientIDs}},
		{name: "an empty selector selects every namespace", labels: nil, governed: true, namespaced: []string{"all"},
			set:    NewSet([]Object{{"all", Spec{Vaults: []string{"shared-config"}}}}),
			req:    Request{Vault: "team-a-kv"},
			denied: `namespace "ns" may not use vault "team-a-kv": no KeyVaultAccessPolicy that selects it (all) lists it in spec.vaults`,
			fields: []string{FieldVaults}},
		{name: "audit only allows and reports", labels: labelsA, governed: true, namespaced: []string{"a"},
			set:     NewSet([]Object{{"a", with(func(s *Spec) { s.Mode = Audit })}}),
			req:     req(func(r *Request) { r.Vault = "team-b-kv" }),
			audited: `allowed, but KeyVaultAccessPolicy a (Audit) would refuse it: namespace "ns" may not use vault "team-b-kv": no KeyVaultAccessPolicy that selects it (a) lists it in spec.vaults`,
			fields:  []string{FieldVaults}},
		{name: "audit policies grant nothing under Enforce", labels: labelsA, governed: true, namespaced: []string{"a", "b-trial"},
			set: NewSet([]Object{{"a", base}, {"b-trial", Spec{NamespaceSelector: teamA, Mode: Audit, Vaults: []string{"team-b-kv"}}}}),
			req: req(func(r *Request) { r.Vault = "team-b-kv" }),
			// Enforce refuses; the Audit policy does not add a second report.
			denied: `namespace "ns" may not use vault "team-b-kv": no KeyVaultAccessPolicy that selects it (a) lists it in spec.vaults`,
			fields: []string{FieldVaults}},
		{name: "an Audit pin reports a pod that would be re-pinned", labels: labelsA, governed: true, namespaced: []string{"a", "pin-trial"},
			set:     NewSet([]Object{{"a", base}, {"pin-trial", Spec{NamespaceSelector: teamA, Mode: Audit, PinnedIdentity: &Identity{PodIdentity: "team-a-app"}}}}),
			req:     ok,
			audited: `allowed, but KeyVaultAccessPolicy pin-trial (Audit) would refuse it: namespace "ns" may use only AAD Pod Identity "team-a-app" (KeyVaultAccessPolicy pin-trial, spec.pinnedIdentity), not workload identity client ID "11111111-1111-1111-1111-111111111111"`,
			fields:  []string{FieldPinnedIdentity}},
		{name: "pinned identity needs no list entry", labels: labelsA, governed: true, namespaced: []string{"a"},
			set: NewSet([]Object{{"a", with(func(s *Spec) { s.PinnedIdentity = &Identity{WorkloadIdentityClientID: clientB} })}}),
			req: req(func(r *Request) { r.Identity.WorkloadIdentityClientID = clientB }), pin: &Identity{WorkloadIdentityClientID: clientB}},
		{name: "pinned identity excludes the listed ones", labels: labelsA, governed: true, namespaced: []string{"a"},
			set:    NewSet([]Object{{"a", with(func(s *Spec) { s.PinnedIdentity = &Identity{WorkloadIdentityClientID: clientB} })}}),
			req:    ok,
			pin:    &Identity{WorkloadIdentityClientID: clientB},
			denied: `namespace "ns" may use only workload identity client ID "22222222-2222-2222-2222-222222222222" (KeyVaultAccessPolicy a, spec.pinnedIdentity), not workload identity client ID "11111111-1111-1111-1111-111111111111"`,
			fields: []string{FieldPinnedIdentity}},
		{name: "pinned identity excludes a service principal", labels: labelsA, governed: true, namespaced: []string{"a"},
			set: NewSet([]Object{{"a", with(func(s *Spec) {
				s.PinnedIdentity = &Identity{PodIdentity: "team-a-app"}
				s.AllowServicePrincipal = true
			})}}),
			req:    req(func(r *Request) { r.ServicePrincipal = true }),
			pin:    &Identity{PodIdentity: "team-a-app"},
			denied: `namespace "ns" may use only AAD Pod Identity "team-a-app" (KeyVaultAccessPolicy a, spec.pinnedIdentity), not a service principal from nodePublishSecretRef`,
			fields: []string{FieldPinnedIdentity}},
		{name: "two policies pinning one identity agree", labels: labelsA, governed: true, namespaced: []string{"a", "a2"},
			set: NewSet([]Object{{"a", with(func(s *Spec) { s.PinnedIdentity = &Identity{WorkloadIdentityClientID: clientB} })},
				{"a2", Spec{NamespaceSelector: teamA, PinnedIdentity: &Identity{WorkloadIdentityClientID: "22222222-2222-2222-2222-222222222222"[:35] + "2"}}}}),
			req: req(func(r *Request) { r.Identity.WorkloadIdentityClientID = clientB }), pin: &Identity{WorkloadIdentityClientID: clientB}},
		{name: "pins that disagree refuse everything", labels: labelsA, governed: true, namespaced: []string{"a", "a2"},
			set: NewSet([]Object{{"a", with(func(s *Spec) { s.PinnedIdentity = &Identity{WorkloadIdentityClientID: clientB} })},
				{"a2", Spec{NamespaceSelector: teamA, PinnedIdentity: &Identity{PodIdentity: "team-a-app"}}}}),
			req:    req(func(r *Request) { r.Identity.WorkloadIdentityClientID = clientB }),
			denied: `the KeyVaultAccessPolicies that select namespace "ns" pin different identities (a pins workload identity client ID "22222222-2222-2222-2222-222222222222", a2 pins AAD Pod Identity "team-a-app"), so it may use none until their spec.pinnedIdentity agree`,
			fields: []string{FieldPinnedIdentity}},
		{name: "an invalid policy refuses where it selects", labels: labelsA, governed: true, namespaced: []string{"a", "broken"},
			set: NewSet([]Object{{"a", base}, {"broken", Spec{NamespaceSelector: teamA, Vaults: []string{"bad_name*", "x"}, Mode: "enforce"}}}),
			req: ok,
			denied: `KeyVaultAccessPolicy broken, which selects namespace "ns", is invalid, so it refuses everything there until it is fixed: spec.mode: "enforce" is not Enforce or Audit; ` +
				`spec.vaults[0]: "bad_name*" is not a vault name pattern: before the "*" comes the start of a Key Vault name (a letter, then letters, digits and single '-', at most 23 characters); spec.vaults[1]: "x" is not a Key Vault name: it must be 3-24 characters long`,
			fields: []string{FieldPolicy}},
		{name: "an invalid selector selects every namespace", labels: map[string]string{"other": "x"}, governed: true, namespaced: []string{"broken"},
			set: NewSet([]Object{{"broken", Spec{NamespaceSelector: LabelSelector{MatchExpressions: []LabelSelectorRequirement{{Key: "team", Operator: "In"}}}, Vaults: []string{"*"}}}}),
			req: ok,
			denied: `KeyVaultAccessPolicy broken, which selects namespace "ns", is invalid, so it refuses everything there until it is fixed: ` +
				`spec.namespaceSelector: matchExpressions[0]: values: Invalid value: null: for 'in', 'notin' operators, values set can't be empty`,
			fields: []string{FieldPolicy}},
		{name: "unreadable policies refuse everywhere", set: Unreadable(errors.New(`keyvaultaccesspolicies.kvinject.io is forbidden`)), labels: nil, governed: true,
			req:    ok,
			denied: `KeyVaultAccessPolicies cannot be read (keyvaultaccesspolicies.kvinject.io is forbidden), so kvinject allows nothing until they can`,
			fields: []string{FieldUnreadable}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ns := tt.set.Namespace("ns", tt.labels)
			if ns.Governed() != tt.governed {
				t.Errorf("Governed() = %v, want %v", ns.Governed(), tt.governed)
			}
			if got := ns.Policies(); !slices.Equal(got, tt.namespaced) {
				t.Errorf("Policies() = %q, want %q", got, tt.namespaced)
			}
			pin, _, pinned := ns.Pin()
			if pinned != (tt.pin != nil) || pinned && pin != *tt.pin {
				t.Errorf("Pin() = %+v, %v; want %+v", pin, pinned, tt.pin)
			}
			res := ns.Check(tt.req)
			var fields []string
			for _, e := range []*Error{res.Denied, res.Audited} {
				if e != nil {
					for _, v := range e.Violations {
						fields = append(fields, v.Field)
					}
				}
			}
			if got := errText(res.Denied); got != tt.denied {
				t.Errorf("Denied:\n got %s\nwant %s", got, tt.denied)
			}
			if got := errText(res.Audited); got != tt.audited {
				t.Errorf("Audited:\n got %s\nwant %s", got, tt.audited)
			}
			if !slices.Equal(fields, tt.fields) {
				t.Errorf("fields %q, want %q", fields, tt.fields)
			}
		})
	}
}

func errText(e *Error) string {
	if e == nil {
		return ""
	}
	return e.Error()
}

func TestValidate(t *testing.T) {
	valid := Spec{NamespaceSelector: LabelSelector{MatchLabels: map[string]string{"team": "a"},
		MatchExpressions: []LabelSelectorRequirement{{Key: "env", Operator: "NotIn", Values: []string{"prod"}}, {Key: "kvinject.io/off", Operator: "DoesNotExist"}}},
		Mode: Audit, Vaults: []string{"*", "team-a-*", "a*", "shared-config"}, Tenants: []string{tenantA, "contoso.onmicrosoft.com", "*"},
		PodIdentities: []string{"team-a-*", "app_1.x"}, WorkloadIdentityClientIDs: []string{clientA, "*"}, PinnedIdentity: &Identity{PodIdentity: "team-a-app"}}
	if err := valid.Validate(); err != nil {
		t.Fatalf("valid spec: %v", err)
	}
	many := make([]string, MaxListItems+1)
	for i := range many {
		many[i] = "*"
	}
	tests := []struct {
		name string
		spec Spec
		want string
	}{
		{"bad label key", Spec{NamespaceSelector: LabelSelector{MatchLabels: map[string]string{"bad key": "a"}}},
			`spec.namespaceSelector: matchLabels: key: Invalid value: "bad key": name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')`},
		{"bad operator", Spec{NamespaceSelector: LabelSelector{MatchExpressions: []LabelSelectorRequirement{{Key: "a", Operator: "Equals", Values: []string{"x"}}}}},
			`spec.namespaceSelector: matchExpressions[0]: operator "Equals" is not In, NotIn, Exists or DoesNotExist`},
		{"patterns", Spec{Vaults: []string{"team-*-x", "-a*", "1team*", "team--*", "abcdefghijklmnopqrstuvwx*"}},
			`spec.vaults[0]: "team-*-x" is not a Key Vault name: it may hold only letters, digits and '-'` + "\n" +
				`spec.vaults[1]: "-a*" is not a vault name pattern: before the "*" comes the start of a Key Vault name (a letter, then letters, digits and single '-', at most 23 characters)` + "\n" +
				`spec.vaults[2]: "1team*" is not a vault name pattern: before the "*" comes the start of a Key Vault name (a letter, then letters, digits and single '-', at most 23 characters)` + "\n" +
				`spec.vaults[3]: "team--*" is not a vault name pattern: before the "*" comes the start of a Key Vault name (a letter, then letters, digits and single '-', at most 23 characters)` + "\n" +
				`spec.vaults[4]: "abcdefghijklmnopqrstuvwx*" is not a vault name pattern: before the "*" comes the start of a Key Vault name (a letter, then letters, digits and single '-', at most 23 characters)`},
		{"identities", Spec{Tenants: []string{"contoso"}, PodIdentities: []string{"a b", "x**"}, WorkloadIdentityClientIDs: []string{"app"}},
			`spec.tenants[0]: "contoso" is not a tenant: use the tenant's GUID or its domain name` + "\n" +
				`spec.podIdentities[0]: "a b" is not a selector: it becomes the aadpodidbinding label, whose value holds only letters, digits, '-', '_' and '.'` + "\n" +
				`spec.podIdentities[1]: "x**": only a trailing "*" is allowed` + "\n" +
				`spec.workloadIdentityClientIDs[0]: "app" is not a client ID: use the identity's application (client) ID, a GUID like 00000000-0000-0000-0000-000000000000`},
		{"pin with both", Spec{PinnedIdentity: &Identity{PodIdentity: "a", WorkloadIdentityClientID: clientA}},
			`spec.pinnedIdentity: set exactly one of podIdentity and workloadIdentityClientID`},
		{"pin with neither", Spec{PinnedIdentity: &Identity{}}, `spec.pinnedIdentity: set exactly one of podIdentity and workloadIdentityClientID`},
		{"pin with a pattern", Spec{PinnedIdentity: &Identity{WorkloadIdentityClientID: "*"}},
			`spec.pinnedIdentity.workloadIdentityClientID: "*" is not a client ID: use the identity's application (client) ID, a GUID like 00000000-0000-0000-0000-000000000000`},
		{"too many", Spec{Vaults: many}, `spec.vaults: 257 items; at most 256 are allowed`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.spec.Validate()
			if err == nil || err.Error() != tt.want {
				t.Fatalf("Validate:\n got %v\nwant %s", err, tt.want)
			}
		})
	}
}
