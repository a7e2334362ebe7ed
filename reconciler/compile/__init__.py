"""compile: intents + inventory -> DesiredState (pure, incremental).

Contract: `compile_repo(repo)` is a pure function of the `IntentRepo`. Each layer has a
per-application compiler `compile_app(app, ctx) -> list[Resource]` (and optionally
`compile_fabric(ctx)` for app-independent state) in its own module, listed in
`LAYER_COMPILERS`. `Compiler` keeps the previous result, so a commit that changes one app
recompiles that app and its partners (policy flows in either direction, before and after the
change) only, and derives the new desired state from the previous one without copying it
(docs/scale.md: what each step costs).
Two resources with one key from different apps is a conflict, reported as `CompileConflict`;
all of a compile's are raised together as `CompileConflicts`, whose message (and `lines()`,
what the CLI prints) names at most 100 of them, then how many more.
Each layer module also declares, as data, its `NORMALIZER` (the volatile and set-valued
fields of what its drivers report, see reconciler.diff.Normalizer); importing this package
registers them with diff (`LAYER_NORMALIZERS`), so diff never imports compile.
"""
from __future__ import annotations

import gc
import hashlib
import itertools
import operator
from dataclasses import dataclass
from typing import Callable, Iterable, Mapping

from reconciler.compile import host, hypervisor, sidecar, switch, workload_files
from reconciler.compile.context import CompileContext, FlowIndex
from reconciler.diff import Normalizer, register_normalizer
from reconciler.intents.models import Application, IntentRepo, Inventory, RepoConfig
from reconciler.model import (
    SETTLE_AFTER,
    DesiredState,
    FrozenDict,
    Layer,
    PersistentMap,
    Resource,
    ResourceIndex,
    ResourceKey,
    settle_young_objects,
)

AppCompiler = Callable[[Application, CompileContext], list[Resource]]
FabricCompiler = Callable[[CompileContext], list[Resource]]

LAYER_COMPILERS: dict[Layer, tuple[AppCompiler, FabricCompiler | None]] = {
    Layer.SWITCH: (switch.compile_app, switch.compile_fabric),
    Layer.HYPERVISOR: (hypervisor.compile_app, hypervisor.compile_fabric),
    Layer.HOST: (host.compile_app, workload_files.compile_fabric),
    Layer.SIDECAR: (sidecar.compile_app, None),
}

LAYER_NORMALIZERS: dict[Layer, Normalizer] = {
    Layer.SWITCH: switch.NORMALIZER,
    Layer.HYPERVISOR: hypervisor.NORMALIZER,
    Layer.HOST: host.NORMALIZER,
    Layer.SIDECAR: sidecar.NORMALIZER,
}
for _layer, _normalizer in LAYER_NORMALIZERS.items():
    register_normalizer(_layer, _normalizer)


@dataclass(frozen=True)
class CompileConflict(Exception):
    key: ResourceKey
    apps: tuple[str, ...]

    def __str__(self) -> str:
        return f"{self.key}: wanted by more than one application ({', '.join(self.apps)})"


class CompileConflicts(Exception):
    """Every conflict of a compile in `conflicts`; the message names at most `LIMIT` of them
    (a repo with a systematic clash has one per resource: millions), then how many more."""

    LIMIT = 100

    def __init__(self, conflicts: list[CompileConflict]):
        self.conflicts = conflicts
        super().__init__("; ".join(self.lines(prefix="")))

    def lines(self, limit: int = LIMIT, prefix: str = "conflict: ") -> list[str]:
        """Printable lines: the first `limit` conflicts, then `and N more` when there are more."""
        out = [f"{prefix}{c}" for c in self.conflicts[:limit]]
        if len(self.conflicts) > limit:
            out.append(f"and {len(self.conflicts) - limit} more")
        return out


def _digest(*parts: str) -> str:
    h = hashlib.blake2b(digest_size=16)
    for p in parts:
        h.update(p.encode())
        h.update(b"\0")
    return h.hexdigest()


def app_digest(app: Application) -> str:
    return _digest(app.model_dump_json())


def changed_apps(old: Mapping[str, Application], new: Mapping[str, Application]) -> list[str]:
    """Names added, removed or changed from `old` to `new`. Models are immutable, so an app that
    is the same object is unchanged: when both maps list the same names in the same order (a
    repo loaded again, or one built with `{**apps, **changes}`) the scan runs in C; apps that are
    not the same object are compared by value (a reload that re-parsed a file is no change)."""
    if old is new:
        return []
    if len(old) == len(new) and all(map(operator.eq, old, new)):
        maybe: Iterable[str] = itertools.compress(new, map(operator.is_not, old.values(), new.values()))
    else:
        maybe = [n for n, a in new.items() if old.get(n) is not a] + [n for n in old if n not in new]
    return [n for n in maybe if old.get(n) != new.get(n)]


@dataclass(frozen=True)
class _Result:
    """What one compile published; the next compile derives its own from it."""

    config: RepoConfig | None = None
    inventory: Inventory | None = None
    apps: Mapping[str, Application] = FrozenDict()
    flows: FlowIndex = FlowIndex()
    index: ResourceIndex = ResourceIndex()    # key -> resource, by target
    by_app: PersistentMap = PersistentMap()   # app ('' for the fabric) -> keys of its resources


class Compiler:
    """Compiles a repo, reusing the previous result: the cost of a compile follows what changed.

    Apps added, removed or changed since the previous compile are found by `changed_apps`; they
    and their flow partners (before and after the change, from the incremental `FlowIndex`) are
    compiled again; the resource index, the per-app keys and the flows are derived from the
    previous ones (`evolve`), never copied whole. A changed inventory or config compiles
    everything. `last_compiled` names the apps compiled; `last_changed` the apps whose resources
    may differ from the previous result (compiled or removed; '' for the fabric): a re-plan over
    them against the previous desired state equals a full plan. A compile that raises leaves
    the previous result in place. Not thread-safe; one per engine."""

    def __init__(self) -> None:
        self._last = _Result()
        self.last_compiled: tuple[str, ...] = ()
        self.last_changed: tuple[str, ...] = ()

    def compile(self, repo: IntentRepo, changed: Iterable[str] | None = None) -> DesiredState:
        """`changed`, when the caller knows it (a commit's changed files), names every app that
        may differ from the previous compile's repo (added, removed or edited; more is fine): the
        compile then never looks at the other apps. Without it, `changed_apps` scans the repo's
        apps (in C; the floor of an incremental compile: ~20 ms at 100,000 apps, docs/scale.md)."""
        gc_was_enabled = gc.isenabled()
        gc.disable()  # allocation-heavy and cycle-free: skip repeated full-heap GC passes
        try:
            state = self._compile(repo, changed)
            if len(self.last_compiled) * 30 >= SETTLE_AFTER:  # ~30 resources an app
                settle_young_objects()
            return state
        finally:
            if gc_was_enabled:
                gc.enable()

    def _same_env(self, repo: IntentRepo) -> bool:
        last = self._last
        return ((last.config is repo.config or last.config == repo.config)
                and (last.inventory is repo.inventory or last.inventory == repo.inventory))

    def _changed(self, repo: IntentRepo, hint: Iterable[str] | None) -> list[str]:
        old, new = self._last.apps, repo.apps
        if hint is None:
            return changed_apps(old, new)
        names = [n for n in set(hint) if old.get(n) is not new.get(n) and old.get(n) != new.get(n)]
        if len(old) + sum((n in new) - (n in old) for n in names) != len(new):
            return changed_apps(old, new)  # the hint misses an added or removed app: scan
        return names

    def _compile(self, repo: IntentRepo, hint: Iterable[str] | None) -> DesiredState:
        last = self._last
        if last.inventory is None or not self._same_env(repo):  # everything, from scratch
            flows = FlowIndex.of(repo.apps)
            ctx = CompileContext(repo.config, repo.inventory, repo.apps, flows)
            todo = sorted(repo.apps)
            gone = [n for n in last.apps if n not in repo.apps]
            index, by_app, conflicts = _build(ctx, todo)
            changed = {"", *todo, *gone}
        else:
            names = self._changed(repo, hint)
            flows = last.flows.evolve(repo.apps, names) if names else last.flows
            ctx = CompileContext(repo.config, repo.inventory, repo.apps, flows)
            todo_set = {n for n in names if n in repo.apps}
            for n in names:
                todo_set.update(p for p in last.flows.partners(n) | flows.partners(n) if p in repo.apps)
            todo, gone = sorted(todo_set), [n for n in names if n not in repo.apps]
            fresh = {name: _compile_app(repo.apps[name], ctx) for name in todo}
            index, by_app, conflicts = _patch(last, fresh, gone)
            changed = {*todo, *gone}
        if conflicts:
            raise CompileConflicts(conflicts)  # self._last is left as it was: nothing half-updated
        self._last = _Result(repo.config, repo.inventory, repo.apps, flows, index, by_app)
        self.last_compiled, self.last_changed = tuple(todo), tuple(sorted(changed))
        state = DesiredState(index)
        state.__dict__["by_app"] = by_app  # prefill State.by_app (cached_property)
        return state


def _compile_app(app: Application, ctx: CompileContext) -> list[Resource]:
    out: list[Resource] = []
    for comp, _ in LAYER_COMPILERS.values():
        out += comp(app, ctx)
    return out


_KEY = operator.itemgetter(0)  # Resource -> its key, in C


def _conflict(prev: Resource, r: Resource) -> CompileConflict | None:
    """Two resources with one key: the same resource twice from one app is no conflict."""
    if prev.spec != r.spec or prev.app != r.app:
        return CompileConflict(r.key, tuple(sorted({prev.app, r.app})))
    return None


def _build(ctx: CompileContext, names: list[str]):
    """A compile from scratch: the fabric, then every app in name order (conflicts name the
    later app), each app's resources indexed right after they are made, while still in cache."""
    layers: dict[Layer, dict[str, dict[ResourceKey, Resource]]] = {layer: {} for layer in Layer}
    by_app: dict[str, tuple[ResourceKey, ...]] = {}
    conflicts: list[CompileConflict] = []
    fabric = [r for _, fab in LAYER_COMPILERS.values() if fab for r in fab(ctx)]
    for name, out in itertools.chain((("", fabric),), ((n, _compile_app(ctx.apps[n], ctx)) for n in names)):
        for r in out:
            key = r[0]
            targets = layers[key[0]]
            g = targets.get(key[1])
            if g is None:
                g = targets[key[1]] = {}
            prev = g.setdefault(key, r)
            if prev is not r and (c := _conflict(prev, r)) is not None:
                conflicts.append(c)
        by_app[name] = tuple(map(_KEY, out))
    groups = {(layer, t): g for layer, targets in layers.items() for t, g in targets.items()}
    return ResourceIndex.from_groups(groups, sum(map(len, groups.values()))), PersistentMap(by_app), conflicts


def _patch(last: _Result, fresh: dict[str, list[Resource]], gone: list[str]):
    """An incremental compile: drop the keys of the apps compiled again or removed, add theirs.
    A resource equal to the one it replaces stays the same object (plans compare by identity
    first, and its target's dict is not copied)."""
    dropped = {k: last.index[k] for name in itertools.chain(fresh, gone) for k in last.by_app.get(name, ())}
    staged: dict[ResourceKey, Resource] = {}
    conflicts: list[CompileConflict] = []
    for name in sorted(fresh):
        out = fresh[name] = [old if (old := dropped.get(r.key)) is not None and old == r else r
                             for r in fresh[name]]
        for r in out:
            prev = staged.get(r.key)
            if prev is None and r.key not in dropped:
                prev = last.index.get(r.key)
            if prev is None:
                staged[r.key] = r
            elif (c := _conflict(prev, r)) is not None:
                conflicts.append(c)
    index = last.index.evolve((k for k in dropped if k not in staged),
                              ((k, r) for k, r in staged.items() if dropped.get(k) is not r))
    by_app = last.by_app.evolve(gone, ((name, tuple(map(_KEY, out))) for name, out in fresh.items()))
    return index, by_app, conflicts


def compile_repo(repo: IntentRepo) -> DesiredState:
    return Compiler().compile(repo)


__all__ = ["compile_repo", "Compiler", "CompileConflict", "CompileConflicts", "LAYER_COMPILERS",
           "LAYER_NORMALIZERS", "CompileContext", "FlowIndex", "app_digest", "changed_apps"]
