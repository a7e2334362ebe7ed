"""Incremental verification: keep the model, its indexes and every destination's verdicts, and
recompute only the destinations whose observed resources changed (pure, no device).

Contract: `Incremental(repo, resources, unobserved, layers)` verifies everything once (what
`reconciler verify` computes) and records, for every destination, the exact set of model
entries its evaluation read (a *dependency*: `(layer, target)` for a device's view or its
`unobserved` reason, `("ip", address)` for where an address is located, `("nft", host, daddr)`
for a host's nftables as packets to `daddr` see them (nft_deps): a change of a host's nftables
alone recomputes only the destinations that read a table it touches). `update(resources,
unobserved)` compares the new observation with the last one target by target, rebuilds the
views of the targets that changed (Model.rebuild), and re-evaluates only the destinations that
read one of them; `update_targets(changed, unobserved)` does the same when the caller already
knows which targets changed. Both return a `Delta` (destinations recomputed, applications whose
findings changed, seconds). The results equal those of a full verification of the same
resources (tests/unit/test_verify_incremental.py checks that on every mutation it knows).
`findings(app)`, `counts()` and `comparison()` read the current state.
A destination depends only on entries it read: its verdict is a function of them, since the
model is pure and every read goes through the tracked mappings (the evaluation never iterates
over a whole mapping).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from reconciler.intents.models import IntentRepo
from reconciler.model import Layer, Resource
from reconciler.verify import fine_views, nft_deps
from reconciler.verify.addr import no_gc
from reconciler.verify.compare import AppCounts, Comparison, Finding, compare
from reconciler.verify.model import Model
from reconciler.verify.observe import model_of
from reconciler.verify.pairs import Dest
from reconciler.verify.verdict import DestResult, Verifier

Dep = tuple[Any, ...]
TargetKey = tuple[Layer, str]


def _track(m: Model, rec: fine_views.Recorder) -> None:
    """Hosts (but their nftables, per destination address) and sidecar nodes are dependencies as a
    whole; hypervisors and leaves by the part
    a path reads (fine_views): one flow or trunk VLAN touches few destinations, a whole
    hypervisor or leaf many."""
    m.hosts = fine_views.Tracked(Layer.HOST.value, rec, m.hosts)
    for h in dict.values(m.hosts):
        h.rec = rec             # nftables reads are noted per destination address (nft_deps)
    m.nodes = fine_views.Tracked(Layer.SIDECAR.value, rec, m.nodes)
    m.unobserved = fine_views.Tracked("", rec, m.unobserved)
    m.located = fine_views.Tracked("ip", rec, m.located)
    m.gw_at = fine_views.Tracked("ip", rec, m.gw_at)
    for hv in m.hvs.values():
        fine_views.track_hv(hv, rec)
    for lf in m.leaves.values():
        fine_views.track_leaf(lf, rec)


@dataclass
class _Entry:
    result: DestResult
    findings: list[Finding]
    counts: AppCounts
    deps: frozenset[Dep]


@dataclass
class Delta:
    recomputed: int = 0
    targets: int = 0                       # targets whose view was rebuilt
    apps: set[str] = field(default_factory=set)   # applications whose findings or counts changed
    seconds: float = 0.0


def by_target(resources: Iterable[Resource]) -> dict[TargetKey, dict[Any, Resource]]:
    out: dict[TargetKey, dict[Any, Resource]] = {}
    for r in resources:
        out.setdefault((r.key.layer, r.key.target), {})[r.key] = r
    return out


class Incremental:
    def __init__(self, repo: IntentRepo, resources: Iterable[Resource],
                 unobserved: Mapping[tuple[str, str], str] = {}, layers: Iterable[str] | None = None) -> None:
        resources = list(resources)
        self.repo = repo
        self.m, self.scope = model_of(repo, resources, unobserved, layers)
        self._rec = fine_views.Recorder()
        _track(self.m, self._rec)
        self.verifier = Verifier(self.m, self.scope)
        self.observed = by_target(resources)
        self.entries: dict[Dest, _Entry] = {}
        self.index: dict[Dep, set[Dest]] = {}
        self.nft_keys: dict[str, set[tuple]] = {}      # host -> the nftables keys noted on it (nft_deps)
        self.dests_of: dict[str, list[Dest]] = {}
        with no_gc():
            for d in self.scope.dests(()):
                self.dests_of.setdefault(d.app, []).append(d)
                self._evaluate(d)

    # ---- evaluation ------------------------------------------------------------------
    def _evaluate(self, d: Dest) -> bool:
        """(Re-)evaluate one destination and index what it read; True when its findings or counts changed."""
        old = self.entries.get(d)
        self._rec.deps = set()
        try:
            res = self.verifier.dest(d)
            deps = frozenset(self._rec.deps)
        finally:
            self._rec.deps = None
        part = compare([res])
        counts = part.apps.get(d.app) or AppCounts()
        entry = _Entry(res, part.findings, counts, deps)
        if old is not None:
            for dep in old.deps - deps:
                self.index.get(dep, set()).discard(d)
        for dep in deps - (old.deps if old is not None else frozenset()):
            self.index.setdefault(dep, set()).add(d)
            if dep[0] == nft_deps.NFT:
                self.nft_keys.setdefault(dep[1], set()).add(dep[2])
        self.entries[d] = entry
        return old is None or old.counts != counts or _sig(old.findings) != _sig(part.findings)

    # ---- updates ---------------------------------------------------------------------
    def update(self, resources: Iterable[Resource], unobserved: Mapping[tuple[str, str], str] = {}) -> Delta:
        """Compare a whole new observation with the last one and recompute what changed."""
        new = by_target(resources)
        changed = {k: list(v.values()) for k, v in new.items() if self.observed.get(k) != v}
        changed.update({k: [] for k in self.observed.keys() - new.keys()})
        return self.update_targets(changed, unobserved)

    def update_targets(self, changed: Mapping[TargetKey, list[Resource]],
                       unobserved: Mapping[tuple[str, str], str] | None = None) -> Delta:
        """`changed`: every resource now observed on each target that changed."""
        t0 = time.perf_counter()
        deps: set[Dep] = set()
        for (layer, target), rs in changed.items():
            self.observed[(layer, target)] = {r.key: r for r in rs}
            deps |= self._rebuild(layer, target, rs)
        if unobserved is not None:
            um = self.m.unobserved
            assert isinstance(um, dict)
            moved = {k for k in um.keys() | unobserved.keys() if dict.get(um, k) != unobserved.get(k)}
            for k in moved:
                if k in unobserved:
                    dict.__setitem__(um, k, unobserved[k])
                else:
                    dict.pop(um, k, None)
            deps |= moved
        todo = {d for dep in deps for d in self.index.get(dep, ())}
        delta = Delta(recomputed=len(todo), targets=len(changed))
        with no_gc():
            for d in todo:
                if self._evaluate(d):
                    delta.apps.add(d.app)
        delta.seconds = time.perf_counter() - t0
        return delta

    def _rebuild(self, layer: Layer, target: str, rs: list[Resource]) -> set[Dep]:
        """Rebuild one target's view; the dependencies whose value changed."""
        m = self.m
        if layer is Layer.HYPERVISOR and target in m.hvs:
            old_hv = m.hvs[target]
            m.rebuild(layer, target, rs)
            fine_views.track_hv(m.hvs[target], self._rec)
            return fine_views.hv_changes(old_hv, m.hvs[target])
        if layer is Layer.SWITCH and target in m.leaves:
            old_lf = m.leaves[target]
            ips = m.rebuild(layer, target, rs)
            fine_views.track_leaf(m.leaves[target], self._rec)
            return fine_views.leaf_changes(old_lf, m.leaves[target]) | {("ip", ip) for ip in ips}
        if layer is Layer.HOST and target in m.hosts:
            old_h = dict.__getitem__(m.hosts, target)
            ips = m.rebuild(layer, target, rs)
            new_h = dict.__getitem__(m.hosts, target)
            new_h.rec = self._rec
            fine = nft_deps.changes(old_h, new_h, self.nft_keys.get(target, ()))
            whole = {(layer.value, target)} if fine is None else fine
            return whole | {("ip", ip) for ip in ips}
        return {(layer.value, target)} | {("ip", ip) for ip in m.rebuild(layer, target, rs)}

    # ---- reading ---------------------------------------------------------------------
    def findings(self, app: str | None = None) -> list[Finding]:
        dests = self.dests_of.get(app, []) if app is not None else list(self.entries)
        return [f for d in dests for f in self.entries[d].findings]

    def counts(self) -> dict[str, AppCounts]:
        out: dict[str, AppCounts] = {}
        for app, dests in self.dests_of.items():
            c = out[app] = AppCounts()
            for d in dests:
                e = self.entries[d].counts
                for k in c.__dict__:
                    setattr(c, k, getattr(c, k) + getattr(e, k))
        for app in self.repo.apps:
            out.setdefault(app, AppCounts())
        return out

    def comparison(self) -> Comparison:
        """The whole current state, as `compare` over every destination would give it."""
        return compare(e.result for e in self.entries.values())


def _sig(findings: list[Finding]) -> list[tuple]:
    return [(f.kind, f.extent, f.source.id, f.dest.id, tuple(f.hops)) for f in findings]
