// Package contract is what kvinject's two programs agree on, in one place and with no
// Azure SDK in it: the pod annotations the webhook reads and writes, the injected
// volume's name, the CSI driver name and its one validator, the volume attributes (the
// Azure provider's SecretProviderClass parameters), the Key Vault object grammar with
// its validation and its "objects" encoding, the Azure cloud names, the names of vaults,
// tenants, client IDs and pod identity selectors, and the keys the kubelet puts in a
// CSI volume context.
//
// The webhook (pkg/mutate) writes a volume with these names; the node plugin (pkg/csi)
// reads it back with the same names and the same parser, so an inline volume written by
// the webhook, one written by hand and a SecretProviderClass are held to one grammar.
// Everything here is pure: no I/O, no globals that change, safe for concurrent use.
package contract
