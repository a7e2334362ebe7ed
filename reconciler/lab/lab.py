"""The Lab: bring a containerlab topology up on network namespaces, and take it down.

Contract:
- `Lab.from_file(path, name_override=None, inventory_dir=None)` parses the topology (errors
  are TopologyError naming file:line) and nothing else.
- `preflight()` refuses (LabError) before anything is created: not root, missing tools, mgmt
  subnet overlapping a route, root-side interface names taken, labels the inventory needs.
- `up()` is idempotent: a healthy lab is left alone (returns False); leftovers of a broken
  earlier run (LabState.PARTIAL) are removed first, then the lab is built from scratch.
  Order: preflight (root, tools, name/subnet conflicts: nothing is created when it fails) ->
  SSH key -> root batch (netns, mgmt bridge, every veth) -> holders -> per-netns batches
  (addresses, links up, default route) -> per node in parallel: sysctls, tx offload off,
  sshd, OVS, FRR, binds, exec in order, then the node's gRPC workload (workloads.py) -> inventory.
  A failing step tears everything down and
  raises LabError naming the step.
- `down()` removes every netns (and so every veth), every process in them, the management
  bridge, the bridges it created, the lab's OVS netns (ovs-bridge nodes), /etc/frr/<ns> and /run/frr/<ns>, the
  inventory file and the state dir. It works from names alone (layout.py), so it also cleans
  a lab whose state file is gone. Returns the list of problems (empty when clean).
- `exec(node, argv)` runs argv inside the node (its netns, hostname, mount view, env).
- The inventory goes to `<inventory_dir>/<lab>.yml`; inventory_dir defaults to ./inventory
  (relative to the current directory, i.e. the repo root when run from there).
"""
from __future__ import annotations

import contextlib
import enum
import ipaddress
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Sequence

from reconciler.filelock import exclusive
from reconciler.lab import adsrelay, inventory, teardown, workloads
from reconciler.lab import node as nodeops
from reconciler.lab.layout import FRR_SHARED_FILES, Layout
from reconciler.lab.system import StepError, alive, in_node, ip_batch, missing_tools, netns_list, run
from reconciler.lab.topology import Topology, TopologyError, load

DEFAULT_MTU = 9500   # containerlab's default veth MTU
WORKERS = 4


class LabState(str, enum.Enum):
    UP = "up"              # every node's netns and holder present, up finished
    DOWN = "down"          # nothing of the lab exists
    PARTIAL = "partial"    # leftovers (crashed up, nodes killed by hand): `lab down` cleans


class LabError(RuntimeError):
    pass


class Lab:
    def __init__(self, topo: Topology, inventory_dir: Path | str | None = None,
                 log: Callable[[str], None] | None = None):
        self.topo = topo
        self.layout = Layout(topo)
        self.inventory_dir = Path(inventory_dir) if inventory_dir else Path.cwd() / "inventory"
        self.log = log or (lambda msg: print(msg, file=sys.stderr))
        self.timings: dict[str, float] = {}
        self._workloads: dict[str, workloads.WorkloadSpec] = {}

    @classmethod
    def from_file(cls, path: str | Path, name_override: str | None = None,
                  inventory_dir: Path | str | None = None, mgmt_subnet: str | None = None,
                  log: Callable[[str], None] | None = None) -> "Lab":
        return cls(load(path, name_override, mgmt_subnet), inventory_dir, log)

    # --- names ---------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.topo.name

    @property
    def inventory_path(self) -> Path:
        return self.inventory_dir / f"{self.name}.yml"

    @property
    def key_path(self) -> Path:
        return self.layout.key_path

    def netns(self, node: str) -> str:
        return self.layout.netns(node)

    def mgmt_ip(self, node: str) -> str:
        return str(self.topo.nodes[node].mgmt_ipv4)

    @property
    def ads_address(self) -> str:
        """Where the lab's ADS server listens (the inventory's `netintent_ads`)."""
        return f"{self.topo.mgmt_gateway}:{inventory.ADS_PORT}"

    # --- state ---------------------------------------------------------------------------
    def _state(self) -> dict:
        try:
            return json.loads(self.layout.state_file.read_text())
        except (OSError, ValueError):
            return {}

    def _save(self, state: dict) -> None:
        f = self.layout.state_file
        f.parent.mkdir(parents=True, exist_ok=True)
        tmp = f.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=1))
        tmp.replace(f)

    def holder(self, node: str) -> int:
        pid = self._state().get("holders", {}).get(node)
        if not pid or not alive(pid):
            raise LabError(f"lab {self.name}: node {node} is not running (run `lab up`)")
        return int(pid)

    def is_up(self) -> bool:
        st = self._state()
        if st.get("phase") != "up":
            return False
        have = netns_list()
        return all(self.netns(n.name) in have and alive(st.get("holders", {}).get(n.name))
                   for n in self.topo.netns_nodes())

    def state(self) -> LabState:
        if self.is_up():
            return LabState.UP
        return LabState.PARTIAL if self._leftovers() else LabState.DOWN

    def _leftovers(self) -> bool:
        have = netns_list()
        return (self.layout.state_dir.exists()
                or any(self.netns(n.name) in have for n in self.topo.netns_nodes())
                or os.path.exists(f"/sys/class/net/{self.layout.mgmt_bridge}"))

    # --- up ------------------------------------------------------------------------------
    def preflight(self) -> None:
        if os.geteuid() != 0:
            raise LabError("lab up needs root (network namespaces, veths, sshd on port 22)")
        feats = ["base", "ssh"]
        if any(Layout.runs_ovs(n) or n.kind == "ovs-bridge" for n in self.topo.nodes.values()):
            feats.append("ovs")
        if any(Layout.runs_frr(n) for n in self.topo.nodes.values()):
            feats.append("frr")
        miss = missing_tools(feats)
        if miss:
            raise LabError(f"lab {self.name}: missing tools: {', '.join(miss)}")
        routes = json.loads(run(["ip", "-j", "-4", "route", "show"], "read routes").stdout or "[]")
        for r in routes:
            dst = r.get("dst", "")
            if dst == "default" or r.get("dev") == self.layout.mgmt_bridge:
                continue
            try:
                net = ipaddress.IPv4Network(dst if "/" in dst else dst + "/32", strict=False)
            except ValueError:
                continue
            if net.overlaps(self.topo.mgmt_subnet):
                raise LabError(f"lab {self.name}: mgmt subnet {self.topo.mgmt_subnet} overlaps "
                               f"{dst} on {r.get('dev')} (another lab? set mgmt.ipv4-subnet)")
        try:   # pure: a bad role/label setup is refused before anything is created
            inventory.build(self.topo, str(self.key_path))
            workloads.specs(self.topo)
        except (inventory.InventoryError, workloads.WorkloadLabelError) as e:
            raise LabError(str(e)) from None
        for ln in self.topo.links:
            for ep in (ln.a, ln.b):
                if self.topo.nodes[ep.node].kind == "bridge" and \
                        os.path.exists(f"/sys/class/net/{ep.iface}"):
                    raise LabError(f"lab {self.name}: interface {ep.iface} (link {ep}) already "
                                   "exists in the root namespace")

    @contextlib.contextmanager
    def _serial(self):
        """One up/down of this lab at a time on this machine (two shells, two test runs)."""
        with exclusive(f"/run/lock/netintent-lab-{self.name}.updown.lock"):
            yield

    def up(self) -> bool:
        """Bring the lab up; False when it was already up (no-op)."""
        if os.geteuid() != 0:
            raise LabError("lab up needs root (network namespaces, veths, sshd on port 22)")
        with self._serial():
            return self._up_locked()

    def _up_locked(self) -> bool:
        t0 = time.monotonic()
        if self.is_up():
            self.log(f"lab {self.name} is already up")
            return False
        if self._leftovers():
            self.log(f"lab {self.name}: removing leftovers of an earlier run")
            self._down_locked(quiet=True)
        self.preflight()
        summary = self.topo.ignored_summary()
        if summary:
            self.log(summary)
        state: dict = {"lab": self.name, "topology": str(Path(self.topo.path).resolve()),
                       "phase": "creating", "holders": {}, "bridges": [], "root_ovs": False,
                       "frr_shared_files": [f for f in FRR_SHARED_FILES if not os.path.exists(f)],
                       "inventory": str(self.inventory_path.resolve())}
        self._save(state)
        try:
            self._up(state)
        except StepError as e:
            self.log(f"lab {self.name}: step '{e.step}' failed; cleaning up")
            problems = self._down_locked(quiet=True)
            extra = f" (cleanup problems: {'; '.join(problems)})" if problems else ""
            raise LabError(f"lab {self.name}: up failed at step '{e.step}': {e.detail}"
                           f"{extra}") from None
        except BaseException:
            self._down_locked(quiet=True)
            raise
        state["phase"] = "up"
        self._save(state)
        self.timings["total"] = time.monotonic() - t0
        return True

    def _mark(self, name: str, t: float) -> float:
        now = time.monotonic()
        self.timings[name] = now - t
        return now

    def _up(self, state: dict) -> None:
        L, topo = self.layout, self.topo
        self._workloads = workloads.specs(topo)
        t = time.monotonic()
        L.state_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(L.state_dir, 0o700)
        if not L.key_path.exists():
            run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"netintent-lab-{self.name}",
                 "-f", str(L.key_path)], "generate lab SSH key")
        (L.state_dir / "authorized_keys").write_text(
            Path(str(L.key_path) + ".pub").read_text())
        t = self._mark("keys", t)
        self._root_links(state)
        t = self._mark("root_links", t)
        relay = self._spawn_relay(state)
        linux = topo.netns_nodes()
        pending = {n.name: nodeops.spawn_holder(L, n) for n in linux}
        state["holders"] = pending
        self._save(state)
        for n in linux:
            nodeops.wait_holder(n, pending[n.name])
        t = self._mark("holders", t)
        for n in linux:
            ip_batch(self._ns_lines(n.name), f"{n.name}: addresses and links", L.netns(n.name))
        t = self._mark("ns_links", t)
        if L.has_ovs_bridges():
            state["root_ovs"] = True
            self._save(state)
            self._root_ovs()
        if self._workloads:
            state["workload_mountpoints"] = workloads.ensure_mountpoint()
            self._save(state)
        # Heaviest nodes (FRR, OVS) first so the pool finishes early.
        order = sorted(linux, key=lambda n: -(2 * L.runs_frr(n) + L.runs_ovs(n)))
        with ThreadPoolExecutor(max_workers=WORKERS) as pool:
            futs = [pool.submit(self._node_up, n, pending[n.name]) for n in order]
            errors = []
            for f in futs:
                try:
                    for w in f.result():
                        self.log(w)
                except StepError as e:
                    errors.append(e)
            if errors:
                raise errors[0]
        t = self._mark("nodes", t)
        if relay is not None:
            adsrelay.wait_ready(relay, L)
        try:
            lines = []
            for n in linux:
                pub = (L.node_dir(n.name) / "ssh_host_ed25519_key.pub").read_text().split()
                lines.append(f"{n.mgmt_ipv4} {pub[0]} {pub[1]}\n")
            tmp = L.known_hosts_path.with_suffix(".tmp")
            tmp.write_text("".join(lines))
            os.replace(tmp, L.known_hosts_path)
            inventory.write(topo, str(L.key_path), self.inventory_path, str(L.known_hosts_path))
        except (inventory.InventoryError, OSError) as e:
            raise StepError("write inventory", str(e)) from None
        self._mark("inventory", t)

    def _spawn_relay(self, state: dict):
        """The lab's ADS server on the management gateway (adsrelay.py), when it runs workloads."""
        if not self._workloads:
            return None
        relay = adsrelay.spawn(self.layout, self.ads_address)
        state["ads_relay"], state["ads_address"] = relay.pid, self.ads_address
        self._save(state)
        return relay

    def _root_links(self, state: dict) -> None:
        L, topo = self.layout, self.topo
        br = L.mgmt_bridge
        lines = [f"netns add {L.netns(n.name)}" for n in topo.netns_nodes()]
        if L.has_ovs_bridges():
            lines.append(f"netns add {L.ovs_netns}")
        lines += [f"link add name {br} type bridge",
                  f"addr add {topo.mgmt_gateway}/{topo.mgmt_subnet.prefixlen} dev {br}",
                  f"link set dev {br} up"]
        for n in topo.nodes.values():
            if n.kind == "bridge" and not os.path.exists(f"/sys/class/net/{n.name}"):
                lines += [f"link add name {n.name} type bridge", f"link set dev {n.name} up"]
                state["bridges"].append(n.name)
        for n in topo.netns_nodes():
            hv = L.mgmt_host_veth(n.name)
            lines += [f"link add name {hv} type veth peer name eth0 netns {L.netns(n.name)}",
                      f"link set dev {hv} master {br} up"]
        for ln in topo.links:
            mtu = ln.mtu or DEFAULT_MTU
            spec = []
            for ep in (ln.a, ln.b):
                s = f"name {ep.iface} mtu {mtu}"
                if ep.mac:
                    s += f" address {ep.mac}"
                if topo.nodes[ep.node].kind == "linux":
                    s += f" netns {L.netns(ep.node)}"
                elif topo.nodes[ep.node].kind == "ovs-bridge":
                    s += f" netns {L.ovs_netns}"
                spec.append(s)
            lines.append(f"link add {spec[0]} type veth peer {spec[1]}")
            for ep in (ln.a, ln.b):
                if topo.nodes[ep.node].kind == "bridge":
                    lines.append(f"link set dev {ep.iface} master {ep.node} up")
        self._save(state)
        ip_batch(lines, "create namespaces, management bridge and links")
        off = [w for f in nodeops.OFFLOADS_OFF for w in (f, "off")]
        for ln in topo.links:
            for ep in (ln.a, ln.b):
                kind = topo.nodes[ep.node].kind
                prefix = {"bridge": [], "ovs-bridge": ["ip", "netns", "exec", L.ovs_netns]}
                if kind in prefix:
                    run(prefix[kind] + ["ethtool", "-K", ep.iface, *off],
                        f"{ep}: ethtool -K {ep.iface} {' '.join(off)}")

    def _ns_lines(self, node: str) -> list[str]:
        topo = self.topo
        n = topo.nodes[node]
        lines = ["link set lo up",
                 f"addr add {n.mgmt_ipv4}/{topo.mgmt_subnet.prefixlen} dev eth0",
                 "link set eth0 up"]
        # `dev` first: a bare name such as `h` would be read as the keyword `help`
        lines += [f"link set dev {ep.iface} up" for ep, _, _ in topo.links_of(node)]
        lines.append(f"route add default via {topo.mgmt_gateway} dev eth0")
        return lines

    def _node_up(self, n, holder: int) -> list[str]:
        L = self.layout
        nodeops.sysctls(n, holder)
        nodeops.tx_offload_off(n, holder, [ep.iface for ep, _, _ in self.topo.links_of(n.name)])
        nodeops.start_sshd(L, n, holder)
        if L.runs_ovs(n):
            nodeops.start_ovs(L, n, holder)
        if L.runs_frr(n):
            nodeops.start_frr(L, n, holder)
        warnings = nodeops.bind_other(L, n, holder)
        nodeops.run_exec(L, n, holder)
        spec = self._workloads.get(n.name)
        if spec is not None:
            workloads.start(L, n, spec, holder)
        return warnings

    def _root_ovs(self) -> None:
        teardown.start_root_ovs(self.layout)

    # --- down / status / exec ------------------------------------------------------------
    def down(self, quiet: bool = False) -> list[str]:
        if os.geteuid() != 0:
            raise LabError("lab down needs root")
        with self._serial():
            return self._down_locked(quiet)

    def _down_locked(self, quiet: bool = False) -> list[str]:
        t0 = time.monotonic()
        problems = teardown.down(self.layout, self._state(), self.inventory_path)
        self.timings["down"] = time.monotonic() - t0
        if problems and not quiet:
            for p in problems:
                self.log(f"lab {self.name}: {p}")
        return problems

    def status(self) -> list[dict]:
        return teardown.status(self.layout, self._state())

    def node_argv(self, node: str, argv: Sequence[str]) -> tuple[list[str], dict[str, str]]:
        """(argv, env) that run a command inside the node, for subprocess.Popen."""
        if node not in self.topo.nodes or self.topo.nodes[node].kind != "linux":
            raise LabError(f"lab {self.name}: no netns node {node!r}")
        env = dict(os.environ)
        env.update(self.layout.node_env(self.topo.nodes[node]))
        return in_node(self.holder(node), list(argv)), env

    def exec(self, node: str, argv: Sequence[str], check: bool = True, timeout: float = 60,
             input: str | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
        full_argv, full_env = self.node_argv(node, argv)
        full_env.update(env or {})
        cp = subprocess.run(full_argv, capture_output=True,
                            text=True, timeout=timeout, env=full_env, input=input,
                            stdin=None if input is not None else subprocess.DEVNULL)
        if check and cp.returncode != 0:
            raise subprocess.CalledProcessError(cp.returncode, list(argv), cp.stdout, cp.stderr)
        return cp


__all__ = ["Lab", "LabError", "LabState", "TopologyError"]
