package policy

import (
	"fmt"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/labels"
)

// Object is one KeyVaultAccessPolicy as read from the API server.
type Object struct {
	Name string
	Spec Spec
}

// compiled is an Object ready to be asked.
type compiled struct {
	name string
	spec Spec
	mode Mode
	// sel selects the governed namespaces; nil when the selector is invalid, which
	// selects every namespace (an invalid policy refuses; it must not miss one).
	sel labels.Selector
	// err says why the policy is invalid; nil when it is valid.
	err error
}

// Set is every policy of the cluster at one moment, compiled. A Set is immutable and
// safe for concurrent use; a nil *Set is an empty one (no policy at all).
type Set struct {
	policies []*compiled // by name
	err      error
}

// NewSet compiles the policies. Invalid ones are kept: they refuse in the namespaces
// they select (see Object validity in the package doc).
func NewSet(objects []Object) *Set {
	s := &Set{policies: make([]*compiled, 0, len(objects))}
	for _, o := range objects {
		c := &compiled{name: o.Name, spec: o.Spec, mode: o.Spec.Mode, err: o.Spec.Validate()}
		if c.mode == "" {
			c.mode = Enforce
		}
		if sel, err := o.Spec.NamespaceSelector.selector(); err == nil {
			c.sel = sel
		}
		s.policies = append(s.policies, c)
	}
	slices.SortFunc(s.policies, func(a, b *compiled) int { return strings.Compare(a.name, b.name) })
	return s
}

// Unreadable is the Set of a cluster whose policies could not be read: it refuses
// everything, in every namespace, saying why.
func Unreadable(err error) *Set { return &Set{err: err} }

// Err is why the policies could not be read; nil for a Set built by NewSet.
func (s *Set) Err() error {
	if s == nil {
		return nil
	}
	return s.err
}

// Len is the number of policies.
func (s *Set) Len() int {
	if s == nil {
		return 0
	}
	return len(s.policies)
}

// Empty reports whether there is nothing to enforce: the policies were read and there
// are none. A caller may then skip reading namespace labels.
func (s *Set) Empty() bool { return s.Err() == nil && s.Len() == 0 }

// Namespace returns what the policies say about the namespace with these labels.
func (s *Set) Namespace(name string, nsLabels map[string]string) *Namespace {
	n := &Namespace{name: name}
	if s == nil {
		return n
	}
	n.err = s.err
	set := labels.Set(nsLabels)
	for _, p := range s.policies {
		if p.sel != nil && !p.sel.Matches(set) {
			continue
		}
		if p.mode == Audit {
			n.audit = append(n.audit, p)
		} else {
			n.enforce = append(n.enforce, p)
		}
	}
	return n
}

// Namespace is what the policies say about one namespace. Safe for concurrent use.
type Namespace struct {
	name           string
	enforce, audit []*compiled
	err            error
}

// Governed reports whether any policy selects the namespace (or the policies could not
// be read, which governs every namespace).
func (n *Namespace) Governed() bool {
	return n.err != nil || len(n.enforce)+len(n.audit) > 0
}

// Policies names the policies that select the namespace, Enforce ones first.
func (n *Namespace) Policies() []string {
	var out []string
	for _, p := range append(slices.Clip(n.enforce), n.audit...) {
		out = append(out, p.name)
	}
	return out
}

// Pin returns the identity the namespace's Enforce policies pin, and the policy that
// pins it; ok is false when none does, or when they disagree (Check refuses then).
func (n *Namespace) Pin() (id Identity, policy string, ok bool) {
	pins := pinsOf(n.enforce)
	if len(pins) != 1 || n.err != nil {
		return Identity{}, "", false
	}
	return *pins[0].spec.PinnedIdentity, pins[0].name, true
}

// Request is what a pod or volume asks for.
type Request struct {
	// Vault is the Key Vault name; empty skips the vault rule.
	Vault string
	// Tenant is the Entra ID tenant; empty skips the tenant rule.
	Tenant string
	// Identity is the pod's identity; ignored when ServicePrincipal is set. Empty (both
	// fields) skips the identity rules.
	Identity Identity
	// ServicePrincipal: the volume authenticates with a nodePublishSecretRef Secret.
	ServicePrincipal bool
}

// Result is the answer for one Request.
type Result struct {
	// Denied is set when the namespace's Enforce policies refuse the request.
	Denied *Error
	// Audited is set when the request is allowed, and the namespace's Enforce and
	// Audit policies together would refuse it.
	Audited *Error
}

// Check answers r for the namespace.
func (n *Namespace) Check(r Request) Result {
	if n.err != nil {
		return Result{Denied: &Error{Namespace: n.name, Mode: Enforce, Violations: []Violation{{Field: FieldUnreadable,
			Message: fmt.Sprintf("KeyVaultAccessPolicies cannot be read (%v), so kvinject allows nothing until they can", n.err)}}}}
	}
	var res Result
	if len(n.enforce) > 0 {
		if v := n.violations(n.enforce, r); len(v) > 0 {
			res.Denied = &Error{Namespace: n.name, Mode: Enforce, Violations: v}
			return res
		}
	}
	if len(n.audit) > 0 {
		all := append(slices.Clip(n.enforce), n.audit...)
		if v := n.violations(all, r); len(v) > 0 {
			res.Audited = &Error{Namespace: n.name, Mode: Audit, Policies: names(n.audit), Violations: v}
		}
	}
	return res
}

// FieldUnreadable and FieldPolicy are the Violation fields of a refusal that is not
// about a value: the policies could not be read, or one is invalid or they conflict.
const (
	FieldUnreadable = "unreadable"
	FieldPolicy     = "policy"
)

// violations lists what the policies (which all select the namespace) do not allow.
func (n *Namespace) violations(policies []*compiled, r Request) []Violation {
	var out []Violation
	for _, p := range policies {
		if p.err != nil {
			out = append(out, Violation{Field: FieldPolicy, Message: fmt.Sprintf(
				"KeyVaultAccessPolicy %s, which selects namespace %q, is invalid, so it refuses everything there until it is fixed: %s",
				p.name, n.name, strings.ReplaceAll(p.err.Error(), "\n", "; "))})
		}
	}
	if len(out) > 0 {
		return out
	}
	none := fmt.Sprintf("no KeyVaultAccessPolicy that selects it (%s)", strings.Join(names(policies), ", "))
	if r.Vault != "" && !allows(policies, func(s Spec) []string { return s.Vaults }, r.Vault, true, true) {
		out = append(out, Violation{Field: FieldVaults, Message: fmt.Sprintf(
			"namespace %q may not use vault %q: %s lists it in %s", n.name, r.Vault, none, FieldVaults)})
	}
	if r.Tenant != "" && !allows(policies, func(s Spec) []string { return s.Tenants }, r.Tenant, true, false) {
		out = append(out, Violation{Field: FieldTenants, Message: fmt.Sprintf(
			"namespace %q may not use tenant %q: %s lists it in %s", n.name, r.Tenant, none, FieldTenants)})
	}
	if v, ok := n.identityViolation(policies, r, none); ok {
		out = append(out, v)
	}
	return out
}

func (n *Namespace) identityViolation(policies []*compiled, r Request, none string) (Violation, bool) {
	uses := "a service principal from nodePublishSecretRef"
	if !r.ServicePrincipal {
		if r.Identity == (Identity{}) {
			return Violation{}, false
		}
		uses = r.Identity.String()
	}
	switch pins := pinsOf(policies); {
	case len(pins) > 1:
		var which []string
		for _, p := range pins {
			which = append(which, fmt.Sprintf("%s pins %s", p.name, p.spec.PinnedIdentity))
		}
		return Violation{Field: FieldPinnedIdentity, Message: fmt.Sprintf(
			"the KeyVaultAccessPolicies that select namespace %q pin different identities (%s), so it may use none until their %s agree",
			n.name, strings.Join(which, ", "), FieldPinnedIdentity)}, true
	case len(pins) == 1:
		pin := *pins[0].spec.PinnedIdentity
		if r.ServicePrincipal || !r.Identity.equal(pin) {
			return Violation{Field: FieldPinnedIdentity, Message: fmt.Sprintf(
				"namespace %q may use only %s (KeyVaultAccessPolicy %s, %s), not %s", n.name, pin, pins[0].name, FieldPinnedIdentity, uses)}, true
		}
		return Violation{}, false
	}
	switch {
	case r.ServicePrincipal:
		for _, p := range policies {
			if p.spec.AllowServicePrincipal {
				return Violation{}, false
			}
		}
		return Violation{Field: FieldServicePrincipal, Message: fmt.Sprintf(
			"namespace %q may not use %s: %s sets %s", n.name, uses, none, FieldServicePrincipal)}, true
	case r.Identity.PodIdentity != "":
		if !allows(policies, func(s Spec) []string { return s.PodIdentities }, r.Identity.PodIdentity, false, true) {
			return Violation{Field: FieldPodIdentities, Message: fmt.Sprintf(
				"namespace %q may not use %s: %s lists it in %s", n.name, uses, none, FieldPodIdentities)}, true
		}
	default:
		if !allows(policies, func(s Spec) []string { return s.WorkloadIdentityClientIDs }, r.Identity.WorkloadIdentityClientID, true, false) {
			return Violation{Field: FieldClientIDs, Message: fmt.Sprintf(
				"namespace %q may not use %s: %s lists it in %s", n.name, uses, none, FieldClientIDs)}, true
		}
	}
	return Violation{}, false
}

// allows reports whether any policy's list (from field) allows v: "*", an equal
// value, or (prefixes) a pattern "p*" with v starting with p.
func allows(policies []*compiled, field func(Spec) []string, v string, foldCase, prefixes bool) bool {
	for _, p := range policies {
		for _, pattern := range field(p.spec) {
			if pattern == Any {
				return true
			}
			if prefix, wild := strings.CutSuffix(pattern, Any); wild && prefixes {
				if len(v) >= len(prefix) && (v[:len(prefix)] == prefix || foldCase && strings.EqualFold(v[:len(prefix)], prefix)) {
					return true
				}
				continue
			}
			if v == pattern || foldCase && strings.EqualFold(v, pattern) {
				return true
			}
		}
	}
	return false
}

// pinsOf returns the policies that pin an identity, one per distinct identity.
func pinsOf(policies []*compiled) []*compiled {
	var out []*compiled
	for _, p := range policies {
		if p.spec.PinnedIdentity == nil || p.err != nil {
			continue
		}
		if !slices.ContainsFunc(out, func(q *compiled) bool { return q.spec.PinnedIdentity.equal(*p.spec.PinnedIdentity) }) {
			out = append(out, p)
		}
	}
	return out
}

func names(policies []*compiled) []string {
	out := make([]string, len(policies))
	for i, p := range policies {
		out[i] = p.name
	}
	return out
}

// Error is a refusal: every rule the request breaks, each naming the namespace, the
// value and the policy field that would allow it.
type Error struct {
	Namespace string
	// Mode is Enforce for a refusal, Audit for what Audit policies report.
	Mode Mode
	// Policies are the Audit policies that report (Mode Audit).
	Policies   []string
	Violations []Violation
}

// Violation is one rule broken.
type Violation struct {
	// Field is the policy field that would allow the value (FieldVaults, ...), or
	// FieldPolicy / FieldUnreadable. Metrics use it as a label.
	Field   string
	Message string
}

func (e *Error) Error() string {
	msgs := make([]string, len(e.Violations))
	for i, v := range e.Violations {
		msgs[i] = v.Message
	}
	msg := strings.Join(msgs, "; ")
	if e.Mode == Audit {
		return fmt.Sprintf("allowed, but KeyVaultAccessPolicy %s (Audit) would refuse it: %s", strings.Join(e.Policies, ", "), msg)
	}
	return msg
}
