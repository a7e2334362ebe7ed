"""The scope of verification: sources, destinations and what the intents allow (pure).

Contract: `Scope.of(repo)` lists every instance of every service of every application as a
`Source` (address, host, interface, identity), plus `OUTSIDE`, an address outside every
segment that enters the fabric at the destination's leaf; and every (instance, port) of every
service as a `Dest`. `allowed(src, dst)` is True exactly when a policy flow (resolved by the
compile's FlowIndex, so cross-application flows through exports are included) lets the
source's service call the destination's service on that port. `dests(apps)` are the
destinations of `apps` (all when empty), then the destinations `apps` are allowed to call in
other applications (`outbound=True`: only the callers of `apps` are verified there).
`identities` maps certificate provider names (`<service>.<app>`) to the SPIFFE identity the host
layer issues. `selected` says whether the intents' traffic split sends calls to an instance.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Mapping

from reconciler.compile.context import CompileContext
from reconciler.compile.sidecar import provider_name, target_authority
from reconciler.intents.models import Application, IntentRepo, Traffic

OUTSIDE_ADDRESS = "203.0.113.77"       # TEST-NET-3: outside every segment


@dataclass(frozen=True)
class Source:
    app: str
    service: str
    address: str
    host: str | None
    iface: str | None
    identity: str | None

    @property
    def id(self) -> str:
        return f"{self.app}/{self.service}@{self.address}" if self.app else f"outside@{self.address}"


OUTSIDE = Source("", "", OUTSIDE_ADDRESS, None, None, None)


@dataclass(frozen=True)
class Dest:
    app: str
    service: str
    address: str
    host: str
    iface: str
    port: int
    port_name: str
    proto: str
    identity: str
    authority: str
    selected: bool
    outbound: bool = False

    @property
    def id(self) -> str:
        return f"{self.app}/{self.service}@{self.address}:{self.port}"


@dataclass
class Scope:
    sources: list[Source] = field(default_factory=list)
    by_service: dict[tuple[str, str], list[Source]] = field(default_factory=dict)
    by_address: dict[str, list[Source]] = field(default_factory=dict)
    by_identity: dict[str, list[Source]] = field(default_factory=dict)
    by_host: dict[str, list[Source]] = field(default_factory=dict)
    dests_of: dict[str, list[Dest]] = field(default_factory=dict)
    callers: dict[tuple[str, str, str], frozenset[tuple[str, str]]] = field(default_factory=dict)
    outbound: dict[str, set[tuple[str, str]]] = field(default_factory=dict)   # app -> callee services
    identities: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, repo: IntentRepo) -> "Scope":
        s = cls()
        ctx = CompileContext.of(repo)
        td = repo.config.trust_domain
        callers: dict[tuple[str, str, str], set[tuple[str, str]]] = {}
        for f in ctx.flows:
            for p in f.ports:
                callers.setdefault((f.callee.app, f.callee.service, p), set()).add((f.caller.app, f.caller.service))
            s.outbound.setdefault(f.caller.app, set()).add((f.callee.app, f.callee.service))
        s.callers = {k: frozenset(v) for k, v in callers.items()}
        for name in sorted(repo.apps):
            s._add_app(repo, ctx, name, td)
        return s

    def _add_app(self, repo: IntentRepo, ctx: CompileContext, name: str, td: str) -> None:
        app = repo.apps[name]
        dests = self.dests_of.setdefault(name, [])
        for sname in sorted(app.spec.services):
            self._add_service(ctx, app, sname, td, dests)

    def _add_service(self, ctx: CompileContext, app: Application, sname: str, td: str, dests: list[Dest]) -> None:
        name, svc = app.name, app.spec.services[sname]
        for inst in svc.instances:
            identity = app.identity_of(sname, td)
            self.identities[provider_name(name, sname)] = identity
            iface = inst.interface or str(ctx.hvar(inst.host, "netintent_interface", "eth1"))
            src = Source(name, sname, inst.address, inst.host, iface, identity)
            self.sources.append(src)
            self.by_service.setdefault((name, sname), []).append(src)
            self.by_address.setdefault(inst.address, []).append(src)
            self.by_identity.setdefault(identity, []).append(src)
            self.by_host.setdefault(inst.host, []).append(src)
            split = (app.spec.traffic.get(sname) or Traffic()).split
            selected = split is None or int(split.get(inst.version, 0)) > 0
            for port in svc.ports:
                dests.append(Dest(name, sname, inst.address, inst.host, iface, port.port, port.name, port.protocol,
                                  identity, target_authority(name, sname, port.port), selected))

    def allowed(self, src: Source, dst: Dest) -> bool:
        return (src.app, src.service) in self.callers.get((dst.app, dst.service, dst.port_name), ())

    def allowed_sources(self, dst: Dest) -> list[Source]:
        return [s for key in sorted(self.callers.get((dst.app, dst.service, dst.port_name), ()))
                for s in self.by_service.get(key, ())]

    def dests(self, apps: Iterable[str] = ()) -> list[Dest]:
        wanted = sorted(set(apps)) or sorted(self.dests_of)
        out = [d for a in wanted for d in self.dests_of.get(a, ())]
        if set(apps):
            mine = set(wanted)
            callee = sorted({c for a in wanted for c in self.outbound.get(a, ()) if c[0] not in mine})
            out += [_outbound(d) for a, svc in callee for d in self.dests_of.get(a, ()) if d.service == svc]
        return out


def _outbound(d: Dest) -> Dest:
    return Dest(**{**d.__dict__, "outbound": True})


def sources_in(scope: Scope, addresses: Iterable[str]) -> list[Source]:
    return [s for a in addresses for s in scope.by_address.get(a, ())]


def identities_of(scope: Scope) -> Mapping[str, str]:
    return scope.identities
