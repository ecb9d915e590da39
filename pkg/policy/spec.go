package policy

import (
	"errors"
	"fmt"
	"strings"

	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"

	"github.com/kvinject/kvinject/pkg/contract"
)

// Mode says what a policy does with what it does not allow.
type Mode string

// Modes of a policy.
const (
	// Enforce refuses: the webhook denies the pod and the node plugin the mount.
	Enforce Mode = "Enforce"
	// Audit allows, and reports what Enforce would have refused.
	Audit Mode = "Audit"
)

// Any, alone in a list, allows every value. A vault or pod identity pattern ending in
// Any allows every name that starts with what comes before it.
const Any = "*"

// Field paths of Spec, as they appear in messages.
const (
	FieldNamespaceSelector = "spec.namespaceSelector"
	FieldMode              = "spec.mode"
	FieldVaults            = "spec.vaults"
	FieldTenants           = "spec.tenants"
	FieldPodIdentities     = "spec.podIdentities"
	FieldClientIDs         = "spec.workloadIdentityClientIDs"
	FieldServicePrincipal  = "spec.allowServicePrincipal"
	FieldPinnedIdentity    = "spec.pinnedIdentity"
)

// MaxListItems bounds each list of a Spec (the CRD's maxItems).
const MaxListItems = 256

// Spec is what a KeyVaultAccessPolicy says: the namespaces it selects and what they
// may use. The JSON names are the CRD's.
// +kubebuilder:object:generate=true
type Spec struct {
	// NamespaceSelector selects the namespaces the policy governs; an empty selector
	// selects every namespace.
	// +required
	NamespaceSelector LabelSelector `json:"namespaceSelector"`
	// Mode is Enforce (the default) or Audit.
	// +kubebuilder:validation:Enum=Enforce;Audit
	// +kubebuilder:default=Enforce
	// +optional
	Mode Mode `json:"mode,omitempty"`
	// Vaults are the Key Vault names the namespaces may read: exact names, or prefixes
	// ending in "*" ("team-a-*"); "*" allows any vault. Names compare case-insensitively,
	// like the vaults' DNS names.
	// +kubebuilder:validation:MaxItems=256
	// +kubebuilder:validation:items:MaxLength=253
	// +optional
	Vaults []string `json:"vaults,omitempty"`
	// Tenants are the Entra ID tenants (GUIDs or domain names) the namespaces may use;
	// "*" allows any tenant.
	// +kubebuilder:validation:MaxItems=256
	// +kubebuilder:validation:items:MaxLength=253
	// +optional
	Tenants []string `json:"tenants,omitempty"`
	// PodIdentities are the AAD Pod Identity selectors (the aadpodidbinding label)
	// the namespaces' pods may carry: exact, or prefixes ending in "*".
	// +kubebuilder:validation:MaxItems=256
	// +kubebuilder:validation:items:MaxLength=253
	// +optional
	PodIdentities []string `json:"podIdentities,omitempty"`
	// WorkloadIdentityClientIDs are the workload identity client IDs the namespaces
	// may use; "*" allows any.
	// +kubebuilder:validation:MaxItems=256
	// +kubebuilder:validation:items:MaxLength=253
	// +optional
	WorkloadIdentityClientIDs []string `json:"workloadIdentityClientIDs,omitempty"`
	// AllowServicePrincipal lets volumes authenticate as a service principal from a
	// nodePublishSecretRef Secret.
	// +optional
	AllowServicePrincipal bool `json:"allowServicePrincipal,omitempty"`
	// PinnedIdentity, set, is the one identity the namespaces use: the webhook gives it
	// to every pod whatever the pod's annotations say, and the node plugin mounts with
	// no other. It needs no entry in the lists above.
	// +optional
	PinnedIdentity *Identity `json:"pinnedIdentity,omitempty"`
}

// Identity is one identity: an AAD Pod Identity selector or a workload identity client
// ID (exactly one is set).
// +kubebuilder:object:generate=true
// +kubebuilder:validation:XValidation:rule="has(self.podIdentity) != has(self.workloadIdentityClientID)",message="set exactly one of podIdentity and workloadIdentityClientID"
type Identity struct {
	// PodIdentity is an AAD Pod Identity selector (the aadpodidbinding label).
	// +kubebuilder:validation:MaxLength=63
	// +optional
	PodIdentity string `json:"podIdentity,omitempty"`
	// WorkloadIdentityClientID is a workload identity's client ID.
	// +kubebuilder:validation:MaxLength=36
	// +optional
	WorkloadIdentityClientID string `json:"workloadIdentityClientID,omitempty"`
}

// String names the identity as messages do.
func (i Identity) String() string {
	if i.PodIdentity != "" {
		return fmt.Sprintf("AAD Pod Identity %q", i.PodIdentity)
	}
	return fmt.Sprintf("workload identity client ID %q", i.WorkloadIdentityClientID)
}

// equal compares two identities as Key Vault would see them (client IDs are GUIDs,
// compared case-insensitively; selectors are label values, compared exactly).
func (i Identity) equal(o Identity) bool {
	return i.PodIdentity == o.PodIdentity && strings.EqualFold(i.WorkloadIdentityClientID, o.WorkloadIdentityClientID)
}

// LabelSelector has the JSON shape of metav1.LabelSelector. The node plugin cannot
// afford the Kubernetes API types: importing k8s.io/apimachinery/pkg/apis/meta/v1
// raised its resident memory at 100 volumes from 24.7 to 27.2 MiB (measured with
// BenchmarkResidentMemory100Volumes), past its 25 MiB budget, while
// k8s.io/apimachinery/pkg/labels, which does the matching here, costs nothing
// measurable.
// +kubebuilder:object:generate=true
// +structType=atomic
type LabelSelector struct {
	// MatchLabels: every label must be present with this value.
	// +optional
	MatchLabels map[string]string `json:"matchLabels,omitempty"`
	// MatchExpressions: every requirement must hold.
	// +listType=atomic
	// +optional
	MatchExpressions []LabelSelectorRequirement `json:"matchExpressions,omitempty"`
}

// LabelSelectorRequirement has the JSON shape of metav1.LabelSelectorRequirement.
// +kubebuilder:object:generate=true
type LabelSelectorRequirement struct {
	// Key is the label key.
	Key string `json:"key"`
	// Operator is In, NotIn, Exists or DoesNotExist.
	// +kubebuilder:validation:Enum=In;NotIn;Exists;DoesNotExist
	Operator string `json:"operator"`
	// Values are the values of In and NotIn.
	// +listType=atomic
	// +optional
	Values []string `json:"values,omitempty"`
}

// selector converts s the way metav1.LabelSelectorAsSelector does: an empty selector
// selects everything.
func (s LabelSelector) selector() (labels.Selector, error) {
	sel := labels.NewSelector()
	for k, v := range s.MatchLabels {
		r, err := labels.NewRequirement(k, selection.Equals, []string{v})
		if err != nil {
			return nil, fmt.Errorf("matchLabels: %w", err)
		}
		sel = sel.Add(*r)
	}
	for i, e := range s.MatchExpressions {
		var op selection.Operator
		switch e.Operator {
		case "In":
			op = selection.In
		case "NotIn":
			op = selection.NotIn
		case "Exists":
			op = selection.Exists
		case "DoesNotExist":
			op = selection.DoesNotExist
		default:
			return nil, fmt.Errorf("matchExpressions[%d]: operator %q is not In, NotIn, Exists or DoesNotExist", i, e.Operator)
		}
		r, err := labels.NewRequirement(e.Key, op, e.Values)
		if err != nil {
			return nil, fmt.Errorf("matchExpressions[%d]: %w", i, err)
		}
		sel = sel.Add(*r)
	}
	return sel, nil
}

// Validate reports every problem of s at once, each naming its field; nil when s is
// valid.
func (s Spec) Validate() error {
	var errs []error
	add := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", field, fmt.Sprintf(format, args...)))
	}
	if _, err := s.NamespaceSelector.selector(); err != nil {
		add(FieldNamespaceSelector, "%v", err)
	}
	if s.Mode != "" && s.Mode != Enforce && s.Mode != Audit {
		add(FieldMode, "%q is not Enforce or Audit", s.Mode)
	}
	list := func(field string, values []string, check func(string) error) {
		if len(values) > MaxListItems {
			add(field, "%d items; at most %d are allowed", len(values), MaxListItems)
			return
		}
		for i, v := range values {
			if v == Any {
				continue
			}
			if err := check(v); err != nil {
				add(fmt.Sprintf("%s[%d]", field, i), "%v", err)
			}
		}
	}
	list(FieldVaults, s.Vaults, validateVaultPattern)
	list(FieldTenants, s.Tenants, contract.ValidateTenantID)
	list(FieldPodIdentities, s.PodIdentities, validateSelectorPattern)
	list(FieldClientIDs, s.WorkloadIdentityClientIDs, contract.ValidateClientID)
	if p := s.PinnedIdentity; p != nil {
		switch {
		case (p.PodIdentity == "") == (p.WorkloadIdentityClientID == ""):
			add(FieldPinnedIdentity, "set exactly one of podIdentity and workloadIdentityClientID")
		case p.PodIdentity != "":
			if err := contract.ValidateSelector(p.PodIdentity); err != nil {
				add(FieldPinnedIdentity+".podIdentity", "%v", err)
			}
		default:
			if err := contract.ValidateClientID(p.WorkloadIdentityClientID); err != nil {
				add(FieldPinnedIdentity+".workloadIdentityClientID", "%v", err)
			}
		}
	}
	return errors.Join(errs...)
}

// validateVaultPattern accepts a vault name, or the start of one followed by "*".
func validateVaultPattern(p string) error {
	prefix, wild := strings.CutSuffix(p, Any)
	if !wild {
		return contract.ValidateVaultName(p)
	}
	if strings.Contains(prefix, Any) {
		return fmt.Errorf("%q: only a trailing \"*\" is allowed", p)
	}
	bad := func() error {
		return fmt.Errorf("%q is not a vault name pattern: before the \"*\" comes the start of a Key Vault name (a letter, then letters, digits and single '-', at most 23 characters)", p)
	}
	if prefix == "" || len(prefix) > 23 || !isLetter(prefix[0]) || strings.Contains(prefix, "--") {
		return bad()
	}
	for i := 0; i < len(prefix); i++ {
		if c := prefix[i]; !isLetter(c) && (c < '0' || c > '9') && c != '-' {
			return bad()
		}
	}
	return nil
}

func isLetter(c byte) bool { return c|0x20 >= 'a' && c|0x20 <= 'z' }

// validateSelectorPattern accepts a pod identity selector, or the start of one
// followed by "*".
func validateSelectorPattern(p string) error {
	prefix, wild := strings.CutSuffix(p, Any)
	if !wild {
		return contract.ValidateSelector(p)
	}
	if strings.Contains(prefix, Any) {
		return fmt.Errorf("%q: only a trailing \"*\" is allowed", p)
	}
	// Any valid selector starting with the prefix will do: the prefix may end in '-'.
	if err := contract.ValidateSelector(prefix + "x"); err != nil {
		return fmt.Errorf("%q is not a pod identity pattern: before the \"*\" comes the start of a selector (letters, digits, '-', '_' and '.', starting with a letter or digit)", p)
	}
	return nil
}
