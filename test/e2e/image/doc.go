// Package image builds container images without a registry: OCI image-layout tar
// archives (one uncompressed layer, a config, a manifest and an index.json whose
// manifest carries the org.opencontainers.image.ref.name annotation) that
// `ctr -n k8s.io images import` loads into containerd's CRI namespace.
package image
