"""Compile one application into host-layer resources (nftables, addresses, routes).

Contract: pure. For every host carrying instances of `app`:
  address   `<iface>:<ip>`         the instance address on the host's interface toward its hypervisor
  route     `<destination cidr>`   routes to the subnets of applications this app talks to across
                                   segments (either direction), via the app's own gateway
  nft-set   `netintent_<app>/<set>` identity -> addresses sets (elements sorted), one per
                                   (local service, port) of allowed callers, plus `local_<svc>`
  nft-table `netintent_<app>`      table inet netintent_<app>: one input chain, default deny for
                                   the app's instance addresses, allows by source set
Rules are structured dicts, not nft text, so the driver renders them in one place and
parses `nft -j` back into the same shape.
"""
from __future__ import annotations

from reconciler.compile.context import CompileContext, ServiceRef, iter_instances
from reconciler.intents.models import Application
from reconciler.model import OWNER, Layer, Resource, ResourceKey


def table_name(app: str) -> str:
    return f"{OWNER}_{app.replace('-', '_')}"


def _key(host: str, kind: str, name: str) -> ResourceKey:
    return ResourceKey(Layer.HOST, host, kind, name)


def compile_app(app: Application, ctx: CompileContext) -> list[Resource]:
    out: list[Resource] = []
    table = table_name(app.name)
    seg = app.spec.segment
    prefixlen = seg.network.prefixlen
    by_host: dict[str, list[tuple[str, object, object]]] = {}
    for sname, svc, inst in iter_instances(app):
        by_host.setdefault(inst.host, []).append((sname, svc, inst))

    # Subnets of apps this app exchanges traffic with (both directions need a route back).
    peers = sorted({f.callee.app for f in ctx.outbound(app.name)} | {f.caller.app for f in ctx.inbound(app.name)})
    peer_subnets = sorted({str(ctx.apps[p].spec.segment.network) for p in peers if p != app.name and p in ctx.apps})

    for host in sorted(by_host):
        iface = str(ctx.hvar(host, "netintent_interface", "eth1"))
        sets: dict[str, list[str]] = {}
        rules: list[dict] = [
            {"match": {"daddr_set": "local", "ct_state": ["established", "related"]}, "verdict": "accept"},
        ]
        for sname, svc, inst in by_host[host]:
            ifc = inst.interface or iface
            out.append(Resource(_key(host, "address", f"{ifc}:{inst.address}"),
                                {"interface": ifc, "address": inst.address, "prefixlen": prefixlen}, app.name))
            sets.setdefault("local", []).append(inst.address)
            sets.setdefault(f"svc_{sname}", []).append(inst.address)
        for sname in sorted({s for s, _, _ in by_host[host]}):
            svc = app.spec.services[sname]
            for port in svc.ports:
                callers: set[str] = set()
                for f in ctx.inbound(app.name):
                    if f.callee == ServiceRef(app.name, sname) and port.name in f.ports:
                        callers.update(ctx.addresses(f.caller))
                set_name = f"allow_{sname}_{port.name}"
                sets[set_name] = sorted(callers)
                rules.append({"match": {"saddr_set": set_name, "daddr_set": f"svc_{sname}",
                                        "protocol": port.protocol, "dport": port.port},
                              "verdict": "accept"})
        rules.append({"match": {"daddr_set": "local"}, "verdict": "drop"})
        for set_name in sorted(sets):
            out.append(Resource(_key(host, "nft-set", f"{table}/{set_name}"),
                                {"family": "inet", "table": table, "name": set_name, "type": "ipv4_addr",
                                 "elements": sorted(set(sets[set_name]))}, app.name))
        out.append(Resource(_key(host, "nft-table", table),
                            {"family": "inet", "name": table,
                             "chains": {"input": {"type": "filter", "hook": "input", "priority": 0,
                                                  "policy": "accept", "rules": rules}}},
                            app.name))
        for dest in peer_subnets:
            out.append(Resource(_key(host, "route", dest),
                                {"destination": dest, "gateway": seg.gateway_address, "interface": iface},
                                app.name))
    return out
