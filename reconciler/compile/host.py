"""Compile one application into host-layer resources (nftables, addresses, routes).

Contract: pure. For every host carrying instances of `app`:
  address   `<iface>:<ip>`         the instance address on the host's interface toward its hypervisor
  route     `<destination cidr>`   routes to the subnets of applications this app talks to across
                                   segments (either direction), via the app's own gateway
  nft-set   `netintent_<app>/<set>` identity -> addresses sets (elements sorted), one per
                                   (local service, port) of allowed callers, plus `local_<svc>`
  nft-table `netintent_<app>`      table inet netintent_<app>: one input chain, default deny for
                                   the app's instance addresses, allows by source set, named
                                   counters on each (service, port)'s accept and drop rule; the
                                   default-deny resource (model.DEFAULT_DENY_KEYS): no ignore rule
                                   may keep it from being created
Rules are structured dicts, not nft text, so the driver renders them in one place and
parses `nft -j` back into the same shape.
`NORMALIZER`: the volatile and set-valued fields of what `nft -j` reports (see reconciler.diff).
"""
from __future__ import annotations

from reconciler.compile import workload_files
from reconciler.compile.context import CompileContext, ServiceRef, iter_instances
from reconciler.diff import Normalizer
from reconciler.intents.models import Application, Instance, Service
from reconciler.model import OWNER, Layer, Resource, ResourceKey
from reconciler.names import nft_ident, nft_set_name, svc_set_name

# What `nft -j list ruleset` reports beyond the intent: every object's `handle`, and the values of
# counters (`packets`, `bytes`: the driver's parser already leaves them out of a table; a snapshot
# may carry them). Set elements and a rule's `ct_state` flags have no order.
NORMALIZER = Normalizer(volatile={"*": ("handle", "packets", "bytes")}, set_fields=frozenset({"elements", "ct_state"}))


# Telemetry counters (docs/telemetry.md), part of the table so drift and repair cover them: a named
# counter on each (service, port)'s accept and drop rule and on the final drop; the drop rules also
# record (source, destination, port) in the dynamic set `refused` (one counter per element, bounded
# in size and age) so a refused caller can be named.
REFUSED_SET = "refused"
REFUSED_SPEC = {"size": 4096, "timeout": 3600}
DROP_OTHER = "drop_other"


def accept_counter(service: str, port: str) -> str:
    return f"acc_{nft_ident(service)}_{nft_ident(port)}"


def drop_counter(service: str, port: str) -> str:
    return f"drop_{nft_ident(service)}_{nft_ident(port)}"


def table_name(app: str) -> str:
    return f"{OWNER}_{app.replace('-', '_')}"


def _key(host: str, kind: str, name: str) -> ResourceKey:
    return ResourceKey(Layer.HOST, host, kind, name)


def compile_app(app: Application, ctx: CompileContext) -> list[Resource]:
    by_host: dict[str, list[tuple[str, Service, Instance]]] = {}
    for sname, svc, inst in iter_instances(app):
        by_host.setdefault(inst.host, []).append((sname, svc, inst))
    # Subnets of apps this app exchanges traffic with (both directions need a route back).
    peers = sorted({f.callee.app for f in ctx.outbound(app.name)} | {f.caller.app for f in ctx.inbound(app.name)})
    peer_subnets = sorted({str(ctx.apps[p].spec.segment.network) for p in peers if p != app.name and p in ctx.apps})
    out: list[Resource] = []
    for host in sorted(by_host):
        out.extend(_host_resources(app, ctx, host, by_host[host], peer_subnets))
    return out + workload_files.compile_app(app, ctx)  # xDS bootstrap + SPIFFE files (workload_files.py)


def _host_resources(app: Application, ctx: CompileContext, host: str,
                    instances: list[tuple[str, Service, Instance]], peer_subnets: list[str]) -> list[Resource]:
    """The app's addresses, nft sets, nft table and routes on one host."""
    out: list[Resource] = []
    table = table_name(app.name)
    seg = app.spec.segment
    iface = str(ctx.hvar(host, "netintent_interface", "eth1"))
    sets: dict[str, list[str]] = {}
    for sname, _svc, inst in instances:
        ifc = inst.interface or iface
        out.append(Resource(_key(host, "address", f"{ifc}:{inst.address}"),
                            {"interface": ifc, "address": inst.address, "prefixlen": seg.network.prefixlen}, app.name))
        sets.setdefault("local", []).append(inst.address)
        sets.setdefault(svc_set_name(sname), []).append(inst.address)
    accepts, drops = _port_rules(app, ctx, sorted({s for s, _, _ in instances}), sets)
    # Established first; per-(service, port) drops after every accept (two services may share an
    # address), then the rest.
    rules: list[dict] = [{"match": {"daddr_set": "local", "ct_state": ["established", "related"]},
                          "verdict": "accept"}, *accepts, *drops,
                         {"match": {"daddr_set": "local"}, "counter": DROP_OTHER, "verdict": "drop"}]
    for set_name in sorted(sets):
        out.append(Resource(_key(host, "nft-set", f"{table}/{set_name}"),
                            {"family": "inet", "table": table, "name": set_name, "type": "ipv4_addr",
                             "elements": sorted(set(sets[set_name]))}, app.name))
    out.append(Resource(_key(host, "nft-table", table),
                        {"family": "inet", "name": table,
                         "chains": {"input": {"type": "filter", "hook": "input", "priority": 0,
                                              "policy": "accept", "rules": rules}},
                         "counters": sorted({r["counter"] for r in rules if "counter" in r}),
                         "refused": dict(REFUSED_SPEC)},
                        app.name))
    # Routes leave by an interface that carries the app's segment on this host (the gateway
    # is only on-link there), not by the host's default interface.
    route_ifc = min(inst.interface or iface for _, _, inst in instances)
    for dest in peer_subnets:
        out.append(Resource(_key(host, "route", dest),
                            {"destination": dest, "gateway": seg.gateway_address, "interface": route_ifc},
                            app.name))
    return out


def _port_rules(app: Application, ctx: CompileContext, snames: list[str],
                sets: dict[str, list[str]]) -> tuple[list[dict], list[dict]]:
    """Per local service and port: the set of allowed callers (added to `sets`), the rule that
    accepts them and the rule that drops every other source."""
    accepts: list[dict] = []
    drops: list[dict] = []
    for sname in snames:
        for port in app.spec.services[sname].ports:
            callers: set[str] = set()
            for f in ctx.inbound(app.name):
                if f.callee == ServiceRef(app.name, sname) and port.name in f.ports:
                    callers.update(ctx.addresses(f.caller))
            set_name = nft_set_name(sname, port.name)
            sets[set_name] = sorted(callers)
            accepts.append({"match": {"saddr_set": set_name, "daddr_set": svc_set_name(sname),
                                      "protocol": port.protocol, "dport": port.port},
                            "counter": accept_counter(sname, port.name), "verdict": "accept"})
            drops.append({"match": {"daddr_set": svc_set_name(sname), "protocol": port.protocol, "dport": port.port},
                          "update_set": REFUSED_SET, "counter": drop_counter(sname, port.name), "verdict": "drop"})
    return accepts, drops
