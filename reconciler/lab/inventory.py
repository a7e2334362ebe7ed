"""Derive the Ansible inventory of a lab from its topology (pure) and write it (one I/O call).

Contract (see docs/inventory.md): groups `switches`, `hypervisors`, `hosts`, `sidecars` chosen
by node labels; host vars from the topology:
- every node: `ansible_host` = its management address.
- switches (`netintent.role: switch`): netintent_bridge (label `netintent.bridge`, br0),
  netintent_vtep (`netintent.vtep`, required), netintent_asn (`netintent.asn`, required, int),
  netintent_fabric_ports (`netintent.fabric-ports`, comma list), netintent_device_type
  (`netintent.device-type`, linux).
- hypervisors: netintent_bridge, netintent_uplink (`netintent.uplink`, eth1), and
  netintent_leaf / netintent_leaf_port = the far end of the uplink's link.
- hosts: netintent_interface (`netintent.interface`, eth1), and netintent_hypervisor /
  netintent_hypervisor_port = the far end of that interface's link.
- sidecars: hosts with `netintent.sidecar: "true"`; `netintent.xds-node` sets netintent_xds_node.
  With sidecars, `all.vars.netintent_ads` = <mgmt gateway>:ADS_PORT, where the lab's ADS server
  listens (the host layer writes it into each workload's xDS bootstrap).
- linux nodes without a role are listed under `all.hosts` with their ansible_host only.
Missing required labels or links raise InventoryError naming the node.
"""
from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

import yaml

from reconciler.lab.layout import TRUE
from reconciler.lab.topology import Node, Topology

ADS_PORT = 18001


class InventoryError(ValueError):
    pass


def _peer(topo: Topology, node: Node, iface: str) -> tuple[str, str]:
    for ep, peer, _ in topo.links_of(node.name):
        if ep.iface == iface:
            return peer.node, peer.iface
    raise InventoryError(f"{topo.path}: node {node.name}: no link on interface {iface} "
                         "(needed for the inventory)")


def _required(topo: Topology, node: Node, label: str) -> str:
    v = node.labels.get(label)
    if not v:
        raise InventoryError(f"{topo.path}: node {node.name}: label {label} is required "
                             f"for role {node.role}")
    return v


def build(topo: Topology, key_path: str, known_hosts: str | None = None) -> dict[str, Any]:
    groups: dict[str, dict[str, dict]] = {"switches": {}, "hypervisors": {}, "hosts": {},
                                           "sidecars": {}}
    ungrouped: dict[str, dict] = {}
    for n in topo.netns_nodes():
        hv: dict[str, Any] = {"ansible_host": n.mgmt_ipv4}
        if n.role == "switch":
            vtep = _required(topo, n, "netintent.vtep")
            asn = _required(topo, n, "netintent.asn")
            try:
                ipaddress.IPv4Address(vtep)
                asn_i = int(asn)
            except ValueError:
                raise InventoryError(f"{topo.path}: node {n.name}: netintent.vtep/asn "
                                     f"{vtep!r}/{asn!r} are not an IPv4 address/integer") from None
            hv.update(netintent_bridge=n.labels.get("netintent.bridge", "br0"),
                      netintent_vtep=vtep, netintent_asn=asn_i,
                      netintent_fabric_ports=[p.strip() for p in n.labels.get(
                          "netintent.fabric-ports", "").split(",") if p.strip()],
                      netintent_device_type=n.labels.get("netintent.device-type", "linux"))
            groups["switches"][n.name] = hv
        elif n.role == "hypervisor":
            uplink = n.labels.get("netintent.uplink", "eth1")
            leaf, leaf_port = _peer(topo, n, uplink)
            hv.update(netintent_bridge=n.labels.get("netintent.bridge", "br0"),
                      netintent_uplink=uplink, netintent_leaf=leaf, netintent_leaf_port=leaf_port)
            groups["hypervisors"][n.name] = hv
        elif n.role == "host":
            iface = n.labels.get("netintent.interface", "eth1")
            hyp, hyp_port = _peer(topo, n, iface)
            hv.update(netintent_interface=iface, netintent_hypervisor=hyp,
                      netintent_hypervisor_port=hyp_port)
            groups["hosts"][n.name] = hv
        elif n.role is None:
            ungrouped[n.name] = hv
        else:
            raise InventoryError(f"{topo.path}: node {n.name}: netintent.role {n.role!r} is "
                                 "not one of switch, hypervisor, host")
        if n.labels.get("netintent.sidecar", "").lower() in TRUE:
            xds = n.labels.get("netintent.xds-node")
            groups["sidecars"][n.name] = {"netintent_xds_node": xds} if xds else {}
    all_: dict[str, Any] = {"vars": {
        "ansible_user": "root",
        "ansible_ssh_private_key_file": key_path,
        "ansible_python_interpreter": "/usr/bin/python3",
    }}
    if known_hosts:
        all_["vars"]["netintent_known_hosts"] = known_hosts
    if groups["sidecars"]:  # the lab's ADS server (lab/adsrelay.py) on the management gateway
        all_["vars"]["netintent_ads"] = f"{topo.mgmt_gateway}:{ADS_PORT}"
    if ungrouped:
        all_["hosts"] = ungrouped
    all_["children"] = {g: {"hosts": h} for g, h in groups.items() if h}
    return {"all": all_}


def render(topo: Topology, key_path: str, known_hosts: str | None = None) -> str:
    header = (f"# Generated by `reconciler lab up` from {topo.path} (lab {topo.name}); "
              "removed by `reconciler lab down`.\n")
    return header + yaml.safe_dump(build(topo, key_path, known_hosts), sort_keys=False,
                                   default_flow_style=False)


def write(topo: Topology, key_path: str, path: Path, known_hosts: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".yml.tmp")
    tmp.write_text(render(topo, key_path, known_hosts))
    tmp.replace(path)
    return path
