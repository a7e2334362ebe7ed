"""What a compliance report reads from the history store, in a few bulk queries (read-only).

Contract: `read_store(store, since=None)` returns `StoreRecords`, plain frozen data for the
pure `build` stage:
- `resources`: every row of `resource_state` as (key, app, status) in the store's vocabulary
  (synced, create, update, delete, orphan, unknown); the big desired/observed JSON columns are
  never read.
- `outcomes`: per app, the per-resource outcomes of that app's last run (`app_state.last_run`;
  for the fabric, which has no app_state row, the run that wrote its resource states), with
  `dry_runs` naming which of those runs were dry: the resource states are written when a run
  starts, its results say what became of the drift.
- `last_changes` / `changes`: per app, the newest non-dry run that applied one of its resources
  (revision, time, trigger, how many), and how many resources were applied inside the window
  (`since`, or all history).
- `violations`: the daemon's stored reachability results (service/store_verify.py: the
  violations and leaks of every application it verified; an application it did not verify
  is absent), else None; `note` says which.
It writes nothing, never calls a driver, and reads each table once (10,000 apps: well under 1 s).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Mapping, NamedTuple

from sqlalchemy import inspect, text

from reconciler.compliance.model import FABRIC_LABEL, LastChange, Violation, iso
from reconciler.service.store_models import AppStateRow, ResourceResultRow, ResourceStateRow, RunRow
from reconciler.service.store_verify import ReachabilityFindingRow, ReachabilitySummaryRow
from reconciler.status import Outcome
from reconciler.verify.addr import no_gc

NO_VERIFICATION = ("the store holds no reachability results (the daemon records them when it verifies); "
                   "`reconciler report REPO` verifies on a fresh observation")
_CHUNK = 500


class ResourceRecord(NamedTuple):
    key: str        # layer/target/kind/name
    app: str        # "" for the fabric
    status: str     # store vocabulary: synced, create, update, delete, orphan, unknown


class AppRecord(NamedTuple):
    app: str
    revision: str
    sync: str
    last_sync: float | None
    last_scan: float | None
    last_run: str
    message: str


@dataclass(frozen=True)
class StoreRecords:
    resources: tuple[ResourceRecord, ...] = ()
    apps: Mapping[str, AppRecord] = field(default_factory=dict)
    outcomes: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    dry_runs: frozenset[str] = frozenset()
    last_changes: Mapping[str, LastChange] = field(default_factory=dict)
    changes: Mapping[str, int] = field(default_factory=dict)
    applied_revision: str = ""
    violations: Mapping[str, tuple[Violation, ...]] | None = None
    note: str = NO_VERIFICATION


def read_store(store: Any, since: float | None = None) -> StoreRecords:
    """Every record the report needs, from `store` (a `reconciler.service.store.Store`)."""
    with no_gc(), store.engine.connect() as conn:   # 300,000 row tuples: no collector passes over them
        resources = _resource_rows(conn)
        apps = {r[0]: AppRecord(r[0], r[1] or "", r[2] or "", r[3], r[4], r[5] or "", r[6] or "")
                for r in conn.execute(text(
                    f"SELECT app, revision, sync, last_sync, last_scan, last_run, message "
                    f"FROM {AppStateRow.__tablename__}"))}
        if "" not in apps and any(r[1] == "" for r in resources):
            apps[""] = _fabric(conn)
        outcomes, dry = _last_run_outcomes(conn, apps)
        last, changes = _changes(conn, since)
        applied = conn.execute(text("SELECT value FROM service_state WHERE name = 'applied_revision'")).scalar()
        violations, note = _stored_violations(conn)
    return StoreRecords(resources, apps, outcomes, dry, last, changes, _json_str(applied), violations, note)


def _resource_rows(conn: Any) -> tuple[ResourceRecord, ...]:
    """(key, app, status) of every resource state, through the driver's own cursor: at 300,000
    rows SQLAlchemy's row objects cost more than the query (the rows stay plain tuples)."""
    cur = conn.connection.cursor()
    try:
        cur.execute(f"SELECT key, app, status FROM {ResourceStateRow.__tablename__}")
        return tuple(cur.fetchall())
    finally:
        cur.close()


def _fabric(conn: Any) -> AppRecord:
    """The fabric ("") has no app_state row: its last run is the one that wrote its resource
    states (runs do not overlap: the newest run started by then)."""
    updated = conn.execute(text(f"SELECT MAX(updated) FROM {ResourceStateRow.__tablename__} WHERE app = ''")).scalar()
    run = conn.execute(text(f"SELECT run_id FROM {RunRow.__tablename__} WHERE started <= :u "
                            "ORDER BY started DESC LIMIT 1"), {"u": updated or 0.0}).scalar()
    return AppRecord("", "", "", None, None, run or "", "")


def _last_run_outcomes(conn: Any, apps: Mapping[str, AppRecord]
                       ) -> tuple[dict[str, dict[str, str]], frozenset[str]]:
    runs = sorted({a.last_run for a in apps.values() if a.last_run})
    last_of = {name: a.last_run for name, a in apps.items()}
    outcomes: dict[str, dict[str, str]] = {}
    dry: set[str] = set()
    for i in range(0, len(runs), _CHUNK):
        part = runs[i:i + _CHUNK]
        marks = ", ".join(f":r{j}" for j in range(len(part)))
        binds = {f"r{j}": r for j, r in enumerate(part)}
        dry |= {r for r, d in conn.execute(text(
            f"SELECT run_id, dry_run FROM {RunRow.__tablename__} WHERE run_id IN ({marks})"), binds) if d}
        for run_id, app, key, outcome in conn.execute(text(
                f"SELECT run_id, app, key, outcome FROM {ResourceResultRow.__tablename__} "
                f"WHERE run_id IN ({marks}) ORDER BY id"), binds):
            if last_of.get(app or "", "") == run_id:
                outcomes.setdefault(app or "", {})[key] = outcome
    return outcomes, frozenset(dry)


def _changes(conn: Any, since: float | None) -> tuple[dict[str, LastChange], dict[str, int]]:
    """Per app: the newest run that applied one of its resources, and how many it applied
    inside the window. Counted per (app, run) first, then joined with the few runs in Python
    (a join per result row costs twice as much at 300,000 results)."""
    counts = conn.execute(text(
        f"SELECT app, run_id, COUNT(*) FROM {ResourceResultRow.__tablename__} WHERE outcome = :applied "
        f"GROUP BY app, run_id"), {"applied": Outcome.APPLIED.value}).all()
    run_ids = sorted({r[1] for r in counts})
    runs: dict[str, tuple[str, float, str, float]] = {}
    for i in range(0, len(run_ids), _CHUNK):
        part = run_ids[i:i + _CHUNK]
        binds = {f"r{j}": r for j, r in enumerate(part)}
        marks = ", ".join(f":r{j}" for j in range(len(part)))
        for run_id, revision, finished, started, trigger, dry in conn.execute(text(
                f"SELECT run_id, revision, finished, started, trigger, dry_run FROM {RunRow.__tablename__} "
                f"WHERE run_id IN ({marks})"), binds):
            if not dry and (since is None or (started or 0.0) >= since):
                runs[run_id] = (revision or "", float(finished or started or 0.0), trigger or "", started or 0.0)
    last: dict[str, LastChange] = {}
    changes: dict[str, int] = {}
    for app, run_id, n in counts:
        run = runs.get(run_id)
        if run is None:
            continue
        app = app or ""
        changes[app] = changes.get(app, 0) + int(n)
        prev = last.get(app)
        if prev is None or (run[1], run_id) > (prev.at, prev.run_id):
            last[app] = LastChange(run_id, run[0], run[1], run[2], int(n))
    return last, changes


def _stored_violations(conn: Any) -> tuple[dict[str, tuple[Violation, ...]] | None, str]:
    """The daemon's reachability results (service/store_verify.py): the violations and leaks of
    every application it verified; None when the store holds no verification."""
    tables = set(inspect(conn).get_table_names())
    if not {ReachabilitySummaryRow.__tablename__, ReachabilityFindingRow.__tablename__} <= tables:
        return None, NO_VERIFICATION
    summary = {app or "": (int(v or 0) + int(lk or 0), verified, revision or "") for app, v, lk, verified, revision
               in conn.execute(text(f"SELECT app, violations, leaks, verified, revision "
                                    f"FROM {ReachabilitySummaryRow.__tablename__}"))}
    if not summary:
        return None, NO_VERIFICATION
    out: dict[str, list[Violation]] = {app: [] for app in summary}
    for app, kind, source, dest, port in conn.execute(text(
            f"SELECT app, kind, source, dest, port FROM {ReachabilityFindingRow.__tablename__} "
            f"WHERE kind IN ('violation', 'leak') ORDER BY id")):
        if (app or "") in out:
            out[app or ""].append(Violation(kind, source, dest, _port(port)))
    newest = max(summary.values(), key=lambda v: v[1] or 0.0)
    cut = sorted(a or FABRIC_LABEL for a, (n, _, _) in summary.items() if n > len(out[a]))
    note = (f"verified by the daemon: {len(summary)} application(s), the newest at "
            f"{iso(newest[1])} (revision {newest[2][:12] or '?'})")
    if cut:
        note += f"; only the first findings are stored for {', '.join(cut[:10])}{' ...' if len(cut) > 10 else ''}"
    return {a: tuple(v) for a, v in out.items()}, note


def _port(text_: Any) -> int:
    """The port of a stored finding ("8080/tcp (grpc)")."""
    head = str(text_ or "").split("/", 1)[0]
    return int(head) if head.isdigit() else 0


def _json_str(value: Any) -> str:
    if not value:
        return ""
    try:
        got = json.loads(value)
    except ValueError:
        return ""
    return got if isinstance(got, str) else ""
