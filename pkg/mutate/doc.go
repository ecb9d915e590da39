// Package mutate decides what an annotated pod becomes at admission.
//
// A pod that carries the kvinject.io/secrets annotation gets, through Mutate, the
// identity label (AAD Pod Identity) or a workload identity client ID, a secrets-store CSI
// inline volume whose attributes are the Azure provider's SecretProviderClass parameters,
// and a read-only mount in every selected container. Everything that can be wrong with
// the annotations is a *Denial that names the annotation, the entry and the rule.
//
// Mutate is pure apart from the Lookup it is given (namespace and service-account
// annotations), never modifies its input, and is idempotent: a pod it has already
// injected comes back unchanged, so reinvocation and dry-run are safe.
package mutate
