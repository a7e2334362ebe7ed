"""Tear a lab down, report its status, and run the per-lab root OVS (for `ovs-bridge` nodes).

Contract:
- `down(layout, state, inventory_path)` removes, in this order and continuing past errors:
  every process in each node netns (found with `ip netns pids`, so background processes of
  `exec:` and SSH sessions go too) and in the lab's OVS netns (<lab>--ovs), the netns (which
  destroys their veths), the management bridge and the bridges the lab created, FRR's
  /etc/frr/<ns> and /run/frr/<ns>, FRR files outside the pathspace that this lab caused
  (layout.FRR_SHARED_FILES) and the daemons' /var/tmp/frr/<daemon>.<pid>, the inventory file and the
  state dir (with the workloads' files), then the workload mount point it created (workloads.py).
  Names come from the Layout, so it works without a state file. Returns a list of problems
  (empty = clean).
- `status(layout, state)` returns one dict per node: netns, holder, sshd, ovs, frr booleans.
"""
from __future__ import annotations

import glob
import os
import shutil
from pathlib import Path

from reconciler.lab import adsrelay, workloads
from reconciler.lab.layout import FRR_SHARED_FILES, FRR_TMP, Layout
from reconciler.lab.system import (
    OVS_SCHEMA,
    StepError,
    alive,
    ip_batch,
    kill_all,
    netns_list,
    netns_pids,
    process_running,
    read_pid,
    run,
)


def _ovs_pids(d: Path) -> list[int]:
    return [p for p in (read_pid(str(d / f)) for f in ("ovsdb-server.pid", "ovs-vswitchd.pid"))
            if p]


def _frr_tmp_dirs(pid: int) -> set[Path]:
    """The /var/tmp/frr/<daemon>.<pid-before-fork>/ dir a daemon holds open (fd to the dir)."""
    out = set()
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                target = Path(os.readlink(f"/proc/{pid}/fd/{fd}"))
            except OSError:
                continue
            if target.parent == FRR_TMP:
                out.add(target)
    except OSError:
        pass
    return out


def _frr_pids(layout: Layout, node: str) -> list[int]:
    return [p for p in (read_pid(f) for f in glob.glob(str(layout.frr_run(node) / "*.pid")))
            if p]


def down(layout: Layout, state: dict, inventory_path: Path | None) -> list[str]:
    have = netns_list()
    nodes = [n.name for n in layout.topo.netns_nodes()]
    problems = _kill_processes(_lab_pids(layout, state, nodes, have))
    problems += _delete_links_and_netns(_link_and_netns_deletions(layout, state, nodes, have))
    problems += _remove_files(layout, state, inventory_path, nodes)
    workloads.remove_mountpoints(state.get("workload_mountpoints", []), layout.state_root)
    if state.get("ads_address"):
        adsrelay.remove_socket(state["ads_address"])
    have = netns_list()
    still = [layout.netns(n) for n in nodes if layout.netns(n) in have]
    if still:
        problems.append(f"netns still present: {', '.join(still)}")
    return problems


def _lab_pids(layout: Layout, state: dict, nodes: list[str], have: set[str]) -> list[int]:
    """Every process of the lab: in its netns, from its pidfiles and its holders."""
    pids: list[int] = []
    for n in nodes:
        ns = layout.netns(n)
        if ns in have:
            pids += netns_pids(ns)
        # FRR daemons and OVS may be in the root mount ns but are always in the node netns;
        # the pidfiles are a second net in case a netns was already deleted by hand.
        pids += [p for p in _frr_pids(layout, n) + _ovs_pids(layout.ovs_dir(n)) if alive(p)]
    holders = [int(p) for p in state.get("holders", {}).values() if p]
    pids += [p for p in holders if alive(p)]
    relay = state.get("ads_relay")          # the lab's ADS server (adsrelay.py), in the root netns
    if relay and alive(relay) and _is_relay(int(relay)):
        pids.append(int(relay))
    pids += [p for p in _ovs_pids(layout.root_ovs_dir) if alive(p)]
    if layout.ovs_netns in have:
        pids += netns_pids(layout.ovs_netns)
    return pids


def _is_relay(pid: int) -> bool:
    """The pid is still the relay (not a reused pid): its command line names the module."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return b"reconciler.xds.relay" in f.read()
    except OSError:
        return False


def _kill_processes(pids: list[int]) -> list[str]:
    """Kill `pids` and remove the FRR temp dirs they held; the problem if some survive."""
    frr_tmp = {d for p in pids for d in _frr_tmp_dirs(p)}
    kill_all(pids)
    for d in frr_tmp:
        shutil.rmtree(d, ignore_errors=True)
    left = [p for p in pids if alive(p)]
    return [f"processes still alive: {left}"] if left else []


def _link_and_netns_deletions(layout: Layout, state: dict, nodes: list[str],
                              have: set[str]) -> list[str]:
    """`ip -batch` lines deleting what exists of the lab's links, netns and bridges, in a safe order."""
    topo = layout.topo
    # Deleting one end of a veth deletes the pair at once (netns teardown is asynchronous),
    # so root-side ends go first, then the netns, then the bridges.
    lines = [f"link del {layout.mgmt_host_veth(n)}" for n in nodes
             if os.path.exists(f"/sys/class/net/{layout.mgmt_host_veth(n)}")]
    for ln in topo.links:
        for ep in (ln.a, ln.b):
            if topo.nodes[ep.node].kind == "bridge" and os.path.exists(f"/sys/class/net/{ep.iface}"):
                lines.append(f"link del {ep.iface}")
                break
    lines += [f"netns del {layout.netns(n)}" for n in nodes if layout.netns(n) in have]
    if layout.ovs_netns in have:
        lines.append(f"netns del {layout.ovs_netns}")
    if os.path.exists(f"/sys/class/net/{layout.mgmt_bridge}"):
        lines.append(f"link del {layout.mgmt_bridge}")
    for br in state.get("bridges", []):
        if os.path.exists(f"/sys/class/net/{br}"):
            lines.append(f"link del {br}")
    return lines


def _delete_links_and_netns(lines: list[str]) -> list[str]:
    """Run the deletions in one batch; a problem for each object still there afterwards."""
    problems = []
    try:
        ip_batch(lines, "delete namespaces and bridges", force=True)
    except StepError:
        pass   # judged below by what is still there
    for line in lines:
        obj = line.split()[-1]
        gone = obj not in netns_list() if line.startswith("netns") else \
            not os.path.exists(f"/sys/class/net/{obj}")
        if not gone:
            problems.append(f"could not {line}")
    return problems


def _remove_files(layout: Layout, state: dict, inventory_path: Path | None, nodes: list[str]) -> list[str]:
    """Remove FRR's per-node dirs and shared files, the inventory and the state dir."""
    problems = []
    for n in nodes:
        for d in (layout.frr_etc(n), layout.frr_run(n)):
            shutil.rmtree(d, ignore_errors=True)
            if d.exists():
                problems.append(f"could not remove {d}")
    for f in state.get("frr_shared_files", []):
        daemon = FRR_SHARED_FILES.get(f)
        if daemon and os.path.exists(f) and not process_running(daemon):
            os.unlink(f)
    inv = Path(state.get("inventory") or inventory_path or "")
    if inventory_path is not None and inv.name and inv.is_file():
        inv.unlink()
    shutil.rmtree(layout.state_dir, ignore_errors=True)
    if layout.state_dir.exists():
        problems.append(f"could not remove {layout.state_dir}")
    return problems


def status(layout: Layout, state: dict) -> list[dict]:
    have = netns_list()
    out = []
    holders = state.get("holders", {})
    for n in layout.topo.netns_nodes():
        nd = layout.node_dir(n.name)
        row = {"node": n.name, "netns": layout.netns(n.name), "mgmt": n.mgmt_ipv4,
               "netns_ok": layout.netns(n.name) in have,
               "holder": alive(holders.get(n.name)),
               "sshd": alive(read_pid(str(nd / "sshd.pid")))}
        if layout.runs_ovs(n):
            row["ovs"] = len([p for p in _ovs_pids(layout.ovs_dir(n.name)) if alive(p)]) == 2
        if layout.runs_frr(n):
            fp = _frr_pids(layout, n.name)
            row["frr"] = bool(fp) and all(alive(p) for p in fp)
        out.append(row)
    return out


def start_root_ovs(layout: Layout) -> None:
    """The lab's OVS for its `ovs-bridge` nodes, in netns `<lab>--ovs`, with its own dirs."""
    d = layout.root_ovs_dir
    d.mkdir(parents=True, exist_ok=True)
    env = {"OVS_RUNDIR": str(d), "OVS_DBDIR": str(d), "OVS_LOGDIR": str(d)}
    db, sock = d / "conf.db", d / "db.sock"
    run(["ovsdb-tool", "create", str(db), OVS_SCHEMA], "root OVS: create database")
    nx = ["ip", "netns", "exec", layout.ovs_netns]
    run(nx + ["ovsdb-server", str(db), f"--remote=punix:{sock}", "--pidfile", "--detach",
         "--log-file"], "root OVS: start ovsdb-server", env=env)
    run(["ovs-vsctl", "--no-wait", "init"], "root OVS: init", env=env)
    run(nx + ["ovs-vswitchd", f"unix:{sock}", "--pidfile", "--detach", "--log-file"],
        "root OVS: start ovs-vswitchd", env=env)
    topo = layout.topo
    for n in topo.nodes.values():
        if n.kind != "ovs-bridge":
            continue
        argv = ["ovs-vsctl", "--timeout=20", "--", "--may-exist", "add-br", n.name,
                "--", "set", "bridge", n.name, "datapath_type=netdev"]
        for ep, _, _ in topo.links_of(n.name):
            argv += ["--", "--may-exist", "add-port", n.name, ep.iface]
        run(argv, f"{n.name}: create OVS bridge", env=env, timeout=30)
        run(nx + ["ip", "link", "set", "dev", n.name, "up"], f"{n.name}: set up")
        for ep, _, _ in topo.links_of(n.name):
            run(nx + ["ip", "link", "set", "dev", ep.iface, "up"], f"{n.name}: set {ep.iface} up")
