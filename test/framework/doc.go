// Package framework starts the real control plane the integration tests run against:
// etcd and kube-apiserver through controller-runtime's envtest, plus
// kube-controller-manager, all built from their Go modules by test/tools/build.sh and
// found through KUBEBUILDER_ASSETS. It also reads the product's own webhook
// registration from deploy/webhook and points it at a webhook under test.
package framework
