"""History and current-state store (SQLModel): SQLite file by default, PostgreSQL by URL.

Contract:
- `Store(url)` opens the database and checks `schema_version`: an empty database is
  created at `SCHEMA_VERSION`; an older one is migrated by `MIGRATIONS` (none yet) or
  refused; a newer one, or tables without a version row, raise `SchemaMismatch` (a
  database is never silently misread).
- Writes come from engine events: `store.observer(event)` is subscribed to the engine's
  `EventBus`; the rows each event makes are written by store_events.py. The store never
  calls a driver. If the database is unreachable the events
  are kept in order in a bounded memory queue and written by a later `flush()` (the daemon
  calls it periodically); `available` says whether the last write worked.
- Read API (stable, used by the TUI and the CLI): `apps() -> list[AppStatus]`,
  `runs(app=None, limit=50)`, `drift_events(app=None, limit=100)`, `resources(app=None)`,
  `set_self_heal(app, bool|None)`, plus `run(run_id)`, `results(run_id)`,
  `target_revisions()`, `hold()`. `prune_history()` drops old drift scans that found nothing.
- Every text that goes in is passed through `redact.REDACTOR` (no secret in the store).
"""
from __future__ import annotations

import collections
import contextlib
import json
import logging
import threading
import time
from pathlib import Path
from typing import Any, Iterable, Iterator

from sqlalchemy import event as sa_event
from sqlalchemy import inspect, text
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlmodel import Session, SQLModel, create_engine, delete, select

from reconciler.events import Event, EventKind
from reconciler.filelock import exclusive
from reconciler.redact import REDACTOR
from reconciler.service import shard_models  # noqa: F401  shard tables live on the same metadata
from reconciler.service import store_verify as _reach_models  # noqa: F401  (reachability tables, same metadata)
from reconciler.service.store_events import remember, write_event
from reconciler.service.store_models import (
    SCHEMA_VERSION,
    AppStateRow,
    AppStatus,
    DriftEventRow,
    Hold,
    ResourceResultRow,
    ResourceStateRow,
    RunRow,
    ServiceStateRow,
    TargetRevisionRow,
)
from reconciler.status import Health, Phase, Sync
from reconciler.txn import models as _txn_models  # noqa: F401  (journal tables on the same metadata)

log = logging.getLogger("reconciler.service.store")

__all__ = ["Store", "SchemaMismatch", "AppStatus", "Hold", "RunRow", "DriftEventRow", "ResourceStateRow",
           "ResourceResultRow", "SCHEMA_VERSION", "sqlite_url"]

# version -> function(connection) upgrading from that version to version+1
MIGRATIONS: dict[int, Any] = {}
MAX_PENDING = 20000
RETRY_S = 5.0
SCHEMA_LOCK_KEY = 0x4E49_5343  # "NISC": the advisory lock serialising schema creation on PostgreSQL


class SchemaMismatch(Exception):
    """The database holds another schema version (or is not a reconciler store)."""


def sqlite_url(path: str | Path) -> str:
    return f"sqlite:///{Path(path).resolve()}"


def _url(url_or_path: str) -> str:
    return url_or_path if "://" in url_or_path else sqlite_url(url_or_path)


class Store:
    def __init__(self, url: str, *, owner: str = "", connect_timeout_s: int = 3) -> None:
        self.url = _url(url)
        self.owner = owner
        self.is_postgres = self.url.startswith("postgresql")
        if self.url.startswith("sqlite"):
            self.engine = create_engine(self.url, connect_args={"check_same_thread": False, "timeout": 30})

            @sa_event.listens_for(self.engine, "connect")
            def _pragmas(dbapi_conn, _rec):  # noqa: ANN001
                cur = dbapi_conn.cursor()
                cur.execute("PRAGMA journal_mode=WAL")
                cur.execute("PRAGMA busy_timeout=30000")
                cur.close()
        else:
            self.engine = create_engine(self.url, pool_pre_ping=True,
                                        connect_args={"connect_timeout": connect_timeout_s})
        self._lock = threading.RLock()
        self._pending: collections.deque[Event] = collections.deque()
        self._dropped = 0
        self._ctx: dict[str, dict[str, Any]] = {}
        self.available = True
        self.last_error = ""
        self._retry_at = 0.0
        self.check_schema()

    # ---- schema ---------------------------------------------------------------------------
    def check_schema(self) -> None:
        # Several processes may open a new database at once (daemons, the CLI): one creates the
        # schema while the others wait and then find it, instead of racing to CREATE TABLE.
        with self._schema_lock(), self.engine.begin() as conn:
            if self.is_postgres:  # held to the end of this transaction; DDL is transactional there
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": SCHEMA_LOCK_KEY})
            tables = set(inspect(conn).get_table_names())
            ours = set(SQLModel.metadata.tables)
            if "schema_version" not in tables:
                if tables & ours:
                    raise SchemaMismatch(f"{self._where()}: has reconciler tables but no schema_version; "
                                         "refusing to guess its layout (move it aside or migrate it by hand)")
                SQLModel.metadata.create_all(conn, tables=[SQLModel.metadata.tables[t] for t in ours])
                conn.execute(text("INSERT INTO schema_version (id, version, app_name) VALUES (1, :v, :n)"),
                             {"v": SCHEMA_VERSION, "n": "netintent-reconciler"})
                return
            row = conn.execute(text("SELECT version FROM schema_version WHERE id = 1")).first()
            if row is None:
                raise SchemaMismatch(f"{self._where()}: schema_version table is empty")
            version = int(row[0])
            if version > SCHEMA_VERSION:
                raise SchemaMismatch(f"{self._where()}: schema version {version} is newer than this reconciler "
                                     f"understands ({SCHEMA_VERSION}); upgrade the reconciler")
            while version < SCHEMA_VERSION:
                step = MIGRATIONS.get(version)
                if step is None:
                    raise SchemaMismatch(f"{self._where()}: schema version {version} is older than {SCHEMA_VERSION} "
                                         "and no migration exists for it")
                step(conn)
                version += 1
                conn.execute(text("UPDATE schema_version SET version = :v WHERE id = 1"), {"v": version})
            SQLModel.metadata.create_all(conn)  # tables added within a version (none today)

    @contextlib.contextmanager
    def _schema_lock(self) -> Iterator[None]:
        """An exclusive file lock next to a SQLite file (PostgreSQL uses an advisory lock)."""
        db = self.engine.url.database if self.url.startswith("sqlite") else None
        if not db or db == ":memory:":
            yield
            return
        with exclusive(f"{db}.schema-lock"):
            yield

    def _where(self) -> str:
        return self.engine.url.render_as_string(hide_password=True)

    def close(self) -> None:
        self.engine.dispose()

    # ---- writes from engine events -----------------------------------------------------
    def observer(self, ev: Event) -> None:
        """EventBus observer. Never raises; keeps events while the database is unreachable."""
        if ev.kind in (EventKind.OBSERVED, EventKind.APPLY_STARTED, EventKind.APPLIED, EventKind.DRIVER_LOG):
            return
        with self._lock:
            remember(self._ctx, ev)
            self._pending.append(ev)
            if len(self._pending) > MAX_PENDING:
                self._pending.popleft()
                self._dropped += 1
            if self.available or time.monotonic() >= self._retry_at:
                self._drain()

    def flush(self) -> bool:
        """Write queued events; True when nothing is left queued."""
        with self._lock:
            self._drain()
            return not self._pending

    @property
    def pending(self) -> int:
        return len(self._pending)

    def _drain(self) -> None:
        while self._pending:
            ev = self._pending[0]
            try:
                with Session(self.engine, expire_on_commit=False) as s:
                    write_event(s, ev, self._ctx, self.owner)
                    s.commit()
            except (OperationalError, DBAPIError) as exc:
                self._unavailable(exc)
                return
            except Exception:  # a bug with one event must not block the queue forever
                log.exception("store: cannot record %s event of run %s; skipped", ev.kind.value, ev.run_id)
            self._pending.popleft()
            if not self.available:
                log.info("store: database reachable again")
            self.available, self.last_error = True, ""
            if ev.kind is EventKind.RUN_FINISHED:
                self._ctx.pop(ev.run_id, None)

    def _unavailable(self, exc: Exception) -> None:
        msg = REDACTOR.text(str(getattr(exc, "orig", exc)).strip().splitlines()[0] if str(exc).strip() else repr(exc))
        if self.available:
            log.warning("store: database unreachable, keeping %d event(s) in memory: %s", len(self._pending), msg)
        self.available, self.last_error = False, msg
        self._retry_at = time.monotonic() + RETRY_S

    # ---- explicit writes (daemon) ------------------------------------------------------
    def record_run(self, run_id: str, *, revision: str, trigger: str, phase: Phase, error: str = "",
                   apps: Iterable[str] = (), started: float | None = None) -> None:
        """A run that never reached the engine (e.g. a refused commit)."""
        now = time.time()
        with Session(self.engine) as s:
            s.add(RunRow(run_id=run_id, revision=revision, trigger=trigger[:32], phase=phase.value,
                         started=started or now, finished=now, duration=now - (started or now),
                         apps=json.dumps(sorted(apps)), error=REDACTOR.text(error)[:8000], owner=self.owner,
                         converged=False))
            s.commit()

    def mark_interrupted(self) -> list[str]:
        """Runs still RUNNING (their process died): mark INTERRUPTED. Call as the only writer."""
        with Session(self.engine) as s:
            rows = s.exec(select(RunRow).where(RunRow.phase == Phase.RUNNING.value)).all()
            now = time.time()
            for r in rows:
                r.phase = Phase.INTERRUPTED.value
                r.finished = now
                r.error = (r.error + "; " if r.error else "") + "process ended before the run finished"
                s.add(r)
            s.commit()
            return [r.run_id for r in rows]

    def set_service(self, name: str, value: Any) -> None:
        with Session(self.engine) as s:
            row = s.get(ServiceStateRow, name) or ServiceStateRow(name=name)
            row.value, row.updated = json.dumps(REDACTOR.value(value)), time.time()
            s.add(row)
            s.commit()

    def service(self, name: str, default: Any = None) -> Any:
        with Session(self.engine) as s:
            row = s.get(ServiceStateRow, name)
            return default if row is None else json.loads(row.value)

    def set_hold(self, revision: str, branch_head: str) -> None:
        self.set_service("hold", {"revision": revision, "branch_head": branch_head, "since": time.time()})
        with Session(self.engine) as s:
            for st in s.exec(select(AppStateRow)).all():
                st.held_revision = revision
                s.add(st)
            s.commit()

    def release_hold(self) -> None:
        self.set_service("hold", None)
        with Session(self.engine) as s:
            for st in s.exec(select(AppStateRow)).all():
                st.held_revision = ""
                s.add(st)
            s.commit()

    def hold(self) -> Hold | None:
        h = self.service("hold")
        return Hold(h["revision"], h["branch_head"], float(h["since"])) if h else None

    def carry_revision(self, apps: Iterable[str], from_revision: str, to_revision: str) -> int:
        """Apps a revision left unchanged are at it once it is in place (service/touched.py):
        those of `apps` still recorded at `from_revision` move to `to_revision`. Returns how many."""
        wanted = set(apps)
        moved = 0
        with Session(self.engine) as s:
            for st in s.exec(select(AppStateRow).where(AppStateRow.revision == from_revision)).all():
                if st.app in wanted:
                    st.revision, moved = to_revision, moved + 1
                    s.add(st)
            s.commit()
        return moved

    def set_self_heal(self, app: str, value: bool | None) -> None:
        with Session(self.engine) as s:
            st = s.get(AppStateRow, app) or AppStateRow(app=app)
            st.self_heal = value
            s.add(st)
            s.commit()

    # ---- reads -------------------------------------------------------------------------
    def apps(self) -> list[AppStatus]:
        hold = self.hold()
        with Session(self.engine) as s:
            rows = s.exec(select(AppStateRow).order_by(AppStateRow.app)).all()
        return [AppStatus(app=r.app, revision=r.revision, sync=Sync(r.sync), health=Health(r.health),
                          last_sync=r.last_sync, drift_count=r.drift_count, self_heal=r.self_heal,
                          held_revision=hold.revision if hold else "", message=r.message,
                          last_scan=r.last_scan, last_run=r.last_run) for r in rows]

    def runs(self, app: str | None = None, limit: int = 50) -> list[RunRow]:
        with Session(self.engine, expire_on_commit=False) as s:
            q = select(RunRow)
            if app:
                q = q.where(RunRow.apps.like(f'%"{_like(app)}"%', escape="\\"))  # type: ignore[attr-defined]
            return list(s.exec(q.order_by(RunRow.started.desc()).limit(limit)).all())  # type: ignore[attr-defined]

    def run(self, run_id: str) -> RunRow | None:
        with Session(self.engine, expire_on_commit=False) as s:
            return s.get(RunRow, run_id)

    def results(self, run_id: str) -> list[ResourceResultRow]:
        with Session(self.engine, expire_on_commit=False) as s:
            return list(s.exec(select(ResourceResultRow).where(ResourceResultRow.run_id == run_id)
                                .order_by(ResourceResultRow.id)).all())  # type: ignore[arg-type]  # SQLModel types `id` as int | None

    def drift_events(self, app: str | None = None, limit: int = 100) -> list[DriftEventRow]:
        with Session(self.engine, expire_on_commit=False) as s:
            q = select(DriftEventRow)
            if app:
                q = q.where(DriftEventRow.app == app)
            return list(s.exec(q.order_by(DriftEventRow.ts.desc(), DriftEventRow.id.desc()).limit(limit)).all())  # type: ignore[attr-defined,union-attr]  # SQLModel columns typed as values

    def resources(self, app: str | None = None) -> list[ResourceStateRow]:
        with Session(self.engine, expire_on_commit=False) as s:
            q = select(ResourceStateRow)
            if app:
                q = q.where(ResourceStateRow.app == app)
            return list(s.exec(q.order_by(ResourceStateRow.key)).all())

    def target_revisions(self) -> dict[str, str]:
        with Session(self.engine) as s:
            return {r.target: r.revision for r in s.exec(select(TargetRevisionRow)).all()}

    def ping(self) -> bool:
        try:
            with self.engine.connect() as c:
                c.execute(text("SELECT 1"))
            return True
        except (OperationalError, DBAPIError):
            return False

    def prune_history(self, keep_quiet_scans: int = 500) -> int:
        """Forget drift scans that found nothing, beyond the newest `keep_quiet_scans` of
        them (a scan every 30 s would otherwise add ~2900 rows a day). Runs that applied,
        failed or found drift are always kept."""
        with Session(self.engine) as s:
            old = s.exec(select(RunRow.run_id).where(RunRow.dry_run == True)  # noqa: E712
                         .where(RunRow.phase == Phase.SUCCEEDED.value)
                         .order_by(RunRow.started.desc()).offset(keep_quiet_scans)).all()  # type: ignore[attr-defined]
            if not old:
                return 0
            noisy = set(s.exec(select(DriftEventRow.run_id).where(DriftEventRow.run_id.in_(old))).all())  # type: ignore[attr-defined]
            quiet = [r for r in old if r not in noisy]
            for i in range(0, len(quiet), 500):
                s.exec(delete(RunRow).where(RunRow.run_id.in_(quiet[i:i + 500])))  # type: ignore[attr-defined]
            s.commit()
            return len(quiet)




def _like(s: str) -> str:
    return s.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
