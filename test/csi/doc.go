// Package csi holds the node plugin's end-to-end tests: csi-test sanity against the
// csi-node binary over its socket, integration tests of the plugin against the Azure
// emulator (test/emulator) with real tmpfs mounts (they need root), a
// SecretProviderClass read from a real API server (envtest; skipped unless
// KUBEBUILDER_ASSETS is set), the no-secret-in-logs test, and benchmarks.
package csi
