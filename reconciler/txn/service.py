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
- Self-heal uses transactions but not commit-confirm (docs/transactions.md says why).
"""
from __future__ import annotations

import logging
import time
from typing import Any

from reconciler.report import RunReport
from reconciler.txn.journal import Journal, JournalUnavailable
from reconciler.txn.models import TxnState
from reconciler.txn.txn import Transactions, TxnResult, owner_alive

log = logging.getLogger("reconciler.txn")
UNKNOWN_RETRY_S = 15.0   # how often the leader retries targets left `unknown` by a rollback


def _fence(daemon: Any) -> str:
    return "" if daemon.is_leader and daemon.lock.alive() else "this daemon no longer holds the leader lock"


def transactions_for(daemon: Any, engine: Any, loaded: Any) -> Transactions:
    from reconciler.txn.prepare import make_preparer
    ctx = {"repo": str(getattr(loaded.repo, "root", "") or ""), "inventory": loaded.inventory_path,
           "layers": [l.value for l in engine.drivers], "timeout": daemon.cfg.timeout_s,
           "attempts": daemon.cfg.attempts, "observed": daemon.cfg.observed, "factory": daemon.cfg.driver_factory,
           "store": daemon.cfg.store_url, "daemon": daemon.cfg.instance}
    prepare = None if daemon.cfg.observed else make_preparer(engine.drivers)
    return Transactions(engine, Journal(daemon.store), context=ctx, prepare=prepare, fence=lambda: _fence(daemon))


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
        daemon._note_failures(res.report, failing)
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
        due = [r for r in journal.unfinished()
               if (r.state == TxnState.PENDING_CONFIRM.value and (r.deadline or 0) <= now)
               or (r.state == TxnState.ROLLBACK_PENDING.value and now - r.updated >= UNKNOWN_RETRY_S)
               or (r.state != TxnState.PENDING_CONFIRM.value and not owner_alive(r.owner))]
    except Exception as exc:  # the store is down: nothing can be decided without the journal
        log.debug("txn tick: %s", exc)
        return
    if not due or not daemon._run_lock.acquire(blocking=False):
        return
    try:
        for res in transactions_for(daemon, engine, loaded).recover(loaded.targets, loaded.repo.config.ignore):
            _log_result(res)
    except JournalUnavailable as exc:
        log.error("%s", exc)
    finally:
        daemon._run_lock.release()
