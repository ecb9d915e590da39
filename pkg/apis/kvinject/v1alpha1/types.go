package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/kvinject/kvinject/pkg/policy"
)

// ConditionValid is the status condition that says whether a policy is valid. An
// invalid policy refuses everything in the namespaces it selects until it is fixed.
const ConditionValid = "Valid"

// Reasons of ConditionValid.
const (
	ReasonValid   = "Valid"
	ReasonInvalid = "Invalid"
)

// KeyVaultAccessPolicy says which namespaces may use which Key Vaults, tenants and
// identities. Cluster admins own it; app teams should not be able to change it, nor
// the labels of their namespaces.
// +kubebuilder:object:root=true
// +kubebuilder:resource:scope=Cluster,shortName=kvap,categories=kvinject
// +kubebuilder:subresource:status
// +kubebuilder:printcolumn:name="Mode",type=string,JSONPath=`.spec.mode`
// +kubebuilder:printcolumn:name="Valid",type=string,JSONPath=`.status.conditions[?(@.type=="Valid")].status`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type KeyVaultAccessPolicy struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Spec selects namespaces and says what they may use.
	Spec policy.Spec `json:"spec"`
	// Status says whether the spec is valid.
	// +optional
	Status KeyVaultAccessPolicyStatus `json:"status,omitempty"`
}

// KeyVaultAccessPolicyStatus is written by the kvinject webhook.
type KeyVaultAccessPolicyStatus struct {
	// Conditions: Valid.
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// KeyVaultAccessPolicyList is a list of KeyVaultAccessPolicy.
// +kubebuilder:object:root=true
type KeyVaultAccessPolicyList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []KeyVaultAccessPolicy `json:"items"`
}

func metav1AddToGroupVersion(s *runtime.Scheme) { metav1.AddToGroupVersion(s, GroupVersion) }
