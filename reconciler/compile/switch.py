"""Compile one application (and the fabric) into switch-layer resources (leaf switches).

Contract: pure. An app is *present* on a leaf when one of its hosts hangs off a hypervisor
under that leaf, or when it exchanges traffic (a policy flow) with an app present there:
the leaf then needs the segment to route into it.
  vlan-trunk `<port>:<vlan>`  the app's VLAN allowed on the trunk port facing a hypervisor
                              that hosts it (allowed VLANs = apps present below)
  vxlan      `vxlan<vni>`     kernel VXLAN device for the app's VNI, attached to the leaf's
                              OVS bridge with the app's VLAN tag; `flood` = VTEPs of the other
                              leaves where the app is present (the reconciler is the control plane)
  gateway    `gw<vlan>`       anycast gateway of the segment (same IP and MAC on every leaf);
                              `mac_guard`: the leaf admits frames with the anycast MAC as source
                              only from its own gateway port (no MAC flap over VXLAN)
  host-route `<ip>/32`        on a leaf where the app is present, a route to each instance of the
                              app that hangs off another leaf, via that leaf's VTEP (routed
                              underlay): inter-app traffic routed by the anycast gateway reaches
                              instances under other leaves without ARP across the VXLAN (the
                              gateways' MAC never leaves its leaf)
Fabric resources (app ''):
  bgp        `<asn>`          FRR BGP instance: router-id = VTEP, announces the VTEP /32,
                              unnumbered neighbours on `netintent_fabric_ports`
"""
from __future__ import annotations

from typing import Any

from reconciler.compile.context import CompileContext, iter_instances
from reconciler.diff import Normalizer
from reconciler.intents.models import Application
from reconciler.model import Layer, Resource, ResourceKey

# What the leaf reports beyond the intent: OVSDB row ids. VXLAN flood lists, BGP networks and
# neighbours, and a port's `trunks` have no order.
NORMALIZER = Normalizer(volatile={"*": ("_uuid",)}, set_fields=frozenset({"flood", "networks", "neighbors", "trunks"}))


def anycast_mac(vlan: int) -> str:
    # Locally administered, derived from the VLAN so every leaf agrees without coordination.
    return "02:4e:49:00:%02x:%02x" % (vlan >> 8, vlan & 0xFF)


def _key(leaf: str, kind: str, name: str) -> ResourceKey:
    return ResourceKey(Layer.SWITCH, leaf, kind, name)


def leaves_present(app: Application, ctx: CompileContext) -> tuple[str, ...]:
    leaves = set(ctx.leaves_of(app))
    for f in ctx.flows_of(app.name):
        for other in (f.caller.app, f.callee.app):
            if other != app.name and other in ctx.apps:
                leaves.update(ctx.leaves_of(ctx.apps[other]))
    return tuple(sorted(leaves))


def compile_app(app: Application, ctx: CompileContext) -> list[Resource]:
    out: list[Resource] = []
    seg = app.spec.segment
    vlan = seg.vlan_id
    for hv in ctx.hypervisors_of(app):
        leaf = ctx.leaf_of(hv)
        port = ctx.hvar(hv, "netintent_leaf_port")
        if leaf is None or port is None:
            continue
        out.append(Resource(_key(leaf, "vlan-trunk", f"{port}:{vlan}"),
                            {"bridge": str(ctx.hvar(leaf, "netintent_bridge", "br0")), "port": str(port),
                             "vlan": vlan}, app.name))
    leaves = leaves_present(app, ctx)
    vteps = {lf: str(ctx.hvar(lf, "netintent_vtep", "")) for lf in leaves}
    for leaf in leaves:
        bridge = str(ctx.hvar(leaf, "netintent_bridge", "br0"))
        out.append(Resource(_key(leaf, "vxlan", f"vxlan{seg.vni}"),
                            {"bridge": bridge, "vni": seg.vni, "vlan": vlan, "local": vteps[leaf],
                             "dstport": 4789,
                             "flood": sorted(v for lf, v in vteps.items() if lf != leaf and v)}, app.name))
        out.append(Resource(_key(leaf, "gateway", f"gw{vlan}"),
                            {"bridge": bridge, "vlan": vlan, "address": seg.gateway_address,
                             "prefixlen": seg.network.prefixlen, "mac": anycast_mac(vlan),
                             "mac_guard": True}, app.name))
    where: dict[str, str] = {}
    for _s, _svc, inst in iter_instances(app):
        inst_hv = ctx.hypervisor_of(inst.host)
        lf = ctx.leaf_of(inst_hv) if inst_hv else None
        if lf:
            where[inst.address] = lf
    for leaf in leaves:
        for addr, lf in sorted(where.items()):
            if lf != leaf and vteps.get(lf):
                out.append(Resource(_key(leaf, "host-route", f"{addr}/32"),
                                    {"prefix": f"{addr}/32", "nexthop": vteps[lf]}, app.name))
    return out


def compile_fabric(ctx: CompileContext) -> list[Resource]:
    out = []
    for leaf in ctx.inventory.group("switches"):
        asn: Any = leaf.vars.get("netintent_asn")    # validated by the inventory loader
        vtep: Any = leaf.vars.get("netintent_vtep")
        fabric_ports: Any = leaf.vars.get("netintent_fabric_ports") or []
        if asn is None or vtep is None:
            continue
        out.append(Resource(_key(leaf.name, "bgp", str(asn)),
                            {"asn": int(asn), "router_id": str(vtep), "networks": [f"{vtep}/32"],
                             "neighbors": sorted(str(p) for p in fabric_ports)},
                            ""))
    return out
