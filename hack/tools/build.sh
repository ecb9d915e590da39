#!/usr/bin/env bash
# build.sh builds (or reuses) the developer tools pinned in this directory's go.mod into
# a cache folder keyed by that go.mod and go.sum, and prints the folder on stdout.
#
#   KVINJECT_CACHE   cache root (default: <repo>/.cache)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
cache="${KVINJECT_CACHE:-$repo/.cache}"
sum="$(cat "$here/go.mod" "$here/go.sum" "$here/build.sh" | sha256sum | cut -c1-12)"
out="$cache/bin/devtools_${sum}"

if [[ -x "$out/staticcheck" && -x "$out/controller-gen" ]]; then
  echo "$out"
  exit 0
fi
echo "[devtools] building staticcheck and controller-gen (about two minutes cold)" >&2
rm -rf "$out.tmp"
mkdir -p "$out.tmp"
(cd "$here" && CGO_ENABLED=0 go build -trimpath -o "$out.tmp/" honnef.co/go/tools/cmd/staticcheck sigs.k8s.io/controller-tools/cmd/controller-gen)
rm -rf "$out"
mv "$out.tmp" "$out"
echo "$out"
