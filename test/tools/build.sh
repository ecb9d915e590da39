#!/usr/bin/env bash
# build.sh builds the test binaries (etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler, kubelet, kubectl) from the Go module proxy at the versions pinned in
# this directory's go.mod files, into a cache folder keyed by those versions. A folder
# that is already complete is reused as is. Prints the folder on stdout.
#
#   KVINJECT_CACHE   cache root (default: <repo>/.cache)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
cache="${KVINJECT_CACHE:-$repo/.cache}"

k8s_version="$(cd "$here" && go list -m -f '{{.Version}}' k8s.io/kubernetes)"
etcd_version="$(cd "$here/etcd" && go list -m -f '{{.Version}}' go.etcd.io/etcd/server/v3)"
sum="$(cat "$here/go.mod" "$here/go.sum" "$here/etcd/go.mod" "$here/etcd/go.sum" "$here/build.sh" | sha256sum | cut -c1-12)"
out="$cache/bin/k8s-${k8s_version}_etcd-${etcd_version}_${sum}"

bins=(etcd kube-apiserver kube-controller-manager kube-scheduler kubelet kubectl)
complete=1
for b in "${bins[@]}"; do [[ -x "$out/$b" ]] || complete=0; done
if [[ $complete == 1 ]]; then
  echo "$out"
  exit 0
fi

mkdir -p "$out.tmp"
log() { echo "[tools] $*" >&2; }
start=$SECONDS
# Identical flags on every build keep Go's build cache warm (a changed flag recompiles
# everything: ~12 minutes for Kubernetes on 2 cores).
ldflags="-s -w -X k8s.io/component-base/version.gitVersion=${k8s_version} -X k8s.io/client-go/pkg/version.gitVersion=${k8s_version}"

if [[ ! -x "$out.tmp/etcd" ]]; then
  log "building etcd ${etcd_version} (about 2 minutes cold)"
  (cd "$here/etcd" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$out.tmp/etcd" go.etcd.io/etcd/server/v3)
fi
log "building Kubernetes ${k8s_version}: ${bins[*]:1} (about 12 minutes cold, 30 s warm)"
(cd "$here" && CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$out.tmp/" \
  k8s.io/kubernetes/cmd/kube-apiserver \
  k8s.io/kubernetes/cmd/kube-controller-manager \
  k8s.io/kubernetes/cmd/kube-scheduler \
  k8s.io/kubernetes/cmd/kubelet \
  k8s.io/kubernetes/cmd/kubectl)
rm -rf "$out"
mv "$out.tmp" "$out"
log "tools ready in $((SECONDS - start)) s: $out"
echo "$out"
