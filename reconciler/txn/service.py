"""The daemon's side of the transactions: every sync is one, and lapsed confirm windows and
transactions a dead process left are finished by the leader before it applies anything else.

Contract:
- `run_sync(daemon, engine, loaded, apps, trigger)` -> RunReport | None: first `recover`
  (finish what the journal says is pending), then apply `loaded` as one transaction. The
  fence is the daemon's leader lock (`is_leader and lock.alive()`), checked by the write gate
  before every write and again at commit; the per-target lock rows in the journal keep two
  transactions (two daemons on one PostgreSQL included) off one target. None when the
  transaction was refused before any write (journal down, target busy, prepare, fence); the
  reason is logged.
- `txn_tick(daemon)` (a 1 s scheduler job): while leader and idle, roll back transactions whose
  confirm window lapsed or whose owner died (the same claim as the CLI's watcher: first wins).
- Health-check confirm: when the daemon has confirm checks configured (`cfg.confirm_checks`, else
  the `RECONCILER_CONFIRM_CHECKS` environment variable, a comma list; known: `verify` = the
  daemon's reachability verification ran after the transaction went live and found no
  violation, leak or unknown pair), `txn_tick` commits a `pending-confirm` transaction whose
  checks all pass, before its deadline (the journal's compare-and-set, like `confirm`). With no
  checks configured nothing changes: only `reconciler confirm` or the deadline decide.
- Self-heal uses transactions but not commit-confirm (docs/transactions.md says why).
- Every sync's verify step includes reachability verification (txn/reach.py) with the repo being
  applied; pairs the change leaves `unknown` roll back only with `txn_on_unknown: rollback` on the
  config or RECONCILER_TXN_ON_UNKNOWN=rollback (default keep).
"""
from __future__ import annotations

import logging
import os
import time
from typing import Any

from reconciler.report import RunReport
from reconciler.txn.heartbeat import row_owner_alive
from reconciler.txn.journal import Journal, JournalUnavailable
from reconciler.txn.models import TxnState
from reconciler.txn.reach import ENV_ON_UNKNOWN, OnUnknown, ReachCheck
from reconciler.txn.txn import Transactions, TxnResult

log = logging.getLogger("reconciler.txn")
UNKNOWN_RETRY_S = 15.0   # how often the leader retries targets left `unknown` by a rollback
CONFIRM_CHECKS_ENV = "RECONCILER_CONFIRM_CHECKS"


def confirm_checks(daemon: Any) -> tuple[str, ...]:
    """The daemon's health checks that may confirm a pending transaction ('' entries dropped)."""
    raw = getattr(daemon.cfg, "confirm_checks", None)
    if raw is None:
        raw = os.environ.get(CONFIRM_CHECKS_ENV, "")
    names = raw.split(",") if isinstance(raw, str) else list(raw)
    return tuple(n.strip() for n in names if n.strip())


def _verify_clean(daemon: Any, row: Any) -> str:
    """'' when reachability verification ran after the transaction went live and is clean."""
    st = daemon.reach.status()
    if not st.get("ok"):
        return f"verify: {st.get('error') or 'off'}"
    if float(st.get("ts") or 0) <= float(row.updated or 0):
        return "verify: no verification since the change went live"
    bad = {k: st.get(k, 0) for k in ("violations", "leaks", "unknowns") if st.get(k, 0)}
    return f"verify: {bad}" if bad else ""


HEALTH_CHECKS = {"verify": _verify_clean}


def health_failure(daemon: Any, row: Any, checks: tuple[str, ...]) -> str:
    """'' when every configured check passes for the pending transaction `row`, else the first reason."""
    for name in checks:
        check = HEALTH_CHECKS.get(name)
        why = check(daemon, row) if check is not None else f"unknown confirm check {name!r}"
        if why:
            return why
    return ""


def confirm_healthy(daemon: Any, journal: Journal, rows: list[Any], now: float) -> list[str]:
    """Commit pending transactions (window still open) whose configured health checks all pass."""
    checks = confirm_checks(daemon)
    done = []
    for r in rows:
        if not checks or r.state != TxnState.PENDING_CONFIRM.value or (r.deadline or 0) <= now:
            continue
        if not health_failure(daemon, r, checks) and journal.claim(
                r.txn_id, [TxnState.PENDING_CONFIRM], TxnState.COMMITTED, owner=daemon.cfg.instance, not_after=now):
            log.info("transaction %s: committed by the daemon's health checks (%s)", r.txn_id, ",".join(checks),
                     extra={"ctx": {"txn": r.txn_id, "state": TxnState.COMMITTED.value, "checks": list(checks)}})
            done.append(r.txn_id)
    return done


def _fence(daemon: Any) -> str:
    return "" if daemon.is_leader and daemon.lock.alive() else "this daemon no longer holds the leader lock"


def transactions_for(daemon: Any, engine: Any, loaded: Any) -> Transactions:
    from reconciler.txn.prepare import make_preparer
    ctx = {"repo": str(getattr(loaded.repo, "root", "") or ""), "inventory": loaded.inventory_path,
           "layers": [l.value for l in engine.drivers], "timeout": daemon.cfg.timeout_s,
           "attempts": daemon.cfg.attempts, "observed": daemon.cfg.observed, "factory": daemon.cfg.driver_factory,
           "store": daemon.cfg.store_url, "daemon": daemon.cfg.instance}
    prepare = None if daemon.cfg.observed else make_preparer(engine.drivers)
    on_unknown = OnUnknown.of(getattr(daemon.cfg, "txn_on_unknown", None) or os.environ.get(ENV_ON_UNKNOWN))
    layers = list(engine.drivers)
    return Transactions(engine, Journal(daemon.store), context=ctx, prepare=prepare, fence=lambda: _fence(daemon),
                        reach=lambda: ReachCheck(loaded.repo, layers, on_unknown,
                                                 baseline=lambda: daemon.reach.cached(loaded)))


def _log_result(res: TxnResult) -> None:
    level = logging.INFO if res.ok else logging.WARNING
    log.log(level, "transaction %s: %s", res.txn_id, res.state.value,
            extra={"ctx": {"txn": res.txn_id, "state": res.state.value, "error": res.error[:500],
                           "unknown": res.unknown, "differs": res.differs}})


def run_sync(daemon: Any, engine: Any, loaded: Any, apps: list[str] | None, trigger: str) -> RunReport | None:
    cfg = loaded.repo.config
    tx = transactions_for(daemon, engine, loaded)
    try:
        for res in tx.recover(loaded.targets, cfg.ignore):
            _log_result(res)
        res = tx.apply(loaded.desired, loaded.targets, prune=cfg.sync.prune, apps=apps, ignore=cfg.ignore,
                       revision=loaded.revision, trigger=trigger)
        _log_result(res)
        healthy, failing = _split(res, apps)
        if not (healthy and failing):
            return res.report
        # all-or-nothing per transaction, but one failing app never holds the others: they go
        # again as a transaction of their own; the failing ones are retried with backoff
        assert res.report is not None  # _split found apps in it
        daemon.record_failures(res.report, failing)
        res = tx.apply(loaded.desired, loaded.targets, prune=cfg.sync.prune, apps=healthy, ignore=cfg.ignore,
                       revision=loaded.revision, trigger=trigger)
    except JournalUnavailable as exc:
        log.error("%s", exc)
        return None
    _log_result(res)
    return res.report


def _split(res: TxnResult, apps: list[str] | None) -> tuple[list[str], list[str]]:
    """(healthy, failing) apps of a rolled-back transaction: failing = apps on a failed target
    or with resources that still differed. Both empty when the split does not apply."""
    rep = res.report
    if res.state is not TxnState.ROLLED_BACK or rep is None:
        return [], []
    failing = {a for t in rep.targets.values() if not t.ok for a in t.apps}
    failing |= {c.app for c in rep.residual.changes}
    scope = apps if apps is not None else rep.apps()
    return [a for a in scope if a not in failing], sorted(a for a in failing if a in scope)


def txn_tick(daemon: Any) -> None:
    """Finish lapsed confirm windows and dead owners' transactions, when leader and idle."""
    loaded, engine = getattr(daemon, "current", None), getattr(daemon, "_engine", None)
    if not daemon.is_leader or loaded is None or engine is None:
        return
    try:
        journal = Journal(daemon.store)
        now = time.time()
        rows = journal.unfinished()
        beats = journal.beats(r.owner for r in rows)
        confirmed = set(confirm_healthy(daemon, journal, rows, now))
        due = [r for r in rows if r.txn_id not in confirmed
               and ((r.state == TxnState.PENDING_CONFIRM.value and (r.deadline or 0) <= now)
                    or (r.state == TxnState.ROLLBACK_PENDING.value and now - r.updated >= UNKNOWN_RETRY_S)
                    or (r.state != TxnState.PENDING_CONFIRM.value and not row_owner_alive(r, beats, now)))]
    except Exception as exc:  # the store is down: nothing can be decided without the journal
        log.debug("txn tick: %s", exc)
        return
    if not due or not daemon.run_lock.acquire(blocking=False):
        return
    try:
        for res in transactions_for(daemon, engine, loaded).recover(loaded.targets, loaded.repo.config.ignore):
            _log_result(res)
    except JournalUnavailable as exc:
        log.error("%s", exc)
    finally:
        daemon.run_lock.release()
