package mutate

import (
	corev1 "k8s.io/api/core/v1"

	"github.com/kvinject/kvinject/pkg/contract"

	"context"
	"fmt"
)

// settings are the pod's resolved vault, tenant and identity.
type settings struct {
	vault    string
	tenant   string
	selector string // AAD Pod Identity selector; empty for workload identity
	clientID string // workload identity client ID; empty for pod identity
	warnings []string
}

// resolve finds each setting on the pod first, then on its namespace, then in the
// cluster configuration. The identity is, in order: the pod's kvinject.io/identity or
// kvinject.io/client-id (not both), the namespace's kvinject.io/identity, the cluster
// configuration's identity, and the service account's azure.workload.identity/client-id.
// The namespace and the service account are read only when the pod leaves something
// unset.
func (m *Mutator) resolve(ctx context.Context, pod *corev1.Pod, namespace string) (*settings, error) {
	ann := pod.Annotations
	s := &settings{}
	podSelector, hasSelector := ann[contract.AnnotationIdentity]
	podClientID, hasClientID := ann[contract.AnnotationClientID]
	if hasSelector && hasClientID {
		return nil, deny(contract.AnnotationIdentity, "the pod sets both %s (AAD Pod Identity) and %s (workload identity); keep the one the pod uses", contract.AnnotationIdentity, contract.AnnotationClientID)
	}

	var nsAnn map[string]string
	needNamespace := ann[contract.AnnotationVault] == "" || ann[contract.AnnotationTenantID] == "" || (!hasSelector && !hasClientID)
	if needNamespace {
		var err error
		if nsAnn, err = m.lookup.NamespaceAnnotations(ctx, namespace); err != nil {
			return nil, fmt.Errorf("read namespace %q: %w", namespace, err)
		}
	}

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

	switch {
	case hasSelector:
		s.selector = podSelector
	case hasClientID:
		s.clientID = podClientID
	case nsAnn[contract.AnnotationIdentity] != "" || m.config.Identity != "":
		s.selector, _ = pick(contract.AnnotationIdentity, m.config.Identity, "identity", "identity")
	default:
		sa := pod.Spec.ServiceAccountName
		if sa == "" {
			sa = "default"
		}
		saAnn, err := m.lookup.ServiceAccountAnnotations(ctx, namespace, sa)
		if err != nil {
			return nil, fmt.Errorf("read service account %q in namespace %q: %w", sa, namespace, err)
		}
		s.clientID = saAnn[contract.AnnotationWorkloadClientID]
		if s.clientID == "" {
			return nil, deny("", "no identity: annotate the pod with %s: <AAD Pod Identity selector> or %s: <workload identity client ID>, or annotate its service account %q with %s: <client ID>",
				contract.AnnotationIdentity, contract.AnnotationClientID, sa, contract.AnnotationWorkloadClientID)
		}
		s.warnings = append(s.warnings, fmt.Sprintf("%s: using %q from service account %q", contract.AnnotationClientID, s.clientID, sa))
		if err := contract.ValidateClientID(s.clientID); err != nil {
			return nil, deny("", "service account %q: %s: %v", sa, contract.AnnotationWorkloadClientID, err)
		}
		return s, nil
	}
	if s.selector != "" {
		if err := contract.ValidateSelector(s.selector); err != nil {
			return nil, deny(contract.AnnotationIdentity, "%v", err)
		}
	}
	if s.clientID != "" || hasClientID {
		if err := contract.ValidateClientID(s.clientID); err != nil {
			return nil, deny(contract.AnnotationClientID, "%v", err)
		}
	}
	return s, nil
}
