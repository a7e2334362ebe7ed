"""What an application must not do to the inventory: hold a management address or a VTEP in
its subnet, or be wired through a host interface, hypervisor port or leaf port that would
break the device or cut the reconciler off it.

Contract: pure functions of the inventory. `guarded_addresses(inventory)` lists the addresses
no subnet may hold, with why; `wiring_problems(inventory, host, interface)` lists what
compiling an instance there would break, and the (hypervisor, port) its segment enters by.
The lookups are the compilers' own (compile/host.py, hypervisor.py, switch.py).
"""
from __future__ import annotations

from typing import NamedTuple

from reconciler.intents.addresses import parse_ip
from reconciler.intents.loader import show
from reconciler.intents.models import Inventory
from reconciler.names import RESERVED_IFNAMES

DEFAULT_INTERFACE = "eth1"
# IFNAMSIZ-1 = 15, less the `:ni` the host driver appends to the address label (drivers/ansible/host.py)
MAX_HOST_INTERFACE = 12


_HARM_MGMT = ("hosts would route the reconciler's SSH replies into the application's segment (via its gateway)")
_HARM_VTEP = ("a leaf's anycast gateway would put the VTEP addresses of the fabric behind the application's segment, "
              "cutting VXLAN")


def guarded_addresses(inventory: Inventory | None) -> list[tuple[int, str, str]]:
    """Sorted (address, what, why) of the addresses no application subnet may hold: every
    inventory host's management address (`ansible_host` when it is an IPv4 address: a peer
    subnet route via an app gateway, or the app's own connected route, would take the
    reconciler's SSH) and every switch's VTEP (the routed underlay)."""
    if inventory is None:
        return []
    out: list[tuple[int, str, str]] = []
    for name, h in inventory.hosts.items():
        mgmt = h.var("ansible_host")
        addr = parse_ip(mgmt) if isinstance(mgmt, str) else None
        if addr is not None:
            out.append((addr, f"the management address {mgmt} of host {show(name)} (ansible_host)", _HARM_MGMT))
        vtep = h.var("netintent_vtep") if "switches" in h.groups else None
        addr = parse_ip(vtep) if isinstance(vtep, str) else None
        if addr is not None:
            out.append((addr, f"the VTEP address {vtep} of switch {show(name)} (netintent_vtep)", _HARM_VTEP))
    out.sort()
    return out


class Wiring(NamedTuple):
    problems: tuple[str, ...]
    port: tuple[str, str] | None  # (hypervisor, port) the instance's segment enters OVS by


def wiring_problems(inv: Inventory, host: str, override: str | None) -> Wiring:
    """Same lookups as compile/host.py (interface), compile/hypervisor.py (`hypervisor_port`) and
    compile/switch.py (the hypervisor's leaf port)."""
    h = inv.hosts[host]
    out = []
    iface = override or str(h.var("netintent_interface", DEFAULT_INTERFACE))
    if iface == "lo":
        out.append(f"interface lo of host {show(host)} is the loopback: an application segment needs the "
                   "host's link toward its hypervisor (the host driver also never reads addresses on lo)")
    if iface in RESERVED_IFNAMES:
        out.append(f"interface {show(iface)} of host {show(host)} is a name the kernel refuses for an interface "
                   f"(it names the sysctl directory net.ipv4.conf.{iface})")
    if len(iface) > MAX_HOST_INTERFACE:
        origin = "" if override else " (netintent_interface)"
        out.append(f"interface {show(iface)} of host {show(host)}{origin} is longer than "
                   f"{MAX_HOST_INTERFACE} characters: the host driver labels its addresses `<interface>:ni`, "
                   f"and the kernel allows 15")
    hv_name = h.var("netintent_hypervisor")
    hv = inv.hosts.get(hv_name) if isinstance(hv_name, str) else None
    if hv is None:
        return Wiring(tuple(out), None)
    ports = h.var("netintent_hypervisor_ports")
    port = ports[override] if override and isinstance(ports, dict) and override in ports \
        else h.var("netintent_hypervisor_port")
    uplink = hv.var("netintent_uplink", DEFAULT_INTERFACE)
    if port is not None and port == uplink:
        out.append(f"hypervisor port {show(port)} of host {show(host)} is the uplink of hypervisor {show(hv_name)} "
                   f"(netintent_uplink): tagging it as the application's access port would cut {hv_name} off its leaf")
    leaf_name, leaf_port = hv.var("netintent_leaf"), hv.var("netintent_leaf_port")
    leaf = inv.hosts.get(leaf_name) if isinstance(leaf_name, str) else None
    fabric = leaf.var("netintent_fabric_ports") if leaf is not None else None
    if isinstance(fabric, list) and leaf_port in fabric:
        out.append(f"leaf port {show(leaf_port)} of hypervisor {show(hv_name)} is a fabric port of switch "
                   f"{show(leaf_name)} (netintent_fabric_ports): a VLAN trunk there would break its BGP underlay")
    return Wiring(tuple(out), (str(hv_name), str(port)) if port is not None else None)
