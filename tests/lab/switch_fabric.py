"""A private copy of the reference lab for the switch-driver tests, plus TCP and BGP probes.

Contract: `fabric_lab()` is a context manager that brings labs/app-fabric.clab.yml up under a
unique name (`ni-sw-<hex>`) and a free management /24 (so it runs beside the shared
reference lab), yields the `Lab`, and always takes it down (with `bare_frr=True` the leaves'
FRR starts without BGP). Probes:
- `tcp_listen(lab, node, addr, port, seconds)` starts a bounded TCP server in the node
  (exits after `seconds`); `tcp_ok(lab, node, addr, port)` connects from a node with a 3 s
  timeout and returns True when the server answered.
- `wait_bgp(lab, leaves, timeout)` waits (bounded) until every leaf has an Established peer
  and a route to every other leaf's VTEP.
- `switch_targets(lab)`, `all_targets(repo)`: Targets from the lab's inventory.
"""
from __future__ import annotations

import contextlib
import ipaddress
import json
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import yaml
from minilab import wait_listening

from reconciler.drivers.base import Target
from reconciler.lab import Lab
from reconciler.model import Layer

REPO = Path(__file__).resolve().parents[2]
TOPOLOGY = REPO / "labs" / "app-fabric.clab.yml"
EXAMPLES = REPO / "examples" / "intents"


def _free_subnet() -> str:
    used = subprocess.run(["ip", "-j", "-4", "addr"], capture_output=True, text=True).stdout
    nets = [ipaddress.ip_network(f"{a['local']}/{a['prefixlen']}", strict=False)
            for i in json.loads(used or "[]") for a in i.get("addr_info", [])]
    for _ in range(50):
        cand = ipaddress.ip_network(f"172.{random.randrange(21, 31)}.{random.randrange(1, 254)}.0/24")
        if not any(cand.overlaps(n) for n in nets):
            return str(cand)
    raise RuntimeError("no free management /24 found")


BARE_FRR = """frr version 8.4
frr defaults datacenter
hostname {leaf}
service integrated-vtysh-config
!
interface eth3
 ipv6 nd ra-interval 3
 no ipv6 nd suppress-ra
exit
!
"""


def _bare_copy(workdir: Path) -> Path:
    """The reference topology with FRR configs that have no BGP (the reconciler creates it)."""
    shutil.copytree(TOPOLOGY.parent / "app-fabric", workdir / "app-fabric", dirs_exist_ok=True)
    for leaf in ("leaf1", "leaf2"):
        (workdir / "app-fabric" / leaf / "frr.conf").write_text(BARE_FRR.format(leaf=leaf))
    shutil.copy(TOPOLOGY, workdir / TOPOLOGY.name)
    return workdir / TOPOLOGY.name


@contextlib.contextmanager
def fabric_lab(inventory_dir: Path, prefix: str = "ni-sw-", bare_frr: bool = False) -> Iterator[Lab]:
    """`bare_frr`: leaves start without BGP (fresh switches for the conformance suite)."""
    name = f"{prefix}{random.randrange(16**4):04x}"
    topo = _bare_copy(Path(inventory_dir)) if bare_frr else TOPOLOGY
    lab = Lab.from_file(topo, name, inventory_dir, _free_subnet(), log=lambda m: None)
    try:
        lab.up()
        yield lab
    finally:
        lab.down()


def inventory_vars(lab: Lab) -> dict[str, dict]:
    inv = yaml.safe_load(Path(lab.inventory_path).read_text())
    allv = inv["all"].get("vars", {})
    out = {}
    for group in inv["all"]["children"].values():
        for n, v in (group.get("hosts") or {}).items():
            out[n] = {**allv, **out.get(n, {}), **(v or {})}
    return out


def switch_targets(lab: Lab) -> list[Target]:
    v = inventory_vars(lab)
    return [Target(n, Layer.SWITCH, v[n]) for n in ("leaf1", "leaf2")]


SERVER = r"""
import socket, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2]))); s.listen(8); s.settimeout(0.5); print("listening", flush=True)
end = time.monotonic() + float(sys.argv[3])
while time.monotonic() < end:
    try:
        c, _ = s.accept()
    except OSError:
        continue
    c.sendall(b"netintent-ok\n"); c.close()
"""

CLIENT = r"""
import socket, sys
try:
    c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3)
    c.settimeout(3)
    sys.exit(0 if c.recv(64).startswith(b"netintent-ok") else 2)
except OSError:
    sys.exit(1)
"""


def tcp_listen(lab: Lab, node: str, addr: str, port: int, seconds: float = 60) -> subprocess.Popen:
    p = subprocess.Popen(["ip", "netns", "exec", lab.netns(node), sys.executable, "-c", SERVER, addr,
                          str(port), str(seconds)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    wait_listening(p, f"{node} {addr}:{port}")
    return p


def tcp_ok(lab: Lab, node: str, addr: str, port: int) -> bool:
    p = subprocess.run(["ip", "netns", "exec", lab.netns(node), sys.executable, "-c", CLIENT, addr, str(port)],
                       capture_output=True, timeout=15)
    return p.returncode == 0


def tcp_eventually(lab: Lab, node: str, addr: str, port: int, timeout: float = 20) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if tcp_ok(lab, node, addr, port):
            return True
        time.sleep(0.5)
    return False


def wait_bgp(lab: Lab, vteps: dict[str, str], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        ok = True
        for leaf in vteps:
            routes = lab.exec(leaf, ["ip", "-j", "route"], check=False).stdout
            have = {r.get("dst") for r in json.loads(routes or "[]")}
            missing = [v for lf, v in vteps.items() if lf != leaf and v not in have]
            if missing:
                ok, last = False, f"{leaf}: no route to {missing}"
        if ok:
            return
        time.sleep(0.5)
    raise AssertionError(f"BGP did not converge within {timeout}s: {last}")
