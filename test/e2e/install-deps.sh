#!/usr/bin/env bash
# install-deps.sh installs the Debian packages the end-to-end cluster needs (container
# runtime, OCI runtime, CNI plugins, a static busybox for the workload image, ip), only
# when one is missing. Idempotent: a machine that has them all runs no apt command.
set -euo pipefail

# package -> a file it installs (how we tell it is present).
declare -A want=(
  [containerd]=/usr/bin/containerd
  [runc]=/usr/sbin/runc
  [containernetworking-plugins]=/usr/lib/cni/bridge
  [busybox-static]=/bin/busybox
  [iproute2]=/usr/sbin/ip
  [mount]=/usr/bin/mount
)

missing=()
for pkg in "${!want[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'ok installed' || [[ ! -e ${want[$pkg]} ]]; then
    missing+=("$pkg")
  fi
done
if (( ${#missing[@]} == 0 )); then
  exit 0
fi

if [[ $(id -u) != 0 ]]; then
  echo "install-deps: need root to install: ${missing[*]}" >&2
  exit 1
fi
echo "[e2e] installing ${missing[*]} (apt-get)" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# --no-install-recommends: containerd recommends nothing we use; keep the host lean.
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# Debian's containerd package enables and starts a system containerd where systemd
# runs; the harness runs its own, under its state directory, so stop the packaged one
# if a service manager started it.
if command -v systemctl >/dev/null && systemctl is-active --quiet containerd 2>/dev/null; then
  systemctl disable --now containerd >/dev/null 2>&1 || true
fi
echo "[e2e] installed: ${missing[*]}" >&2
