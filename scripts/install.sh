#!/usr/bin/env bash
# Installs everything the reconciler, its lab and its tests need on a fresh Debian machine
# (run as root): the Debian packages, then the project with its `test` extra into a virtual
# environment <checkout>/.venv made from Debian's own /usr/bin/python3, and a `reconciler`
# link in /usr/local/bin.
#
# Why a venv: Debian's python3 refuses `pip install` into the system (PEP 668,
# externally-managed-environment). Why in the checkout: the install is editable, so the venv
# belongs to this checkout (two checkouts never share one env pointing at the other's code);
# `rm -rf .venv` resets it. Run the tests with `.venv/bin/python -m pytest ...` (README).
#
# Idempotent: a second run installs nothing new (packages present, venv stamp unchanged).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd -P)
VENV="$ROOT/.venv"
PYTHON=/usr/bin/python3     # Debian's; the one python3-venv belongs to (not whatever is first on PATH)

APT_PACKAGES=(
  iproute2 iputils-ping procps psmisc ethtool netcat-openbsd util-linux
  openssh-server openssh-client
  nftables
  openvswitch-switch openvswitch-common
  frr
  git gnupg
  postgresql
  python3 python3-venv
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

# The venv is (re)made when it is not one of Debian's python or its python no longer runs
# (Debian upgraded it, the checkout moved).
if ! grep -qx "home = $(dirname "$PYTHON")" "$VENV/pyvenv.cfg" 2>/dev/null || ! "$VENV/bin/python" -c '' 2>/dev/null; then
  "$PYTHON" -m venv --clear "$VENV"
  printf '*\n' > "$VENV/.gitignore"     # keep it out of `git status` (as venv itself does from 3.13)
fi

# pip runs only when what it would install changed: the project's metadata and dependencies
# (not, say, the ruff settings in the same file), its packaging config, the interpreter, the path.
stamp="$VENV/.netintent-installed"
want="$("$VENV/bin/python" -c '
import hashlib, json, sys, tomllib
p = tomllib.load(open("pyproject.toml", "rb"))
what = [p.get("build-system"), p["project"], p.get("tool", {}).get("setuptools"), sys.version]
print(hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest())') $ROOT"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ] || [ ! -x "$VENV/bin/reconciler" ]; then
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check -e '.[test]'
  printf '%s' "$want" > "$stamp"
fi

ln -sfn "$VENV/bin/reconciler" /usr/local/bin/reconciler
found=$(command -v reconciler || true)
if [ "$(readlink -f "$found")" != "$(readlink -f "$VENV/bin/reconciler")" ]; then
  echo "note: \`reconciler\` on your PATH is $found; this install is /usr/local/bin/reconciler" >&2
fi
