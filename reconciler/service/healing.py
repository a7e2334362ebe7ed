"""The daemon's repair loop between commits: drift scans, self-heal, retries with backoff.

Contract (functions over the running Daemon, like txn/service.py and shard_fence.py):
- `drift_scan(daemon)`: the leader's periodic dry run over every target of the current revision
  (with --shards only its apps and, when it owns it, the fabric), its reachability verification,
  then self-heal of the apps that drifted or got a new leak, where self-heal is on (the app's
  override in the store, else the repo's sync policy) and a sync window allows it; the drift of
  the others is reported only. A scan is skipped while a run is going on (the next one scans).
- `retry_due(daemon)`: applies again the apps whose retry time came.
- `note_failures(daemon, report, apps)`: after a run, per app (the fabric too): a failure
  doubles its retry delay up to `retry_max_s`; a success clears it (`daemon.retries`,
  retries.py).
What they use of the daemon is its public face: `current`, `is_leader`, `shard`, `store`,
`reach`, `cfg`, `retries`, `run_lock`, `engine_for`, `windows_allow`, `apply_revision`.
"""
from __future__ import annotations

import logging
import time
import uuid
from typing import Any

from reconciler.report import RunReport
from reconciler.service.config import FABRIC, app_label
from reconciler.service.config import safe as _safe

log = logging.getLogger("reconciler.service.daemon")


def drift_scan(daemon: Any) -> None:
    """The leader's dry run over every target of the current revision, then self-heal."""
    loaded = daemon.current
    if not daemon.is_leader or loaded is None:
        return
    if not daemon.run_lock.acquire(blocking=False):
        return  # a run is going on; the next interval scans
    try:
        cfg = loaded.repo.config
        engine = daemon.engine_for(loaded, "drift-scan")
        if engine is None:
            return
        mine = None if daemon.shard is None else daemon.shard.mine([FABRIC, *loaded.repo.apps])
        if mine == []:
            return
        report = engine.run(loaded.desired, loaded.targets, prune=cfg.sync.prune, dry_run=True,
                            ignore=cfg.ignore, revision=loaded.revision, apps=mine,
                            run_id=uuid.uuid4().hex[:12], trigger="drift-scan")
        leaky = daemon.reach.after_run(loaded, report, engine)   # a new leak is drift: healed below
    finally:
        daemon.run_lock.release()
    # The fabric ("") is drift like any app's: it used to be filtered out here, so a deleted
    # uplink isolation flow was reported on every scan and never repaired.
    drifted = sorted({a for a in report.apps() if report.initial.for_app(a).changes} | leaky)
    if not drifted:
        return
    overrides = {a.app: a.self_heal for a in (_safe(daemon.store.apps, []) or [])}
    heal = [a for a in drifted if (overrides.get(a) if overrides.get(a) is not None else cfg.sync.self_heal)]
    report_only = sorted(set(drifted) - set(heal))
    if report_only:
        names = [app_label(a) for a in report_only]
        log.info("drift reported (self-heal off): %s", ", ".join(names), extra={"ctx": {"apps": names}})
    if not heal:
        return
    ok, why = daemon.windows_allow(loaded)
    if not ok:
        log.info("self-heal of %s denied: %s", ", ".join(app_label(a) for a in heal), why)
        return
    daemon.apply_revision(loaded, "self-heal", heal, blocking=False)


def retry_due(daemon: Any) -> None:
    """Apply again the apps whose retry time came (inside the sync windows)."""
    loaded = daemon.current or daemon.retries.loaded
    if not daemon.is_leader or loaded is None or not daemon.retries:
        return
    due = daemon.retries.due(time.monotonic(), lambda a: a == FABRIC or a in loaded.repo.apps)
    if not due or not daemon.windows_allow(loaded)[0]:
        return
    daemon.apply_revision(loaded, "retry", due, blocking=False)


def note_failures(daemon: Any, report: RunReport, apps: list[str] | None) -> None:
    """Backoff per app: a failure doubles its retry delay up to retry_max_s; a success clears it."""
    now = time.monotonic()
    for app in (apps or report.apps()):  # the fabric ("") too: retried like an application
        bad = any(app in t.apps and not t.ok for t in report.targets.values()) or \
            bool(report.residual.for_app(app).changes)
        if bad:
            n, delay = daemon.retries.fail(app, now)
            log.warning("app %s failed (%d in a row); retry in %.1fs", app_label(app), n, delay,
                        extra={"ctx": {"app": app, "failures": n, "retry_in_s": delay}})
        else:
            daemon.retries.clear(app)
