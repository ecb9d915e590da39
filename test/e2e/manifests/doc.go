// Package manifests holds the Kubernetes objects the end-to-end cluster installs
// (install/) and the workloads its tests and the demo apply (the tutorial's pods).
package manifests

import "embed"

// FS holds install/*.yaml and the workload files.
//
//go:embed install/*.yaml *.yaml
var FS embed.FS
