"""Compile one application into hypervisor-layer resources (Open vSwitch).

Contract: pure. For every hypervisor under the app's hosts:
  ovs-port   `<port>`          access port facing a host that carries the app: tag = app VLAN
  trunk-vlan `<uplink>:<vlan>` the app's VLAN allowed on the uplink trunk toward the leaf
                               (the driver sets `trunks` to the union of these per port)
  ovs-flow   `<match>`         OpenFlow rules with the app's cookie: anti-spoofing (an access
                               port may only send IP/ARP from its instances' addresses, and
                               from `netintent_mac` when the inventory gives it) and segment
                               isolation (the uplink only admits the VLANs of hosted apps)
Flow matches are canonical `ovs-ofctl` strings in the order OVS prints them (`canonical_match`),
so observed flows compare as plain strings.
"""
from __future__ import annotations

from typing import Any

from reconciler.compile.context import CompileContext, iter_instances
from reconciler.diff import Normalizer
from reconciler.intents.models import Application
from reconciler.model import Layer, Resource, ResourceKey
from reconciler.names import app_cookie, canonical_match

# What `ovs-vsctl --format=json` and `ovs-ofctl dump-flows` report beyond the intent: OVSDB row
# ids and flow counters and ages. A port's `trunks` has no order.
NORMALIZER = Normalizer(volatile={"*": ("_uuid", "n_packets", "n_bytes", "duration", "idle_age", "hard_age")},
                        set_fields=frozenset({"trunks"}))


def _key(hv: str, kind: str, name: str) -> ResourceKey:
    return ResourceKey(Layer.HYPERVISOR, hv, kind, name)


def _flow(hv: str, app: str, priority: int, match: str, actions: str) -> Resource:
    match = canonical_match(match)
    return Resource(_key(hv, "ovs-flow", f"priority={priority},{match}"),
                    {"table": 0, "priority": priority, "match": match, "actions": actions,
                     "cookie": app_cookie(app)}, app)


def hypervisor_port(ctx: CompileContext, host: str, interface: str | None) -> Any:
    """The hypervisor port facing `host`'s `interface`: `netintent_hypervisor_ports[iface]`
    when a host has several interfaces toward its hypervisor, else `netintent_hypervisor_port`."""
    ports = ctx.hvar(host, "netintent_hypervisor_ports")
    if interface and isinstance(ports, dict) and interface in ports:
        return ports[interface]
    return ctx.hvar(host, "netintent_hypervisor_port")


def compile_app(app: Application, ctx: CompileContext) -> list[Resource]:
    out: list[Resource] = []
    vlan = app.spec.segment.vlan_id
    ports: dict[tuple[str, str], list[str]] = {}
    for _s, _svc, inst in iter_instances(app):
        hv = ctx.hypervisor_of(inst.host)
        port = hypervisor_port(ctx, inst.host, inst.interface)
        if hv is None or port is None:
            continue  # validate reports hosts without a hypervisor
        ports.setdefault((hv, str(port)), []).append(inst.address)
        mac = ctx.hvar(inst.host, "netintent_mac")
        if mac:
            ports[(hv, str(port))].append(f"mac:{mac}")

    hvs = sorted({hv for hv, _ in ports})
    for hv, port in sorted(ports):
        bridge = str(ctx.hvar(hv, "netintent_bridge", "br0"))
        out.append(Resource(_key(hv, "ovs-port", port), {"bridge": bridge, "port": port, "tag": vlan}, app.name))
        entries = ports[(hv, port)]
        macs = sorted(e[4:] for e in entries if e.startswith("mac:"))
        src = f",dl_src={macs[0]}" if macs else ""
        for addr in sorted({e for e in entries if not e.startswith("mac:")}):
            out.append(_flow(hv, app.name, 200, f"in_port={port}{src},ip,nw_src={addr}", "NORMAL"))
            out.append(_flow(hv, app.name, 200, f"in_port={port}{src},arp,arp_spa={addr}", "NORMAL"))
        out.append(_flow(hv, app.name, 100, f"in_port={port}", "drop"))
    for hv in hvs:
        bridge = str(ctx.hvar(hv, "netintent_bridge", "br0"))
        uplink = str(ctx.hvar(hv, "netintent_uplink", "eth1"))
        out.append(Resource(_key(hv, "trunk-vlan", f"{uplink}:{vlan}"),
                            {"bridge": bridge, "port": uplink, "vlan": vlan}, app.name))
        out.append(_flow(hv, app.name, 100, f"in_port={uplink},dl_vlan={vlan}", "NORMAL"))
    return out


def compile_fabric(ctx: CompileContext) -> list[Resource]:
    """App-independent hypervisor state: the uplink drops VLANs no app asked for."""
    out = []
    for h in ctx.inventory.group("hypervisors"):
        uplink = str(h.vars.get("netintent_uplink", "eth1"))
        out.append(_flow(h.name, "", 50, f"in_port={uplink}", "drop"))
    return out
