"""What a per-layer compiler may know besides its own application.

Contract: `CompileContext` is built once per compile from the whole `IntentRepo` and is
immutable. Per-layer compilers are pure functions `compile_app(app, ctx) -> list[Resource]`
and may only read, besides `app`, what `ctx` offers. `ctx.related(app)` names the other
applications whose content can change `app`'s output (services it calls and apps that call
it), which is what the incremental compile follows.
The flows across applications live in a `FlowIndex` (immutable, per application). Built from
scratch it costs one pass over all apps; `FlowIndex.evolve(apps, names)` derives the index of
a repo in which only `names` were added, removed or changed, at a cost that follows those apps
and their partners (never a pass over all apps): the `Compiler` hands that to the context.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Iterable, Mapping

from reconciler.intents.models import Application, Instance, IntentRepo, Inventory, InventoryHost, RepoConfig, Service
from reconciler.model import PersistentMap


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


def _parties(f: Flow) -> set[str]:
    return {f.caller.app, f.callee.app, f.declared_in}


def _declare(name: str, apps: Mapping[str, Application]) -> tuple[tuple[Flow, ...], frozenset[str]]:
    """The flows app `name`'s policy declares, resolved against `apps`, and the other apps its
    rules name (resolved or not: adding, changing or removing one of those re-resolves `name`)."""
    out: list[Flow] = []
    named: set[str] = set()
    for rule in apps[name].spec.policy.allow:
        caller = ServiceRef.parse(rule.from_, name)
        callee = ServiceRef.parse(rule.to, name)
        named.update((caller.app, callee.app))
        callee_app = apps.get(callee.app)
        if callee_app is None or callee.service not in callee_app.spec.services:
            continue  # validate reports it; compile stays total
        svc = callee_app.spec.services[callee.service]
        ports = rule.ports if rule.ports is not None else tuple(p.name for p in svc.ports)
        out.append(Flow(caller, callee, tuple(ports), name))
    named.discard(name)
    return tuple(out), frozenset(named)


_EMPTY = PersistentMap()


@dataclass(frozen=True, eq=False)
class FlowIndex:
    """The policy flows of a set of apps, per application (all maps immutable, shared between
    an index and the ones derived from it).

    `declared`: app -> the flows its own policy declares, in rule order;
    `named`: app -> the other apps its rules name; `named_by`: app -> the apps whose rules name it;
    `touching`: app -> the flows where it is caller, callee or declarer, by declarer then rule
    (an app that is named but absent has entries too: adding it must find its partners)."""

    declared: PersistentMap = _EMPTY  # str -> tuple[Flow, ...]
    named: PersistentMap = _EMPTY     # str -> frozenset[str]
    named_by: PersistentMap = _EMPTY  # str -> frozenset[str]
    touching: PersistentMap = _EMPTY  # str -> tuple[Flow, ...]

    @classmethod
    def of(cls, apps: Mapping[str, Application]) -> "FlowIndex":
        """The index of `apps`, from scratch: one pass over every app's policy."""
        declared: dict[str, tuple[Flow, ...]] = {}
        named: dict[str, frozenset[str]] = {}
        named_by: dict[str, set[str]] = {}
        touching: dict[str, list[Flow]] = {}
        for a in sorted(apps):
            flows, names = _declare(a, apps)
            if flows:
                declared[a] = flows
            if names:
                named[a] = names
                for t in names:
                    named_by.setdefault(t, set()).add(a)
            for f in flows:
                for p in _parties(f):
                    touching.setdefault(p, []).append(f)
        return cls(PersistentMap(declared), PersistentMap(named),
                   PersistentMap({t: frozenset(s) for t, s in named_by.items()}),
                   PersistentMap({p: tuple(fs) for p, fs in touching.items()}))

    def evolve(self, apps: Mapping[str, Application], names: Iterable[str]) -> "FlowIndex":
        """The index of `apps`, given that it differs from this index's apps in `names` only
        (added, removed or changed). Cost: those apps, the apps naming them, and their flows."""
        redo: set[str] = set()
        for n in names:
            redo.add(n)
            redo.update(self.named_by.get(n, ()))
        new = {a: _declare(a, apps) if a in apps else ((), frozenset()) for a in sorted(redo)}
        named_by: dict[str, set[str]] = {}
        added: dict[str, list[Flow]] = {}
        for a, (flows, named) in new.items():
            old = self.named.get(a, frozenset())
            for t in old ^ named:
                s = named_by.setdefault(t, set(self.named_by.get(t, ())))
                if t in named:
                    s.add(a)
                else:
                    s.discard(a)
            for f in self.declared.get(a, ()):
                for p in _parties(f):
                    added.setdefault(p, [])
            for f in flows:
                for p in _parties(f):
                    added.setdefault(p, []).append(f)
        touching = {}
        for p, fresh in added.items():
            kept = [f for f in self.touching.get(p, ()) if f.declared_in not in redo]
            # stable: flows of one declarer keep their rule order, declarers come sorted
            touching[p] = tuple(sorted(kept + fresh, key=lambda f: f.declared_in))
        return FlowIndex(
            self.declared.evolve((a for a, (f, _) in new.items() if not f), ((a, f) for a, (f, _) in new.items() if f)),
            self.named.evolve((a for a, (_, n) in new.items() if not n), ((a, n) for a, (_, n) in new.items() if n)),
            self.named_by.evolve((t for t, s in named_by.items() if not s),
                                 ((t, frozenset(s)) for t, s in named_by.items() if s)),
            self.touching.evolve((p for p, t in touching.items() if not t), ((p, t) for p, t in touching.items() if t)))

    def flows_of(self, app: str) -> tuple[Flow, ...]:
        return self.touching.get(app, ())

    def partners(self, app: str) -> set[str]:
        """Every other app in a flow with `app` (present or not)."""
        out = {p for f in self.touching.get(app, ()) for p in _parties(f)}
        out.discard(app)
        return out

    def all(self) -> tuple[Flow, ...]:
        return tuple(f for a in sorted(self.declared) for f in self.declared[a])


@dataclass(frozen=True, eq=False)
class CompileContext:
    config: RepoConfig
    inventory: Inventory
    apps: Mapping[str, Application] = field(default_factory=dict)
    # The flows of `apps` when the caller keeps them (Compiler); built from `apps` otherwise.
    flow_index: FlowIndex | None = None

    @classmethod
    def of(cls, repo: IntentRepo) -> "CompileContext":
        return cls(repo.config, repo.inventory, repo.apps)

    # ---- cross-application view -------------------------------------------------
    @cached_property
    def _flows(self) -> FlowIndex:
        return self.flow_index if self.flow_index is not None else FlowIndex.of(self.apps)

    @cached_property
    def flows(self) -> tuple[Flow, ...]:
        """Every flow, by declaring app then rule order (a pass over all apps: for tools, not compile)."""
        return self._flows.all()

    def flows_of(self, app: str) -> tuple[Flow, ...]:
        """Flows where `app` is caller, callee or the declaring application."""
        return self._flows.flows_of(app)

    def inbound(self, app: str) -> tuple[Flow, ...]:
        return tuple(f for f in self.flows_of(app) if f.callee.app == app)

    def outbound(self, app: str) -> tuple[Flow, ...]:
        return tuple(f for f in self.flows_of(app) if f.caller.app == app)

    def related(self, app: str) -> tuple[str, ...]:
        return tuple(sorted(n for n in self._flows.partners(app) if n in self.apps))

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

    @cached_property
    def _hosts(self) -> Mapping[str, InventoryHost]:
        return self.inventory.hosts  # one attribute less on the most frequent question (hvar)

    def hvar(self, name: str, var: str, default: object = None) -> object:
        h = self._hosts.get(name)
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
