package v1alpha1

import (
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// GroupVersion is kvinject.io/v1alpha1.
var GroupVersion = schema.GroupVersion{Group: "kvinject.io", Version: "v1alpha1"}

// Resource is the plural resource name of KeyVaultAccessPolicy.
const Resource = "keyvaultaccesspolicies"

// AddToScheme registers the API's types.
func AddToScheme(s *runtime.Scheme) error {
	s.AddKnownTypes(GroupVersion, &KeyVaultAccessPolicy{}, &KeyVaultAccessPolicyList{})
	metav1AddToGroupVersion(s)
	return nil
}
