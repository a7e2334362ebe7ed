"""What a per-layer compiler may know besides its own application.

Contract: `CompileContext` is built once per compile from the whole `IntentRepo` and is
immutable. Per-layer compilers are pure functions `compile_app(app, ctx) -> list[Resource]`
and may only read, besides `app`, what `ctx` offers. `ctx.related(app)` names the other
applications whose content can change `app`'s output (services it calls and apps that call
it), which is what the incremental cache keys on.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Iterable, Mapping

from reconciler.intents.models import Application, Instance, IntentRepo, Inventory, InventoryHost, RepoConfig, Service


@dataclass(frozen=True)
class ServiceRef:
    app: str
    service: str

    @classmethod
    def parse(cls, text: str, default_app: str) -> "ServiceRef":
        if "/" in text:
            a, s = text.split("/", 1)
            return cls(a, s)
        return cls(default_app, text)

    def __str__(self) -> str:
        return f"{self.app}/{self.service}"


@dataclass(frozen=True)
class Flow:
    """One allowed flow, resolved: caller service -> callee service on named ports."""

    caller: ServiceRef
    callee: ServiceRef
    ports: tuple[str, ...]  # port names of the callee; resolved from None to all ports
    declared_in: str        # app whose policy declared it


@dataclass(frozen=True, eq=False)
class CompileContext:
    config: RepoConfig
    inventory: Inventory
    apps: Mapping[str, Application] = field(default_factory=dict)

    @classmethod
    def of(cls, repo: IntentRepo) -> "CompileContext":
        return cls(repo.config, repo.inventory, repo.apps)

    # ---- cross-application view -------------------------------------------------
    @cached_property
    def flows(self) -> tuple[Flow, ...]:
        out: list[Flow] = []
        for name in sorted(self.apps):
            app = self.apps[name]
            for rule in app.spec.policy.allow:
                caller = ServiceRef.parse(rule.from_, name)
                callee = ServiceRef.parse(rule.to, name)
                callee_app = self.apps.get(callee.app)
                if callee_app is None or callee.service not in callee_app.spec.services:
                    continue  # validate reports it; compile stays total
                svc = callee_app.spec.services[callee.service]
                ports = rule.ports if rule.ports is not None else tuple(p.name for p in svc.ports)
                out.append(Flow(caller, callee, tuple(ports), name))
        return tuple(out)

    @cached_property
    def _flows_by_app(self) -> Mapping[str, tuple[Flow, ...]]:
        index: dict[str, list[Flow]] = {}
        for f in self.flows:
            for a in {f.caller.app, f.callee.app, f.declared_in}:
                index.setdefault(a, []).append(f)
        return {k: tuple(v) for k, v in index.items()}

    def flows_of(self, app: str) -> tuple[Flow, ...]:
        """Flows where `app` is caller, callee or the declaring application."""
        return self._flows_by_app.get(app, ())

    def inbound(self, app: str) -> tuple[Flow, ...]:
        return tuple(f for f in self.flows_of(app) if f.callee.app == app)

    def outbound(self, app: str) -> tuple[Flow, ...]:
        return tuple(f for f in self.flows_of(app) if f.caller.app == app)

    @cached_property
    def _related(self) -> Mapping[str, tuple[str, ...]]:
        index: dict[str, set[str]] = {}
        for f in self.flows:
            group = {f.caller.app, f.callee.app, f.declared_in}
            for a in group:
                index.setdefault(a, set()).update(group)
        return {a: tuple(sorted(n for n in names if n != a and n in self.apps)) for a, names in index.items()}

    def related(self, app: str) -> tuple[str, ...]:
        return self._related.get(app, ())

    def service(self, ref: ServiceRef):
        app = self.apps.get(ref.app)
        return None if app is None else app.spec.services.get(ref.service)

    def addresses(self, ref: ServiceRef) -> tuple[str, ...]:
        svc = self.service(ref)
        return () if svc is None else tuple(i.address for i in svc.instances)

    def identity(self, ref: ServiceRef) -> str:
        return self.apps[ref.app].identity_of(ref.service, self.config.trust_domain)

    # ---- inventory helpers ----------------------------------------------------------
    def host(self, name: str) -> InventoryHost | None:
        return self.inventory.hosts.get(name)

    def hvar(self, name: str, var: str, default: object = None) -> object:
        h = self.inventory.hosts.get(name)
        return default if h is None else h.vars.get(var, default)

    def hosts_of(self, app: Application) -> tuple[str, ...]:
        return tuple(sorted({i.host for s in app.spec.services.values() for i in s.instances}))

    def hypervisor_of(self, host: str) -> str | None:
        v = self.hvar(host, "netintent_hypervisor")
        return str(v) if v else None

    def leaf_of(self, hypervisor: str) -> str | None:
        v = self.hvar(hypervisor, "netintent_leaf")
        return str(v) if v else None

    def hypervisors_of(self, app: Application) -> tuple[str, ...]:
        return tuple(sorted({hv for h in self.hosts_of(app) if (hv := self.hypervisor_of(h))}))

    def leaves_of(self, app: Application) -> tuple[str, ...]:
        return tuple(sorted({lf for hv in self.hypervisors_of(app) if (lf := self.leaf_of(hv))}))


def iter_instances(app: Application) -> Iterable[tuple[str, Service, Instance]]:
    """(service name, Service, Instance) for every instance of the app, in stable order."""
    for sname in sorted(app.spec.services):
        svc = app.spec.services[sname]
        for inst in svc.instances:
            yield sname, svc, inst
