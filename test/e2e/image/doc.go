// Package image builds the end-to-end cluster's images without a registry: the
// programs' release images exactly as make images builds them (internal/images), and
// two test images (pause, a busybox shell), all written as OCI archives that
// `ctr -n k8s.io images import` loads into containerd's CRI namespace.
package image
