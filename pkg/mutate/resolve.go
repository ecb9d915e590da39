package mutate

import (
	"context"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/kvinject/kvinject/pkg/contract"
	"github.com/kvinject/kvinject/pkg/policy"
)

// settings are the pod's resolved vault, tenant and identity.
type settings struct {
	vault    string
	tenant   string
	selector string // AAD Pod Identity selector; empty for workload identity
	clientID string // workload identity client ID; empty for pod identity
	warnings []string
	// audit is what the namespace's Audit policies report; nil for nothing.
	audit *policy.Error
}

// resolve finds each setting on the pod first, then on its namespace, then in the
// cluster configuration. The identity is, in order: the identity a KeyVaultAccessPolicy
// pins for the namespace (whatever the pod says), the pod's kvinject.io/identity or
// kvinject.io/client-id (not both), the namespace's kvinject.io/identity, the service
// account's azure.workload.identity/client-id, and the cluster configuration's
// identity, which never overrides a service account's own client ID. Then the
// namespace's policies are asked. The namespace is read when the pod leaves something
// unset or policies exist; the service account only when the identity is still open.
func (m *Mutator) resolve(ctx context.Context, pod *corev1.Pod, namespace string) (*settings, error) {
	ann := pod.Annotations
	s := &settings{}
	_, hasSelector := ann[contract.AnnotationIdentity]
	_, hasClientID := ann[contract.AnnotationClientID]
	if hasSelector && hasClientID {
		return nil, deny(contract.AnnotationIdentity, "the pod sets both %s (AAD Pod Identity) and %s (workload identity); keep the one the pod uses", contract.AnnotationIdentity, contract.AnnotationClientID)
	}

	policies := m.policies.Policies()
	var ns Metadata
	needNamespace := ann[contract.AnnotationVault] == "" || ann[contract.AnnotationTenantID] == "" || (!hasSelector && !hasClientID) || !policies.Empty()
	if needNamespace {
		var err error
		if ns, err = m.lookup.Namespace(ctx, namespace); err != nil {
			return nil, fmt.Errorf("read namespace %q: %w", namespace, err)
		}
	}
	nsAnn := ns.Annotations
	rules := policies.Namespace(namespace, ns.Labels)

	pick := func(key, cluster, what, clusterKey string) (string, error) {
		if v, ok := ann[key]; ok {
			return v, nil
		}
		if v := nsAnn[key]; v != "" {
			s.warnings = append(s.warnings, fmt.Sprintf("%s: using %q from namespace %q", key, v, namespace))
			return v, nil
		}
		if cluster != "" {
			s.warnings = append(s.warnings, fmt.Sprintf("%s: using %q from the cluster configuration", key, cluster))
			return cluster, nil
		}
		return "", deny(key, "no %s: annotate the pod or namespace %q with %s, or set %s in the cluster configuration", what, namespace, key, clusterKey)
	}

	var err error
	if s.vault, err = pick(contract.AnnotationVault, m.config.Vault, "Key Vault", "vault"); err != nil {
		return nil, err
	}
	if err := contract.ValidateVaultName(s.vault); err != nil {
		return nil, deny(contract.AnnotationVault, "%v", err)
	}
	if s.tenant, err = pick(contract.AnnotationTenantID, m.config.TenantID, "tenant", "tenantId"); err != nil {
		return nil, err
	}
	if err := contract.ValidateTenantID(s.tenant); err != nil {
		return nil, deny(contract.AnnotationTenantID, "%v", err)
	}
	if err := m.resolveIdentity(ctx, pod, namespace, nsAnn, rules, s); err != nil {
		return nil, err
	}

	res := rules.Check(policy.Request{Vault: s.vault, Tenant: s.tenant,
		Identity: policy.Identity{PodIdentity: s.selector, WorkloadIdentityClientID: s.clientID}})
	if res.Denied != nil {
		return nil, policyDenial(res.Denied, s.selector != "")
	}
	if res.Audited != nil {
		s.audit = res.Audited
		s.warnings = append(s.warnings, res.Audited.Error())
	}
	return s, nil
}

// resolveIdentity sets s.selector or s.clientID.
func (m *Mutator) resolveIdentity(ctx context.Context, pod *corev1.Pod, namespace string, nsAnn map[string]string, rules *policy.Namespace, s *settings) error {
	ann := pod.Annotations
	podSelector, hasSelector := ann[contract.AnnotationIdentity]
	podClientID, hasClientID := ann[contract.AnnotationClientID]
	if pin, by, ok := rules.Pin(); ok {
		s.selector, s.clientID = pin.PodIdentity, pin.WorkloadIdentityClientID
		var asked string
		switch {
		case hasSelector && podSelector != pin.PodIdentity:
			asked = fmt.Sprintf("%s %q", contract.AnnotationIdentity, podSelector)
		case hasClientID && (pin.WorkloadIdentityClientID == "" || !strings.EqualFold(podClientID, pin.WorkloadIdentityClientID)):
			asked = fmt.Sprintf("%s %q", contract.AnnotationClientID, podClientID)
		}
		if asked != "" {
			s.warnings = append(s.warnings, fmt.Sprintf("the pod's %s is not used: KeyVaultAccessPolicy %s pins %s for namespace %q", asked, by, pin, namespace))
		} else if !hasSelector && !hasClientID {
			s.warnings = append(s.warnings, fmt.Sprintf("using %s, pinned for namespace %q by KeyVaultAccessPolicy %s", pin, namespace, by))
		}
		return nil
	}

	switch {
	case hasSelector:
		s.selector = podSelector
	case hasClientID:
		s.clientID = podClientID
	case nsAnn[contract.AnnotationIdentity] != "":
		s.selector = nsAnn[contract.AnnotationIdentity]
		s.warnings = append(s.warnings, fmt.Sprintf("%s: using %q from namespace %q", contract.AnnotationIdentity, s.selector, namespace))
	default:
		sa := pod.Spec.ServiceAccountName
		if sa == "" {
			sa = "default"
		}
		saAnn, err := m.lookup.ServiceAccountAnnotations(ctx, namespace, sa)
		if err != nil {
			return fmt.Errorf("read service account %q in namespace %q: %w", sa, namespace, err)
		}
		if s.clientID = saAnn[contract.AnnotationWorkloadClientID]; s.clientID != "" {
			s.warnings = append(s.warnings, fmt.Sprintf("%s: using %q from service account %q", contract.AnnotationClientID, s.clientID, sa))
			if err := contract.ValidateClientID(s.clientID); err != nil {
				return deny("", "service account %q: %s: %v", sa, contract.AnnotationWorkloadClientID, err)
			}
			return nil
		}
		if m.config.Identity == "" {
			return deny("", "no identity: annotate the pod with %s: <AAD Pod Identity selector> or %s: <workload identity client ID>, or annotate its service account %q with %s: <client ID>",
				contract.AnnotationIdentity, contract.AnnotationClientID, sa, contract.AnnotationWorkloadClientID)
		}
		s.selector = m.config.Identity
		s.warnings = append(s.warnings, fmt.Sprintf("%s: using %q from the cluster configuration", contract.AnnotationIdentity, s.selector))
	}
	if s.selector != "" || hasSelector {
		if err := contract.ValidateSelector(s.selector); err != nil {
			return deny(contract.AnnotationIdentity, "%v", err)
		}
	}
	if s.clientID != "" || hasClientID {
		if err := contract.ValidateClientID(s.clientID); err != nil {
			return deny(contract.AnnotationClientID, "%v", err)
		}
	}
	return nil
}

// policyDenial turns a policy refusal into a Denial that names, for each rule broken,
// the annotation that carries the value.
func policyDenial(e *policy.Error, podIdentity bool) *Denial {
	d := &Denial{Policy: e}
	for i, v := range e.Violations {
		annotation := annotationOf(v.Field, podIdentity)
		if i == 0 {
			d.Annotation, d.Rule = annotation, v.Message
			continue
		}
		d.Rule += "; "
		if annotation != "" {
			d.Rule += annotation + ": "
		}
		d.Rule += v.Message
	}
	return d
}

// annotationOf is the annotation that carries the value a policy field governs.
func annotationOf(field string, podIdentity bool) string {
	switch field {
	case policy.FieldVaults:
		return contract.AnnotationVault
	case policy.FieldTenants:
		return contract.AnnotationTenantID
	case policy.FieldPodIdentities:
		return contract.AnnotationIdentity
	case policy.FieldClientIDs:
		return contract.AnnotationClientID
	case policy.FieldPinnedIdentity:
		if podIdentity {
			return contract.AnnotationIdentity
		}
		return contract.AnnotationClientID
	}
	return ""
}
