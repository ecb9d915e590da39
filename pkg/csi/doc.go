// Package csi is kvinject's CSI node plugin: the Identity and Node services
// (identityserver.go, nodeserver.go), self-registration with the kubelet
// (registration.go), the atomic file writer (writer.go), the tmpfs mounter seam
// (mounter.go), the Key Vault fetcher (fetcher.go), SecretProviderClass objects and pod
// events through a small API server client (spc.go, events.go, kubeclient.go), the
// tenancy check (policy.go), the rotation schedule (rotation.go), metrics (metrics.go),
// the health probes (health.go) and the wiring of the csi-node binary (options.go,
// plugin.go). publish.go holds NodePublishVolume's steps in order.
//
// NodePublishVolume serves a secrets-store inline volume: it checks that the target is
// the kubelet's path for the requesting pod, reads the Azure provider's parameters from
// the volume (or the SecretProviderClass it names), fetches the objects from Key Vault
// with that pod's identity only, and writes them atomically into a tmpfs at the target.
// Tokens, client secrets and object contents never reach a log line, an error, an
// event or a metric label.
package csi
