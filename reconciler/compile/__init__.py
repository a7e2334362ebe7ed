"""compile: intents + inventory -> DesiredState (pure, incremental).

Contract: `compile_repo(repo)` is a pure function of the `IntentRepo`. Each layer has a
per-application compiler `compile_app(app, ctx) -> list[Resource]` (and optionally
`compile_fabric(ctx)` for app-independent state) in its own module, listed in
`LAYER_COMPILERS`. `Compiler` adds a cache keyed by a digest of the app, the apps it is
related to (policy flows in either direction), the inventory and the config, so a commit
that changes one app recompiles that app and its partners only.
Two resources with one key from different apps is a conflict, reported as `CompileConflict`.
Each layer module also declares, as data, its `NORMALIZER` (the volatile and set-valued
fields of what its drivers report, see reconciler.diff.Normalizer); importing this package
registers them with diff (`LAYER_NORMALIZERS`), so diff never imports compile.
"""
from __future__ import annotations

import gc
import hashlib
from dataclasses import dataclass
from typing import Callable

from reconciler.compile import host, hypervisor, sidecar, switch
from reconciler.compile.context import CompileContext
from reconciler.diff import Normalizer, register_normalizer
from reconciler.intents.models import Application, IntentRepo
from reconciler.model import DesiredState, FrozenDict, Layer, Resource, ResourceKey

AppCompiler = Callable[[Application, CompileContext], list[Resource]]
FabricCompiler = Callable[[CompileContext], list[Resource]]

LAYER_COMPILERS: dict[Layer, tuple[AppCompiler, FabricCompiler | None]] = {
    Layer.SWITCH: (switch.compile_app, switch.compile_fabric),
    Layer.HYPERVISOR: (hypervisor.compile_app, hypervisor.compile_fabric),
    Layer.HOST: (host.compile_app, None),
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
    def __init__(self, conflicts: list[CompileConflict]):
        super().__init__("; ".join(map(str, conflicts)))
        self.conflicts = conflicts


def _digest(*parts: str) -> str:
    h = hashlib.blake2b(digest_size=16)
    for p in parts:
        h.update(p.encode())
        h.update(b"\0")
    return h.hexdigest()


def app_digest(app: Application) -> str:
    return _digest(app.model_dump_json())


class Compiler:
    """Caches per-app output by content digest and patches the previous index, so the cost
    of a compile follows what changed. Not thread-safe; one per engine."""

    FABRIC = "\0fabric"  # cache slot of app-independent resources (not a valid app name)

    def __init__(self) -> None:
        self._cache: dict[str, tuple[str, tuple[Resource, ...]]] = {}
        self._digests: dict[int, tuple[object, str]] = {}
        self._index: dict[ResourceKey, Resource] = {}
        self._by_app: dict[str, tuple[ResourceKey, ...]] = {}
        self.last_compiled: tuple[str, ...] = ()

    def _digest_of(self, model, dump: Callable[[], str]) -> str:
        # Models are immutable, so identity is a safe cache key within one process.
        hit = self._digests.get(id(model))
        if hit is not None and hit[0] is model:
            return hit[1]
        d = _digest(dump())
        self._digests[id(model)] = (model, d)
        return d

    def compile(self, repo: IntentRepo) -> DesiredState:
        gc_was_enabled = gc.isenabled()
        gc.disable()  # allocation-heavy and cycle-free: skip repeated full-heap GC passes
        try:
            return self._compile(repo)
        finally:
            if gc_was_enabled:
                gc.enable()

    def _compile(self, repo: IntentRepo) -> DesiredState:
        ctx = CompileContext.of(repo)
        env = _digest(self._digest_of(repo.inventory, repo.inventory.model_dump_json),
                      self._digest_of(repo.config, repo.config.model_dump_json))
        own = {name: self._digest_of(app, app.model_dump_json) for name, app in repo.apps.items()}
        fresh: dict[str, tuple[str, tuple[Resource, ...]]] = {}
        for name, app in repo.apps.items():
            digest = _digest(env, own[name], *(own[r] for r in ctx.related(name)))
            hit = self._cache.get(name)
            if hit is None or hit[0] != digest:
                fresh[name] = (digest, tuple(r for comp, _ in LAYER_COMPILERS.values() for r in comp(app, ctx)))
        hit = self._cache.get(self.FABRIC)
        if hit is None or hit[0] != env:
            fresh[self.FABRIC] = (env, tuple(r for _, fab in LAYER_COMPILERS.values() if fab for r in fab(ctx)))
        gone = [n for n in self._cache if n != self.FABRIC and n not in repo.apps]

        index = dict(self._index)
        for name in list(fresh) + gone:
            for r in self._cache.get(name, (None, ()))[1]:
                index.pop(r.key, None)
        conflicts: list[CompileConflict] = []
        for name in sorted(fresh):
            for r in fresh[name][1]:
                prev = index.get(r.key)
                if prev is not None and (prev.spec != r.spec or prev.app != r.app):
                    conflicts.append(CompileConflict(r.key, tuple(sorted({prev.app, r.app}))))
                    continue
                index[r.key] = r
        if conflicts:
            raise CompileConflicts(conflicts)  # the cache is left as it was: nothing half-updated
        cache = dict(self._cache)
        cache.update(fresh)
        for name in gone:
            del cache[name]
        # the per-app key index, patched like the resource index
        by_app = dict(self._by_app)
        for name in gone:
            by_app.pop(name, None)
        for name, (_, out) in fresh.items():
            by_app["" if name == self.FABRIC else name] = tuple(r.key for r in out)
        self._cache, self._index, self._by_app = cache, index, by_app
        self.last_compiled = tuple(sorted(n for n in fresh if n != self.FABRIC))
        state = DesiredState(FrozenDict(index))
        state.__dict__["by_app"] = by_app  # prefill State.by_app (cached_property)
        return state


def compile_repo(repo: IntentRepo) -> DesiredState:
    return Compiler().compile(repo)


__all__ = ["compile_repo", "Compiler", "CompileConflict", "CompileConflicts", "LAYER_COMPILERS",
           "LAYER_NORMALIZERS", "CompileContext", "app_digest"]
