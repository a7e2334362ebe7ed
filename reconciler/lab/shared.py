"""Share one running lab between several processes (e.g. parallel pytest sessions).

Contract: `shared_lab(path, ...)` is a context manager yielding a Lab that is up. Under an
exclusive flock (/run/lock/netintent-lab-<name>.lock) it records the caller's pid in
<state dir>/users.json, bringing the lab up if it is not; on exit it removes the pid (and the
pids of dead processes) and takes the lab down when no user is left. A lab that was already
up without a users file (brought up by `reconciler lab up`) is used as is and never taken
down here. `skip_reason(features)` says why a lab cannot run on this machine (None if it can).
"""
from __future__ import annotations

import contextlib
import json
import os
import subprocess
from pathlib import Path
from typing import Iterator

from reconciler.filelock import exclusive
from reconciler.lab.lab import Lab
from reconciler.lab.system import OVS_SCHEMA, alive, missing_tools

# The Debian package of each tool missing_tools() may report (scripts/install.sh installs them all).
DEBIAN_PACKAGE = {
    "ip": "iproute2", "nsenter": "util-linux", "unshare": "util-linux", "ethtool": "ethtool", "sysctl": "procps",
    "/usr/sbin/sshd": "openssh-server", "ssh-keygen": "openssh-client", "ssh": "openssh-client",
    "ovsdb-tool": "openvswitch-common", "ovsdb-server": "openvswitch-switch", "ovs-vswitchd": "openvswitch-switch",
    "ovs-vsctl": "openvswitch-switch", OVS_SCHEMA: "openvswitch-common",
    "/usr/lib/frr/frrinit.sh": "frr", "vtysh": "frr",
}


def skip_reason(features=("base", "ssh", "ovs", "frr")) -> str | None:
    """Why the lab (these features of it) cannot run here, naming what to fix; None if it can.
    Callers skip on it (tests; with CI=true tests/conftest.py turns that skip into a failure)."""
    if os.geteuid() != 0:
        return "the lab needs root (network namespaces, veths, sshd): run the tests as root"
    miss = missing_tools(features)
    if miss:
        packages = sorted({DEBIAN_PACKAGE.get(t, "?") for t in miss})
        return f"the lab needs: {', '.join(miss)} (Debian packages: {' '.join(packages)}; " \
            "bash scripts/install.sh installs them)"
    if not os.path.exists("/proc/self/ns/net"):
        return "no network namespace support in this kernel (/proc/self/ns/net missing)"
    try:   # root without CAP_SYS_ADMIN (an unprivileged container) cannot make the lab's namespaces
        probe = subprocess.run(["unshare", "--net", "true"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"cannot create a network namespace: {e}"
    if probe.returncode != 0:
        return f"cannot create a network namespace: {probe.stderr.strip() or probe.returncode}"
    return None


@contextlib.contextmanager
def _locked(name: str) -> Iterator[None]:
    with exclusive(f"/run/lock/netintent-lab-{name}.lock"):
        yield


def _users(lab: Lab) -> list[int] | None:
    try:
        return [int(p) for p in json.loads((lab.layout.state_dir / "users.json").read_text())]
    except (OSError, ValueError):
        return None


def _save_users(lab: Lab, users: list[int]) -> None:
    (lab.layout.state_dir / "users.json").write_text(json.dumps(sorted(set(users))))


@contextlib.contextmanager
def shared_lab(path: str | Path, name_override: str | None = None,
               inventory_dir: str | Path | None = None, mgmt_subnet: str | None = None
               ) -> Iterator[Lab]:
    lab = Lab.from_file(path, name_override, inventory_dir, mgmt_subnet)
    me = os.getpid()
    external = False
    with _locked(lab.name):
        users = _users(lab)
        if lab.is_up() and users is None:
            external = True
        else:
            if not lab.is_up():
                lab.up()
                users = []
            _save_users(lab, [p for p in (users or []) if alive(p)] + [me])
    try:
        yield lab
    finally:
        if not external:
            with _locked(lab.name):
                left = [p for p in (_users(lab) or []) if p != me and alive(p)]
                if left and lab.is_up():
                    _save_users(lab, left)
                else:
                    lab.down()
