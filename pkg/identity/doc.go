// Package identity obtains Entra ID tokens for one pod's own identity, never the node's.
//
// A volume selects one of three modes (Select): AAD Pod Identity through NMI, workload
// identity by exchanging the kubelet's service-account token with a client assertion,
// or a service principal whose client ID and secret come from nodePublishSecretRef.
// There is deliberately no managed identity or IMDS mode: a node or VM identity is
// usable by every pod on the node, so a request for it is refused.
package identity
