// Package install tests the install path: the Helm chart charts/kvinject rendered
// through the Helm SDK (typed, strictly decoded objects and the relations between
// them, golden files, lint, schema), the plain manifests in deploy/ being current,
// and — with KUBEBUILDER_ASSETS — a real `helm install` on a local control plane with
// cert-manager's own controllers issuing and injecting the webhook's certificate.
package install
