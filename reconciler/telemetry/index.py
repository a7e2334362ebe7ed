"""Which device counter belongs to which application (pure).

Contract: `build_index(repo, desired)` reads the intents (`IntentRepo`) and the compiled desired
state and returns an `Index`. Only counters of resources the reconciler wants and owns are in it:
- host: the named counters of each owned table `netintent_<app>` (compile/host.py names them per
  (service, port) and verdict) -> TRAFFIC labels; elements of the table's `refused` set are
  attributed by `refused_labels` (destination address -> service, port number -> port name,
  source address -> the app owning that instance address, else `external`);
- hypervisor: each desired flow (by target, cookie and `priority=...,match`) -> TRAFFIC labels
  (access-port flows: accept, with the service of `nw_src`/`arp_spa`; the anti-spoofing drop:
  drop, plus DROP labels with the port's own app as source; uplink VLAN flows: rx);
- switch: each desired VXLAN device (by leaf and name) -> its app (rx/tx).
`apps_on[(layer, target)]` is the apps with counters on a target (for unknown shares).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

from reconciler.model import Layer, Resource
from reconciler.telemetry.model import EXTERNAL, Kind, Labels, Verdict

HOST, HYPERVISOR, SWITCH = Layer.HOST.value, Layer.HYPERVISOR.value, Layer.SWITCH.value


@dataclass
class Index:
    host_counters: dict[tuple[str, str, str], Labels] = field(default_factory=dict)   # (host, table, counter)
    host_tables: dict[tuple[str, str], str] = field(default_factory=dict)             # (host, table) -> app
    flows: dict[tuple[str, int, str], tuple[Labels, ...]] = field(default_factory=dict)  # (hv, cookie, name)
    vxlans: dict[tuple[str, str], str] = field(default_factory=dict)                  # (leaf, ifname) -> app
    service_of: dict[tuple[str, str], str] = field(default_factory=dict)              # (app, address) -> service
    port_name: dict[tuple[str, str, int], str] = field(default_factory=dict)          # (app, svc, number) -> port
    app_of_address: dict[str, str] = field(default_factory=dict)
    apps_on: dict[tuple[str, str], set[str]] = field(default_factory=dict)

    def refused_labels(self, host: str, table: str, saddr: str, daddr: str, dport: int) -> Labels | None:
        app = self.host_tables.get((host, table))
        if app is None:
            return None
        svc = self.service_of.get((app, daddr), "")
        port = self.port_name.get((app, svc, dport)) or str(dport)
        return Labels(app, svc, port, Verdict.DROP.value, self.app_of_address.get(saddr, EXTERNAL), Kind.DROP)


def build_index(repo: Any, desired: Iterable[Resource]) -> Index:
    from reconciler.compile.host import DROP_OTHER, accept_counter, drop_counter, table_name
    ix = Index()
    for app in repo.apps.values():
        table = table_name(app.name)
        for sname, svc in app.spec.services.items():
            for port in svc.ports:
                ix.port_name.setdefault((app.name, sname, port.port), port.name)
            for inst in svc.instances:
                ix.service_of[(app.name, inst.address)] = sname
                ix.app_of_address.setdefault(inst.address, app.name)
                ix.host_tables[(inst.host, table)] = app.name
                ix.host_counters[(inst.host, table, DROP_OTHER)] = Labels(app.name, "", "", Verdict.DROP.value)
                for port in svc.ports:
                    ix.host_counters[(inst.host, table, accept_counter(sname, port.name))] = \
                        Labels(app.name, sname, port.name, Verdict.ACCEPT.value)
                    ix.host_counters[(inst.host, table, drop_counter(sname, port.name))] = \
                        Labels(app.name, sname, port.name, Verdict.DROP.value)
    desired = list(desired)
    wanted_tables = {(r.key.target, r.key.name) for r in desired if r.key.kind == "nft-table"}
    for key in [k for k in ix.host_counters if (k[0], k[1]) not in wanted_tables]:
        del ix.host_counters[key]     # a host the compile gave no table (e.g. no hypervisor): nothing to read
    for (host, table) in wanted_tables:
        if (host, table) in ix.host_tables:
            ix.apps_on.setdefault((HOST, host), set()).add(ix.host_tables[(host, table)])
    for r in desired:
        if not r.app:
            continue          # fabric state (the uplink's drop of unknown VLANs) is nobody's
        if r.key.layer is Layer.HYPERVISOR and r.key.kind == "ovs-flow":
            ix.flows[(r.key.target, int(r.spec["cookie"]), r.key.name)] = _flow_labels(ix, r)
            ix.apps_on.setdefault((HYPERVISOR, r.key.target), set()).add(r.app)
        elif r.key.layer is Layer.SWITCH and r.key.kind == "vxlan":
            ix.vxlans[(r.key.target, r.key.name)] = r.app
            ix.apps_on.setdefault((SWITCH, r.key.target), set()).add(r.app)
    return ix


def _flow_labels(ix: Index, r: Resource) -> tuple[Labels, ...]:
    match = dict(p.partition("=")[::2] for p in str(r.spec["match"]).split(","))
    if str(r.spec["actions"]) == "drop":
        return (Labels(r.app, "", "", Verdict.DROP.value),
                Labels(r.app, "", "", Verdict.DROP.value, r.app, Kind.DROP))
    if "dl_vlan" in match:
        return (Labels(r.app, "", "", Verdict.RX.value),)
    addr = match.get("nw_src") or match.get("arp_spa") or ""
    return (Labels(r.app, ix.service_of.get((r.app, addr), ""), "", Verdict.ACCEPT.value),)

