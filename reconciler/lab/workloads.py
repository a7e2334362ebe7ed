"""gRPC workloads of a lab: one labs/workloads/agent.py per node that declares some.

Contract (labels, so the topology stays valid containerlab; docs in labs/README.md):
  netintent.workload.serve  comma list of NAME@IPv4:PORT: xDS-enabled Echo servers; NAME is
                            what every answer carries (the serving instance)
  netintent.workload.call   comma list of xds:///TARGET the workload dials (watches kept warm)
  netintent.workload.admin  admin/CSDS port on the node's management address (default 18000,
                            what the sidecar driver dials: <ansible_host>:18000)
- `specs(topo)` is pure: node name -> WorkloadSpec for the nodes with such labels; a bad label
  raises WorkloadLabelError naming file, node and label.
- `start(layout, node, spec, holder)` (lab up, after the node's exec:) runs inside the node:
  `net.ipv4.ip_nonlocal_bind=1` (servers listen on instance addresses the host layer adds
  later, behind the host's nftables), binds the node's private dir `<node dir>/xds` (0700)
  onto WORKLOAD_DIR in the node's mount namespace, and starts the agent with
  GRPC_XDS_BOOTSTRAP = WORKLOAD_DIR/bootstrap.json and `--wait-bootstrap`: xDS starts when
  the host layer has written the bootstrap. Returns the agent's pid once its admin port
  listens (bounded wait; StepError naming the node otherwise).
- Agents live in the node's netns, so `lab down` ends them with every other process there;
  their files are in the lab's state dir, removed by `lab down`. The mount point
  WORKLOAD_DIR is created in the root filesystem when missing and recorded in the lab state;
  `lab down` removes it when it is empty and no other lab is up.
"""
from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from reconciler.lab.layout import Layout
from reconciler.lab.system import StepError, in_node, run
from reconciler.lab.topology import Node, Topology
from reconciler.xds.paths import WORKLOAD_DIR

AGENT = Path(__file__).resolve().parents[2] / "labs" / "workloads" / "agent.py"

SERVE, CALL, ADMIN = "netintent.workload.serve", "netintent.workload.call", "netintent.workload.admin"
DEFAULT_ADMIN_PORT = 18000
READY_TIMEOUT_S = 20.0


class WorkloadLabelError(ValueError):
    pass


@dataclass(frozen=True)
class WorkloadSpec:
    serve: tuple[tuple[str, str, int], ...]      # (name, ip, port)
    call: tuple[str, ...]
    admin_port: int = DEFAULT_ADMIN_PORT


def _items(raw: str) -> list[str]:
    return [x.strip() for x in raw.split(",") if x.strip()]


def _serve_item(topo: Topology, node: str, item: str) -> tuple[str, str, int]:
    name, _, addr = item.partition("@")
    ip, _, port = addr.rpartition(":")
    try:
        ipaddress.IPv4Address(ip)
        port_i = int(port)
    except ValueError:
        port_i = 0
    if not name or not name.replace("-", "").replace(".", "").replace("_", "").isalnum() \
            or not 0 < port_i < 65536:
        raise WorkloadLabelError(f"{topo.path}: node {node}: {SERVE} item {item!r} is not NAME@IPv4:PORT")
    return name, ip, port_i


def spec_of(topo: Topology, node: Node) -> WorkloadSpec | None:
    serve_raw, call_raw = node.labels.get(SERVE, ""), node.labels.get(CALL, "")
    if not serve_raw and not call_raw:
        return None
    serve = tuple(_serve_item(topo, node.name, i) for i in _items(serve_raw))
    calls = tuple(_items(call_raw))
    for c in calls:
        rest = c.removeprefix("xds:///")
        if rest == c or not rest or any(ch.isspace() for ch in rest):
            raise WorkloadLabelError(f"{topo.path}: node {node.name}: {CALL} item {c!r} is not xds:///TARGET")
    try:
        admin = int(node.labels.get(ADMIN, DEFAULT_ADMIN_PORT))
    except ValueError:
        admin = 0
    if not 0 < admin < 65536:
        raise WorkloadLabelError(f"{topo.path}: node {node.name}: {ADMIN} is not a port number")
    return WorkloadSpec(serve, calls, admin)


def specs(topo: Topology) -> dict[str, WorkloadSpec]:
    out = {}
    for n in topo.netns_nodes():
        s = spec_of(topo, n)
        if s is not None:
            out[n.name] = s
    return out


def agent_argv(layout: Layout, node: Node, spec: WorkloadSpec) -> list[str]:
    d = layout.node_dir(node.name)
    argv = [sys.executable, str(AGENT), "--admin", f"{node.mgmt_ipv4}:{spec.admin_port}",
            "--ready-file", str(d / "agent.ready"), "--wait-bootstrap"]
    for name, ip, port in spec.serve:
        argv += ["--serve", f"{name}@{ip}:{port}"]
    for t in spec.call:
        argv += ["--warm", t]
    return argv


def ensure_mountpoint() -> list[str]:
    """Create WORKLOAD_DIR (and missing parents) in the root filesystem; the dirs created."""
    created: list[str] = []
    d = WORKLOAD_DIR
    while not os.path.isdir(d):
        created.append(d)
        d = os.path.dirname(d)
    for c in reversed(created):
        os.mkdir(c, 0o755)
    return created


def start(layout: Layout, node: Node, spec: WorkloadSpec, holder: int) -> int:
    d = layout.node_dir(node.name)
    xds = d / "xds"
    xds.mkdir(parents=True, exist_ok=True)
    os.chmod(xds, 0o700)
    run(in_node(holder, ["sysctl", "-q", "-w", "net.ipv4.ip_nonlocal_bind=1"], mount=False),
        f"{node.name}: sysctl net.ipv4.ip_nonlocal_bind=1")
    run(in_node(holder, ["mount", "--bind", str(xds), WORKLOAD_DIR]), f"{node.name}: bind {WORKLOAD_DIR}")
    ready = d / "agent.ready"
    ready.unlink(missing_ok=True)
    env = dict(os.environ, GRPC_XDS_BOOTSTRAP=f"{WORKLOAD_DIR}/bootstrap.json", PYTHONUNBUFFERED="1")
    for k in ("GRPC_XDS_BOOTSTRAP_CONFIG", "GRPC_TRACE", "GRPC_VERBOSITY"):
        env.pop(k, None)
    with open(d / "agent.log", "ab") as log:
        proc = subprocess.Popen(in_node(holder, agent_argv(layout, node, spec)), env=env, stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise StepError(f"{node.name}: start workload", f"agent exited {proc.returncode}: {_tail(d)}")
        try:
            return int(json.loads(ready.read_text())["pid"])
        except (OSError, ValueError, KeyError):
            time.sleep(0.05)
    raise StepError(f"{node.name}: start workload", f"agent not listening within {READY_TIMEOUT_S:g}s: {_tail(d)}")


def _tail(d: Path, n: int = 300) -> str:
    try:
        return (d / "agent.log").read_text(errors="replace")[-n:].strip() or "no output"
    except OSError:
        return "no output"


def remove_mountpoints(created: list[str], state_root: Path) -> None:
    """Remove the dirs `ensure_mountpoint` created (deepest first) when empty and no lab is
    left under state_root (another lab's nodes may still have it as their mount point)."""
    try:
        if any((p / "state.json").exists() for p in state_root.iterdir()):
            return
    except FileNotFoundError:
        pass
    for d in created:
        try:
            os.rmdir(d)
        except FileNotFoundError:
            continue
        except OSError:
            return   # not empty: something else put files there; leave it
