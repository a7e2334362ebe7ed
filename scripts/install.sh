#!/usr/bin/env bash
# Installs everything the reconciler, its lab and its tests need on a fresh Debian machine
# (run as root). Idempotent: a second run installs nothing new.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
  iproute2 iputils-ping procps psmisc ethtool netcat-openbsd util-linux
  openssh-server openssh-client
  nftables
  openvswitch-switch openvswitch-common
  frr
  git gnupg
  postgresql
  python3-venv
)

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # policy-rc.d: packages must not try to start their system services (the lab starts its own)
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  rm -f /usr/sbin/policy-rc.d
fi

python3 -m pip install -q --disable-pip-version-check -e '.[test]'
