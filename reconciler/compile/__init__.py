"""compile: intents + inventory -> DesiredState (pure, incremental).

Contract: `compile_repo(repo)` is a pure function of the `IntentRepo`. Each layer has a
per-application compiler `compile_app(app, ctx) -> list[Resource]` (and optionally
`compile_fabric(ctx)` for app-independent state) in its own module, listed in
`LAYER_COMPILERS`. `Compiler` adds a cache keyed by a digest of the app, the apps it is
related to (policy flows in either direction), the inventory and the config, so a commit
that changes one app recompiles that app and its partners only.
Two resources with one key from different apps is a conflict, reported as `CompileConflict`.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Callable, Iterable

from ..intent import Application, IntentRepo
from ..model import DesiredState, FrozenDict, Layer, Resource, ResourceKey
from . import host, hypervisor, switch
from .context import CompileContext

import importlib
import importlib.util

# The sidecar compiler lands with the xDS work; until then the layer compiles to nothing.
_sidecar = (importlib.import_module(f"{__name__}.sidecar")
            if importlib.util.find_spec(f"{__name__}.sidecar") else None)

AppCompiler = Callable[[Application, CompileContext], list[Resource]]
FabricCompiler = Callable[[CompileContext], list[Resource]]

LAYER_COMPILERS: dict[Layer, tuple[AppCompiler, FabricCompiler | None]] = {
    Layer.SWITCH: (switch.compile_app, switch.compile_fabric),
    Layer.HYPERVISOR: (hypervisor.compile_app, hypervisor.compile_fabric),
    Layer.HOST: (host.compile_app, None),
}
if _sidecar is not None:
    LAYER_COMPILERS[Layer.SIDECAR] = (_sidecar.compile_app, getattr(_sidecar, "compile_fabric", None))


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
    """Caches per-app output by content digest. Not thread-safe; one per engine."""

    def __init__(self) -> None:
        self._cache: dict[str, tuple[str, tuple[Resource, ...]]] = {}
        self._app_digests: dict[int, tuple[Application, str]] = {}
        self.last_compiled: tuple[str, ...] = ()

    def _own_digest(self, app: Application) -> str:
        # Models are immutable, so identity is a safe cache key within one process.
        hit = self._app_digests.get(id(app))
        if hit is not None and hit[0] is app:
            return hit[1]
        d = app_digest(app)
        self._app_digests[id(app)] = (app, d)
        return d

    def compile(self, repo: IntentRepo) -> DesiredState:
        ctx = CompileContext.of(repo)
        env = _digest(repo.inventory.model_dump_json(), repo.config.model_dump_json())
        own = {name: self._own_digest(app) for name, app in repo.apps.items()}
        resources: list[Resource] = []
        compiled: list[str] = []
        cache: dict[str, tuple[str, tuple[Resource, ...]]] = {}
        for name in sorted(repo.apps):
            app = repo.apps[name]
            digest = _digest(env, own[name], *(own[r] for r in ctx.related(name)))
            hit = self._cache.get(name)
            if hit is not None and hit[0] == digest:
                out = hit[1]
            else:
                out = tuple(r for comp, _ in LAYER_COMPILERS.values() for r in comp(app, ctx))
                compiled.append(name)
            cache[name] = (digest, out)
            resources.extend(out)
        fabric = ("__fabric__", env)
        hit = self._cache.get(fabric[0])
        if hit is not None and hit[0] == env:
            resources.extend(hit[1])
        else:
            out = tuple(r for _, fab in LAYER_COMPILERS.values() if fab for r in fab(ctx))
            cache[fabric[0]] = (env, out)
            resources.extend(out)
        if fabric[0] not in cache:
            cache[fabric[0]] = self._cache[fabric[0]]
        self._cache = cache  # apps removed from the repo drop out of the cache
        self.last_compiled = tuple(compiled)
        return _index(resources)


def _index(resources: Iterable[Resource]) -> DesiredState:
    index: dict[ResourceKey, Resource] = {}
    conflicts: list[CompileConflict] = []
    for r in resources:
        prev = index.get(r.key)
        if prev is not None:
            if prev.spec != r.spec or prev.app != r.app:
                conflicts.append(CompileConflict(r.key, tuple(sorted({prev.app, r.app}))))
            continue
        index[r.key] = r
    if conflicts:
        raise CompileConflicts(conflicts)
    return DesiredState(FrozenDict(index))


def compile_repo(repo: IntentRepo) -> DesiredState:
    return Compiler().compile(repo)


__all__ = ["compile_repo", "Compiler", "CompileConflict", "CompileConflicts", "LAYER_COMPILERS",
           "CompileContext", "app_digest"]
