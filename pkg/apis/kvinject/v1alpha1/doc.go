// Package v1alpha1 is the kvinject.io/v1alpha1 API: KeyVaultAccessPolicy, the
// cluster-scoped tenancy policy that cluster admins own. Its spec is policy.Spec; both
// programs evaluate it with package policy.
// +kubebuilder:object:generate=true
// +groupName=kvinject.io
package v1alpha1
