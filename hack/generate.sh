#!/usr/bin/env bash
# generate.sh writes what controller-gen derives from the Go API types: the deepcopy
# functions (pkg/policy, pkg/apis) and the KeyVaultAccessPolicy CRD the chart installs
# (charts/kvinject/files/). With -check it changes nothing and fails when those files
# are not what the types generate.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
bin="$(hack/tools/build.sh)"
generated=(pkg/policy/zz_generated.deepcopy.go pkg/apis/kvinject/v1alpha1/zz_generated.deepcopy.go
  charts/kvinject/files/kvinject.io_keyvaultaccesspolicies.yaml)

generate() {
  "$bin/controller-gen" object paths=./pkg/policy/... paths=./pkg/apis/...
  "$bin/controller-gen" crd:crdVersions=v1 paths=./pkg/apis/... output:crd:artifacts:config=charts/kvinject/files
}

if [[ "${1:-}" != "-check" ]]; then
  generate
  exit 0
fi
saved="$(mktemp -d)"
trap 'for f in "${generated[@]}"; do [[ -f "$saved/$f" ]] && cp "$saved/$f" "$f"; done; rm -rf "$saved"' EXIT
for f in "${generated[@]}"; do mkdir -p "$saved/$(dirname "$f")"; cp "$f" "$saved/$f"; done
generate
stale=0
for f in "${generated[@]}"; do
  if ! cmp -s "$f" "$saved/$f"; then echo "$f is not what controller-gen generates: run make generate" >&2; stale=1; fi
done
exit "$stale"
