"""Rows the store writes for engine events: runs, drift, per-resource results and state, and
each app's sync and health after a run.

Contract: `remember(runs, ev)` keeps in memory the per-run facts later rows need (dry run,
trigger, failures per app), so a database outage loses nothing; `write_event(session, ev, runs,
owner)` adds the rows for one event to the session without committing (the caller, Store,
commits, retries and queues). Every text that goes in passes `redact.REDACTOR`.
"""
from __future__ import annotations

import collections
import json
from typing import Any

from sqlmodel import Session, select

from reconciler.events import Event, EventKind
from reconciler.redact import REDACTOR
from reconciler.service.store_models import (
    AppStateRow,
    DriftEventRow,
    ResourceResultRow,
    ResourceStateRow,
    RunRow,
    TargetRevisionRow,
)
from reconciler.status import Health, Outcome, Phase, Sync

_OK = {o.value for o in Outcome if o.ok}


def _dumps(v: Any) -> str:
    return json.dumps(REDACTOR.value(v), sort_keys=True, default=str)


def remember(runs: dict[str, dict[str, Any]], ev: Event) -> None:
    """Per-run facts needed later, kept in `runs` (in memory, so a DB outage loses nothing)."""
    if ev.kind is EventKind.RUN_STARTED:
        runs[ev.run_id] = {"dry_run": bool(ev.data.get("dry_run")), "trigger": ev.message,
                                "failed": collections.defaultdict(int), "ts": ev.ts}
    elif ev.kind is EventKind.RESOURCE_RESULT and ev.outcome is not None and not ev.outcome.ok:
        ctx = runs.setdefault(ev.run_id, {"dry_run": False, "trigger": "",
                                               "failed": collections.defaultdict(int)})
        ctx["failed"][ev.app] += 1

def write_event(s: Session, ev: Event, runs: dict[str, dict[str, Any]], owner: str) -> None:
    """Add the rows `ev` makes to session `s` (not committed); `owner` is the writing daemon."""
    ctx = runs.get(ev.run_id, {"dry_run": False, "trigger": "", "failed": {}})
    if ev.kind is EventKind.RUN_STARTED:
        row = s.get(RunRow, ev.run_id) or RunRow(run_id=ev.run_id)
        row.revision = str(ev.data.get("revision") or "")
        row.trigger = ev.message[:32]
        row.phase = Phase.RUNNING.value
        row.dry_run = bool(ev.data.get("dry_run"))
        row.started = ev.ts
        row.rollback = ev.message == "rollback"
        row.owner = owner
        row.apps = json.dumps(ev.data.get("apps") or [])
        s.add(row)
    elif ev.kind is EventKind.DRIFT:
        s.add(DriftEventRow(run_id=ev.run_id, app=ev.app, key=ev.key, action=str(ev.data.get("action", ev.message)),
                            executed=bool(ev.data.get("executed")), diff=_dumps(ev.data.get("diff", [])), ts=ev.ts))
    elif ev.kind is EventKind.RESOURCE_RESULT:
        s.add(ResourceResultRow(run_id=ev.run_id, app=ev.app, key=ev.key,
                                layer=ev.layer.value if ev.layer else "", target=ev.target,
                                outcome=ev.outcome.value if ev.outcome else "", action=ev.message))
    elif ev.kind is EventKind.STATE:
        _write_state(s, ev)
    elif ev.kind is EventKind.RUN_FINISHED:
        _write_finished(s, ev, ctx)

def _write_state(s: Session, ev: Event) -> None:
    rows = ev.data.get("resources", [])
    apps = {r.get("app", "") for r in rows}
    keys = {r["key"] for r in rows}
    if apps:
        existing = s.exec(select(ResourceStateRow).where(ResourceStateRow.app.in_(apps))).all()  # type: ignore[attr-defined]
        for old in existing:
            if old.key not in keys:
                s.delete(old)
    for r in rows:
        row = s.get(ResourceStateRow, r["key"]) or ResourceStateRow(key=r["key"])
        row.app, row.status, row.updated = r.get("app", ""), r.get("status", "synced"), ev.ts
        row.desired = None if r.get("desired") is None else _dumps(r["desired"])
        row.observed = None if r.get("observed") is None else _dumps(r["observed"])
        s.add(row)

def _write_finished(s: Session, ev: Event, ctx: dict[str, Any]) -> None:
    d = ev.data
    dry = bool(ctx.get("dry_run"))
    run = s.get(RunRow, ev.run_id) or RunRow(run_id=ev.run_id, started=ev.ts - float(d.get("duration_s", 0)))
    run.phase = str(d.get("phase", ev.message))
    run.finished = ev.ts
    run.duration = float(d.get("duration_s", 0.0))
    run.apps = json.dumps(sorted(d.get("apps") or []))
    run.writes = int(d.get("writes", 0))
    run.converged = bool(d.get("converged"))
    errors = [f"{t['layer']}/{t['target']}: {t['error']}" for t in d.get("targets", []) if t.get("error")]
    if errors and not run.error:
        run.error = REDACTOR.text("; ".join(errors))[:4000]
    s.add(run)
    if ctx.get("trigger") == "txn-rollback":
        return   # back to a transaction's pre-state, not to a revision: app sync and revisions stay as they were
    revision = str(d.get("revision") or "")
    for app in d.get("apps") or []:
        if app:  # "" : shared resources no application claims
            _write_app_state(s, ev, app, revision, dry, int(ctx.get("failed", {}).get(app, 0)))
    if not dry:
        for t in d.get("targets", []):
            if t.get("outcome") in _OK:
                name = f"{t['layer']}/{t['target']}"
                tr = s.get(TargetRevisionRow, name) or TargetRevisionRow(target=name)
                tr.revision, tr.run_id, tr.applied = revision, ev.run_id, ev.ts
                s.add(tr)


def _write_app_state(s: Session, ev: Event, app: str, revision: str, dry: bool, nfail: int) -> None:
    """The app's sync and health after a run: a scan sets its drift; a clean apply makes it Synced."""
    d = ev.data
    bad = [t for t in d.get("targets", []) if app in t.get("apps", []) and t.get("outcome") not in _OK]
    unreachable = any(t.get("outcome") == Outcome.UNREACHABLE.value for t in bad)
    st = s.get(AppStateRow, app) or AppStateRow(app=app)
    drift = int((d.get("drift") or {}).get(app, 0))
    st.last_run = ev.run_id
    st.message = REDACTOR.text("; ".join(f"{t['layer']}/{t['target']}: {t.get('error') or t.get('outcome')}"
                                         for t in bad))[:2000]
    st.health = (Health.DEGRADED if bad else Health.HEALTHY).value
    if dry:
        st.last_scan = ev.ts
        st.drift_count = drift
        st.sync = (Sync.UNKNOWN if unreachable and not drift else Sync.OUT_OF_SYNC if drift else Sync.SYNCED).value
    elif not bad and not nfail:
        st.sync, st.drift_count, st.last_sync, st.revision = Sync.SYNCED.value, 0, ev.ts, revision
        st.last_scan = ev.ts
    else:
        st.sync = (Sync.UNKNOWN if unreachable else Sync.OUT_OF_SYNC).value
        st.drift_count = nfail or drift
    s.add(st)
