"""The one place a load reads previous allocations and records new ones.

Contract: `load_with_ipam(load, binding)` runs `load(previous) -> IntentRepo` (which raises
RepoInvalid for bad input) with the binding's previous allocations and, when the binding
records, commits `repo.allocations` by compare-and-swap (reconciler.ipam.persist); on a
`Conflict` it reads again and reloads (allocation is pure, so the reload gives the owners that
kept their value the same value), at most `ATTEMPTS` (200) times within `DEADLINE_S` (120 s), then `IpamBusy`.
Bindings:
- `StoreBinding(engine_or_url, record)`: the store; reading a store that does not exist yet
  is reading nothing (validate and plan never create one). When the store cannot be read and
  nothing in the repo needs an allocation, the load goes on without it (a database outage does
  not stop a repo with literal values); otherwise the error propagates.
- `FixedBinding(allocations)`: given allocations, never recorded (`plan --from/--to` chains
  the `from` revision's allocations into the `to` revision).
`default_store_url()` is the store the CLI commands share with `status` and `serve`.
"""
from __future__ import annotations

import os
import random
import time
from typing import Callable, Protocol

from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError, OperationalError

from reconciler.intents.models import IntentRepo
from reconciler.ipam import persist
from reconciler.ipam.model import EMPTY, Allocations, IpamResult

ATTEMPTS = 200   # a writer that keeps losing the compare-and-swap (others committing back to back)
DEADLINE_S = 120.0
DEFAULT_STORE = ".reconciler/state.db"  # the same default as reconciler.service.cli


def default_store_url(explicit: str | None = None) -> str:
    return explicit or os.environ.get("RECONCILER_STORE") or DEFAULT_STORE


class Binding(Protocol):
    record: bool

    def previous(self) -> Allocations: ...

    def commit(self, result: IpamResult, revision: str) -> int: ...


class FixedBinding:
    record = False

    def __init__(self, allocations: Allocations) -> None:
        self.allocations = allocations

    def previous(self) -> Allocations:
        return self.allocations

    def commit(self, result: IpamResult, revision: str) -> int:  # pragma: no cover - never records
        return result.previous.generation


class StoreBinding:
    def __init__(self, store: Engine | str, record: bool = False) -> None:
        self.url = store if isinstance(store, str) else None
        self._engine = None if isinstance(store, str) else store
        self.record = record
        self.last_generation = 0   # after a commit: the generation written (tests, ipam show)
        self.attempts = 0
        self._cache: Allocations | None = None

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            assert self.url is not None
            self._engine = persist.engine_for(self.url)
        return self._engine

    def previous(self) -> Allocations:
        if self._engine is None and self.url is not None and not persist.exists(self.url):
            return EMPTY
        if self._cache is not None and persist.generation(self.engine) == self._cache.generation:
            return self._cache  # unchanged since we read or wrote it: the same object keeps allocation incremental
        self._cache = persist.read(self.engine)
        return self._cache

    def commit(self, result: IpamResult, revision: str) -> int:
        if not result.changed:  # nothing to write: never create a store for it
            return result.previous.generation
        self.last_generation = persist.commit(self.engine, result, revision)
        self._cache = Allocations(result.allocations.apps, self.last_generation)
        return self.last_generation


class IpamBusy(Exception):
    """Allocations could not be recorded: other writers kept winning."""


def load_with_ipam(load: Callable[[Allocations], IntentRepo], binding: Binding | None,
                   revision: str = "") -> IntentRepo:
    if binding is None:
        return load(EMPTY)
    deadline = time.monotonic() + DEADLINE_S
    for attempt in range(1, ATTEMPTS + 1):
        try:
            previous = binding.previous()
        except (OperationalError, DBAPIError):
            repo = load(EMPTY)
            if _needs_nothing(repo):
                return repo
            raise
        repo = load(previous)
        result = repo.allocations
        if not binding.record or not isinstance(result, IpamResult):
            return repo
        try:
            binding.commit(result, revision or repo.revision)
            if isinstance(binding, StoreBinding):
                binding.attempts = attempt
            return repo
        except persist.Conflict:
            if time.monotonic() >= deadline:
                break
            time.sleep(random.uniform(0.0, 0.005 * min(attempt, 20)))  # jitter: losers do not collide again
    raise IpamBusy(f"IPAM: allocations could not be recorded after {attempt} attempts (other writers kept "
                   "changing them); try again")


def _needs_nothing(repo: IntentRepo) -> bool:
    result = repo.allocations
    return not isinstance(result, IpamResult) or not result.allocations.apps
