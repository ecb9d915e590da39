// Package policy is kvinject's tenancy policy: which namespaces may use which vaults,
// tenants and identities. Cluster admins write it as KeyVaultAccessPolicy objects
// (api/v1alpha1, whose spec is Spec); both programs compile the objects they read
// into a Set and ask it the same question with the same code, so the webhook's denial
// and the node plugin's FailedMount say the same words.
//
// The rules:
//   - A policy selects namespaces by label selector. A namespace no policy selects is
//     not governed: everything is allowed, as before policies existed.
//   - Several policies that select a namespace add their allowances together: a value
//     is allowed when any of them allows it.
//   - Enforce policies refuse what none of them allows. Audit policies never refuse;
//     what the namespace's Enforce and Audit policies together would refuse is
//     reported (an admission warning, a metric, an event) instead.
//   - A list left empty allows nothing; "*" allows anything, and a vault or pod
//     identity pattern ending in "*" allows every name with that prefix.
//   - An Enforce policy may pin the identity: its namespaces use that identity and no
//     other. Two Enforce policies pinning different identities for one namespace
//     refuse everything there until they agree.
//   - A policy that is invalid refuses everything in the namespaces it selects (every
//     namespace when its selector itself is invalid), and a Set that could not be read
//     refuses everything: a policy that cannot be read never allows.
//
// This package imports no Kubernetes API types (the node plugin's memory budget: see
// LabelSelector); it is pure and safe for concurrent use.
package policy
