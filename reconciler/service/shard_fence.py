"""Drivers behind the fence, and the daemon's few shard calls.

Contract:
- `fence_drivers(drivers, fence)` fences every driver (a subclass of its own class in front,
  sharing its state, so `isinstance` and its other methods still work): `observe` notes the epoch the run
  observes under; a non-dry `apply` (or fused `apply_together`) runs inside
  `Fence.batch(apps of its changes)`. A refused batch writes nothing and answers every target
  FAILED with `fenced: <reason>` (a result, like any failing target); the daemon's retry then
  finds the apps are not its own any more and drops them. Fused observe/apply keep working
  (one Ansible run for several layers); `Prestartable` is not offered behind the fence: a
  prestarted run could not be checked at its `go()` in the batch's transaction.
- `start_shards(...)` builds the membership and fence of a daemon; `mark_dead_runs(store,
  membership)` marks RUNNING runs of owners that are not live members INTERRUPTED (a live
  member's runs are its own business). `retry_refused(daemon, loaded, apps)`: a sync refused
  before any write (members write different apps on shared targets, so a target can be busy
  with another member's transaction) is retried with the daemon's backoff, like a failure.
  `wait_targets_free(daemon, loaded, apps)`: before a member's run, wait (bounded) while an
  unfinished transaction holds a target of its apps, so the run is not refused at its first write.
"""
from __future__ import annotations

import logging
import time
from typing import Any, Callable, Mapping, Sequence

from sqlmodel import Session, select

from reconciler.drivers.base import ApplyResult, FusableApply, FusableObserve, Target, TargetPlan
from reconciler.service.shard_lease import Fence, Fenced, Membership
from reconciler.service.shards import ShardSettings
from reconciler.service.store_models import RunRow
from reconciler.status import Outcome, Phase

__all__ = ["FencedDriver", "fence_drivers", "start_shards", "mark_dead_runs", "shard_health", "retry_refused",
           "wait_targets_free"]

log = logging.getLogger("reconciler.service.shards")


def _apps(plans: Sequence[TargetPlan]) -> set[str]:
    return {c.app for tp in plans for c in tp.changes}


def _refused(plans: Sequence[TargetPlan], why: str) -> dict[str, ApplyResult]:
    return {tp.target.name: ApplyResult(tp.target.name, Outcome.FAILED, error=f"fenced: {why}") for tp in plans}


def _unwrap(d: Any) -> Any:
    """The driver object behind a fenced one (fused runs call their parts unfenced: one batch)."""
    return getattr(d, "_fenced_inner", d)


class _Fence:
    """Mixin put in front of a driver's own class: the fenced driver IS a driver of that class
    (isinstance checks and methods such as `render`, used by the transaction prepare checks,
    keep working) and shares the original object's state."""

    _fence: Fence
    _fenced_inner: Any
    prestart = None   # Prestartable is not offered behind the fence (see the module docstring)

    def observe(self, targets: Sequence[Target]) -> Mapping[str, Any]:
        self._fence.note_observed()
        return super().observe(targets)  # type: ignore[misc]

    def apply(self, plans: Sequence[TargetPlan], dry_run: bool = False) -> Mapping[str, ApplyResult]:
        if dry_run or not plans:
            return super().apply(plans, dry_run=dry_run)  # type: ignore[misc]
        return _guarded(self._fence, self.layer.value, list(plans),  # type: ignore[attr-defined]
                        lambda: super(_Fence, self).apply(plans, dry_run=False),  # type: ignore[misc]
                        lambda why: _refused(plans, why))


class _FusableFence(_Fence):
    def observe_together(self, parts: Sequence[tuple[Any, Sequence[Target]]]) -> list[Mapping[str, Any]]:
        self._fence.note_observed()
        return super().observe_together([(_unwrap(d), ts) for d, ts in parts])  # type: ignore[misc]

    def apply_together(self, parts: Sequence[tuple[Any, Sequence[TargetPlan]]],
                       dry_run: bool = False) -> list[Mapping[str, ApplyResult]]:
        inner_parts = [(_unwrap(d), tps) for d, tps in parts]
        if dry_run:
            return super().apply_together(inner_parts, dry_run=True)  # type: ignore[misc]
        plans = [tp for _, tps in parts for tp in tps]
        return _guarded(self._fence, "+".join(d.layer.value for d, _ in parts), plans,
                        lambda: super(_FusableFence, self).apply_together(inner_parts, dry_run=False),  # type: ignore[misc]
                        lambda why: [_refused(tps, why) for _, tps in parts])


def _guarded(fence: Fence, layer: str, plans: list[TargetPlan], write: Callable[[], Any],
             refuse: Callable[[str], Any]) -> Any:
    try:
        with fence.batch(_apps(plans), layer, len(plans)):
            return write()
    except Fenced as exc:
        return refuse(str(exc))


class FencedDriver(_Fence):
    """Fallback for a driver without a per-instance `__dict__`: a plain wrapper."""

    def __init__(self, inner: Any, fence: Fence) -> None:
        self._fenced_inner, self._fence, self.layer = inner, fence, inner.layer

    def observe(self, targets: Sequence[Target]) -> Mapping[str, Any]:
        self._fence.note_observed()
        return self._fenced_inner.observe(targets)

    def apply(self, plans: Sequence[TargetPlan], dry_run: bool = False) -> Mapping[str, ApplyResult]:
        if dry_run or not plans:
            return self._fenced_inner.apply(plans, dry_run=dry_run)
        return _guarded(self._fence, self.layer.value, list(plans),
                        lambda: self._fenced_inner.apply(plans, dry_run=False), lambda why: _refused(plans, why))


_CLASSES: dict[tuple[type, type], type] = {}


def fenced(inner: Any, fence: Fence) -> Any:
    fusable = isinstance(inner, FusableApply) and isinstance(inner, FusableObserve)
    if not hasattr(inner, "__dict__") or type(inner).__new__ is not object.__new__:
        return FencedDriver(inner, fence)
    mixin = _FusableFence if fusable else _Fence
    key = (mixin, type(inner))
    cls = _CLASSES.get(key)
    if cls is None:
        cls = _CLASSES[key] = type(f"Fenced{type(inner).__name__}", (mixin, type(inner)), {})
    obj: Any = object.__new__(cls)
    obj.__dict__ = inner.__dict__          # the same driver state, one object's worth
    obj.__dict__["_fence"], obj.__dict__["_fenced_inner"] = fence, inner
    return obj


def fence_drivers(drivers: Mapping[Any, Any], fence: Fence) -> dict[Any, Any]:
    return {layer: fenced(d, fence) for layer, d in drivers.items()}


def start_shards(store_url: str, instance: str, settings: ShardSettings,
                 info: dict[str, Any] | None = None) -> tuple[Membership, Fence]:
    m = Membership(store_url, instance, settings, info)
    return m, Fence(m)


def mark_dead_runs(store: Any, membership: Membership | None) -> list[str]:
    if membership is None:
        return []
    view = membership.view
    live = set(view.members) if view else {membership.member}
    live.add(membership.member)
    with Session(store.engine) as s:
        rows = [r for r in s.exec(select(RunRow).where(RunRow.phase == Phase.RUNNING.value)).all()
                if r.owner not in live]
        now = time.time()
        for r in rows:
            r.phase, r.finished = Phase.INTERRUPTED.value, now
            why = f"owner {r.owner} left the shard ring before the run finished"
            r.error = (r.error + "; " if r.error else "") + why
            s.add(r)
        s.commit()
        return [r.run_id for r in rows]


def shard_health(m: Membership) -> dict[str, Any]:
    view = m.view
    return {"member": m.member, "epoch": m.epoch, "lease": m.alive(), "error": m.last_error,
            "generation": view.generation if view else 0, "members": list(view.members) if view else [],
            "slots": sum(1 for o in view.slot_owners if o == m.member) if view else 0}


def held_targets(store: Any, desired: Any, apps: Sequence[str]) -> list[str]:
    """Targets ("layer/name") of `apps` that another process's unfinished transaction holds (the
    journal's locks)."""
    from reconciler.txn.heartbeat import this_owner
    from reconciler.txn.models import TxnLockRow, TxnRow
    by_app = desired.by_app
    names = sorted({f"{k.layer.value}/{k.target}" for a in apps for k in by_app.get(a, ())})
    if not names:
        return []
    with Session(store.engine) as s:
        rows = s.exec(select(TxnLockRow.target, TxnRow.owner)
                      .join(TxnRow, TxnRow.txn_id == TxnLockRow.txn_id)  # type: ignore[arg-type]
                      .where(TxnLockRow.target.in_(names))).all()  # type: ignore[attr-defined]
    me = this_owner()
    return sorted(t for t, owner in rows if owner != me)


def wait_targets_free(daemon: Any, loaded: Any, apps: Sequence[str], timeout_s: float = 60.0,
                      poll_s: float = 0.5) -> float:
    """Before a member's run: wait (bounded) until no unfinished transaction holds a target of its
    apps. Transactions lock whole targets, and members write different apps on shared targets: a
    run that starts while another member's transaction holds one observes and plans, then is
    refused at its first write ("target busy") and retried with backoff. Waiting here instead
    saves that observe. Returns the seconds waited; the run goes ahead when the wait runs out (it
    is then refused and retried as before) or the journal cannot be read."""
    t0 = time.monotonic()
    logged = False
    while not daemon.stopping.is_set():
        try:
            held = held_targets(daemon.store, loaded.desired, apps)
        except Exception:   # the journal is unreadable: the transaction itself will say so
            break
        waited = time.monotonic() - t0
        if not held or waited >= timeout_s:
            break
        if not logged:
            log.info("waiting for targets held by another transaction: %s", ", ".join(held[:5]),
                     extra={"ctx": {"held": held[:20], "apps": list(apps)}})
            logged = True
        daemon.stopping.wait(poll_s)
    return time.monotonic() - t0


def retry_refused(daemon: Any, loaded: Any, apps: Sequence[str] | None) -> None:
    now = time.monotonic()
    daemon.retries.loaded = loaded
    for app in apps or ():
        daemon.retries.fail(app, now)
