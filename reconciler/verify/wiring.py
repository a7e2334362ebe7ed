"""The cabling of the fabric, read from the inventory (pure).

Contract: `Wiring.of(inventory)` says which hypervisor port each host interface is plugged
into, which leaf port each hypervisor uplink is plugged into, each leaf's VTEP and each host's
xDS node. Devices do not report their cabling, so this is the one input of the model that is
not observed: it is the same inventory the compile uses (docs/inventory.md). A host interface
is wired when `netintent_hypervisor_ports` names it, or when it is the host's
`netintent_interface` (default eth1) and `netintent_hypervisor_port` is set; every other
interface (the management eth0) leaves the application network.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

from reconciler.intents.models import Inventory

SIDECARS_GROUP = "sidecars"


@dataclass(frozen=True)
class Wiring:
    host_port: Mapping[tuple[str, str], tuple[str, str]] = field(default_factory=dict)   # (host, iface) -> (hv, port)
    port_host: Mapping[tuple[str, str], tuple[str, str]] = field(default_factory=dict)   # (hv, port) -> (host, iface)
    uplink: Mapping[str, tuple[str, str, str]] = field(default_factory=dict)   # hv -> (uplink port, leaf, leaf port)
    leaf_down: Mapping[tuple[str, str], str] = field(default_factory=dict)     # (leaf, leaf port) -> hv
    vtep: Mapping[str, str] = field(default_factory=dict)                      # leaf -> VTEP address
    vtep_leaf: Mapping[str, str] = field(default_factory=dict)                 # VTEP address -> leaf
    node: Mapping[str, str] = field(default_factory=dict)                      # host -> xDS node id
    mac: Mapping[tuple[str, str], str] = field(default_factory=dict)           # (host, iface) -> MAC, when given
    hosts: frozenset[str] = frozenset()
    hypervisors: frozenset[str] = frozenset()
    leaves: frozenset[str] = frozenset()

    @classmethod
    def of(cls, inventory: Inventory) -> "Wiring":
        host_port: dict[tuple[str, str], tuple[str, str]] = {}
        mac: dict[tuple[str, str], str] = {}
        for h in inventory.group("hosts"):
            hv = h.vars.get("netintent_hypervisor")
            if not hv:
                continue
            ports = h.vars.get("netintent_hypervisor_ports")
            for iface, port in (ports.items() if isinstance(ports, Mapping) else ()):
                host_port[(h.name, str(iface))] = (str(hv), str(port))
            default = h.vars.get("netintent_hypervisor_port")
            iface = str(h.vars.get("netintent_interface", "eth1"))
            if default and (h.name, iface) not in host_port:
                host_port[(h.name, iface)] = (str(hv), str(default))
            if h.vars.get("netintent_mac"):
                mac[(h.name, iface)] = str(h.vars["netintent_mac"]).lower()
        uplink, leaf_down = {}, {}
        for h in inventory.group("hypervisors"):
            leaf, port = h.vars.get("netintent_leaf"), h.vars.get("netintent_leaf_port")
            if leaf and port:
                uplink[h.name] = (str(h.vars.get("netintent_uplink", "eth1")), str(leaf), str(port))
                leaf_down[(str(leaf), str(port))] = h.name
        vtep = {h.name: str(h.vars["netintent_vtep"]) for h in inventory.group("switches")
                if h.vars.get("netintent_vtep")}
        node = {h.name: str(h.vars.get("netintent_xds_node") or h.name) for h in inventory.group(SIDECARS_GROUP)}
        return cls(host_port, {v: k for k, v in host_port.items()}, uplink, leaf_down, vtep,
                   {v: k for k, v in vtep.items()}, node, mac,
                   frozenset(h.name for h in inventory.group("hosts")),
                   frozenset(h.name for h in inventory.group("hypervisors")),
                   frozenset(h.name for h in inventory.group("switches")))

    def leaf_of_hv(self, hv: str) -> str | None:
        u = self.uplink.get(hv)
        return u[1] if u else None
