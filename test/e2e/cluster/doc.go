// Package cluster runs a real single-node Kubernetes cluster on this machine for the
// end-to-end tests and the demo: etcd, kube-apiserver, kube-controller-manager,
// kube-scheduler and the kubelet (test/tools/build.sh's binaries), containerd + runc +
// the CNI bridge from Debian's packages, and, with Options.Kvinject, the Azure emulator
// and kvinject installed from its chart. It follows the verified recipe in
// ../shared/reference/local-cluster.md.
//
// Everything lives under one state directory; every process is recorded by PID and
// start time in run/state.json, and Down undoes everything Up did to the host (see
// Down), also from another process (make e2e-down) and after a failed Up.
//
// Addresses never leave the host: an extra /32 on lo (NodeIP) and the pod network
// namespaces behind a CNI bridge whose pods have one route, to NodeIP.
package cluster
