"""Names and paths of everything a lab creates (pure: derived from the Topology only).

Contract: given a Topology, `Layout` answers where and under which name each resource lives,
so `up`, `down`, `status` and tests agree without sharing state:
- netns of node N of lab L:          `L-N` (also the FRR pathspace name, /etc/frr/L-N/)
- management bridge in the root ns:  `nim-<hash8>` (hash of the lab name, <= 15 chars)
- root-side management veth of N:    `nim<hash6>-<i>` (i = node index in the file)
- state dir:                         /var/lib/netintent/lab/L/ (key, per-node dirs, state.json)
- lab SSH key:                       /var/lib/netintent/lab/L/id_ed25519
- per node:                          /var/lib/netintent/lab/L/nodes/N/ (sshd, OVS run/db/log)
- `ovs-bridge` nodes: bridges of one OVS per lab running in netns `L--ovs` (two userspace
  OVS instances cannot share a netns), holding the far ends of the links to them
- roles: label `netintent.role` = switch | hypervisor | host; switches and hypervisors run
  their own OVS with bridge `netintent.bridge` (default br0) holding every data interface
  except the switch's fabric ports (`netintent.fabric-ports`, comma separated).
- FRR: a node runs FRR when a bind targets /etc/frr/... or label `netintent.frr` is "true".
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from reconciler.lab.topology import Node, Topology

STATE_ROOT = Path("/var/lib/netintent/lab")
FRR_ETC = Path("/etc/frr")
FRR_RUN = Path("/run/frr")
OVS_ROLES = ("switch", "hypervisor")
# FRR quirk: files some daemons write outside their pathspace (FRR 8.4: ospfd's graceful
# restart state). The lab removes them on down if they did not exist before its up and no
# other such daemon still runs.
FRR_SHARED_FILES = {"/run/frr/ospfd-gr.json": "ospfd"}
# FRR daemons keep a temp dir /var/tmp/frr/<daemon>.<pid before daemonizing>/ (held open) that
# only a clean exit removes; the lab kills its daemons, so down removes the dirs they held.
FRR_TMP = Path("/var/tmp/frr")
TRUE = ("true", "yes", "1", "on")


def _h(name: str, n: int) -> str:
    return hashlib.sha256(name.encode()).hexdigest()[:n]


@dataclass(frozen=True)
class Layout:
    topo: Topology
    state_root: Path = STATE_ROOT

    @property
    def lab(self) -> str:
        return self.topo.name

    @property
    def state_dir(self) -> Path:
        return self.state_root / self.lab

    @property
    def key_path(self) -> Path:
        return self.state_dir / "id_ed25519"

    @property
    def known_hosts_path(self) -> Path:
        """Every node's SSH host key by management address: the drivers check host keys."""
        return self.state_dir / "known_hosts"

    @property
    def state_file(self) -> Path:
        return self.state_dir / "state.json"

    @property
    def mgmt_bridge(self) -> str:
        return "nim-" + _h(self.lab, 8)

    def netns(self, node: str) -> str:
        return f"{self.lab}-{node}"

    def node_dir(self, node: str) -> Path:
        return self.state_dir / "nodes" / node

    def ovs_dir(self, node: str) -> Path:
        return self.node_dir(node) / "ovs"

    @property
    def root_ovs_dir(self) -> Path:
        return self.state_dir / "root-ovs"

    @property
    def ovs_netns(self) -> str:
        """netns of the lab's own OVS for `ovs-bridge` nodes ('--' cannot be a node name)."""
        return f"{self.lab}--ovs"

    def has_ovs_bridges(self) -> bool:
        return any(n.kind == "ovs-bridge" for n in self.topo.nodes.values())

    def mgmt_host_veth(self, node: str) -> str:
        idx = list(self.topo.nodes).index(node)
        return f"nim{_h(self.lab, 6)}-{idx}"

    def frr_etc(self, node: str) -> Path:
        return FRR_ETC / self.netns(node)

    def frr_run(self, node: str) -> Path:
        return FRR_RUN / self.netns(node)

    # --- roles -------------------------------------------------------------------------
    @staticmethod
    def runs_ovs(node: Node) -> bool:
        return node.kind == "linux" and node.role in OVS_ROLES

    @staticmethod
    def runs_frr(node: Node) -> bool:
        if node.kind != "linux":
            return False
        if node.labels.get("netintent.frr", "").lower() in TRUE:
            return True
        return any(c.startswith("/etc/frr/") or c.rstrip("/") == "/etc/frr"
                   for _, c, _ in node.binds)

    @staticmethod
    def ovs_bridge(node: Node) -> str:
        return node.labels.get("netintent.bridge", "br0")

    @staticmethod
    def fabric_ports(node: Node) -> list[str]:
        raw = node.labels.get("netintent.fabric-ports", "")
        return [p.strip() for p in raw.split(",") if p.strip()]

    def ovs_ports(self, node: Node) -> list[str]:
        """Data interfaces that join the node's OVS bridge, in link order."""
        fabric = set(self.fabric_ports(node))
        return [ep.iface for ep, _, _ in self.topo.links_of(node.name) if ep.iface not in fabric]

    def ovs_env(self, node: str) -> dict[str, str]:
        d = str(self.ovs_dir(node))
        return {"OVS_RUNDIR": d, "OVS_DBDIR": d, "OVS_LOGDIR": d}

    def node_env(self, node: Node) -> dict[str, str]:
        env = dict(node.env)
        if self.runs_ovs(node):
            env.update(self.ovs_env(node.name))
        return env
