"""Allocations in the store: one table, one generation counter, compare-and-swap.

Contract:
- Tables (created on first use, beside the store's own; SQLite or PostgreSQL):
  `ipam_allocations(app, kind, owner, value, revision, updated)` with primary key
  (app, kind, owner) and UNIQUE (kind, value): the database itself refuses one value for two
  owners, whatever the code above it does; `ipam_generation(id=1, generation)`.
- `read(engine) -> Allocations` is a consistent snapshot (generation read before and after the
  rows; retried when a writer came between). A database without the tables reads as empty.
- `commit(engine, result, revision)` applies `result.released` and `result.new` in one
  transaction iff the generation is still `result.previous.generation` (the one the result
  was computed from): `UPDATE ... SET generation = generation + 1 WHERE generation = :seen`.
  Anything else (another writer won, a unique violation, SQLite busy) raises `Conflict`; the
  caller recomputes from a fresh `read` (reconciler.ipam.binding). Returns the new generation.
- `engine_for(url)` opens a URL or SQLite path like the store does (WAL, busy timeout);
  `exists(url)` says whether there is anything to read without creating a database.
"""
from __future__ import annotations

import time
from pathlib import Path

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError, ProgrammingError

from reconciler.ipam.model import EMPTY, Allocations, IpamResult, Kind, Row

_DDL = (
    "CREATE TABLE IF NOT EXISTS ipam_allocations (app VARCHAR(128) NOT NULL, kind VARCHAR(16) NOT NULL, "
    "owner VARCHAR(200) NOT NULL, value VARCHAR(32) NOT NULL, revision VARCHAR(64) NOT NULL DEFAULT '', "
    "updated FLOAT NOT NULL DEFAULT 0, PRIMARY KEY (app, kind, owner), "
    "CONSTRAINT ipam_unique_value UNIQUE (kind, value))",
    "CREATE TABLE IF NOT EXISTS ipam_generation (id INTEGER PRIMARY KEY, generation INTEGER NOT NULL)",
)


class Conflict(Exception):
    """Another writer changed the allocations since they were read: recompute and try again."""


def _url(url_or_path: str) -> str:
    return url_or_path if "://" in url_or_path else f"sqlite:///{Path(url_or_path).resolve()}"


def exists(url_or_path: str) -> bool:
    url = _url(url_or_path)
    return not url.startswith("sqlite:///") or Path(url[len("sqlite:///"):]).is_file()


def engine_for(url_or_path: str) -> Engine:
    url = _url(url_or_path)
    if not url.startswith("sqlite"):
        return create_engine(url, pool_pre_ping=True, connect_args={"connect_timeout": 5})
    Path(url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn, _rec):  # noqa: ANN001
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()

    return engine


def ensure_tables(engine: Engine) -> None:
    """Create the tables and the generation row; concurrent first uses may race, so retry."""
    for attempt in range(5):
        try:
            with engine.begin() as conn:
                for ddl in _DDL:
                    conn.execute(text(ddl))
                if conn.execute(text("SELECT generation FROM ipam_generation WHERE id = 1")).first() is None:
                    conn.execute(text("INSERT INTO ipam_generation (id, generation) VALUES (1, 0)"))
            return
        except (IntegrityError, ProgrammingError, OperationalError):
            if attempt == 4:
                raise
            time.sleep(0.05 * (attempt + 1))


def _generation(conn) -> int | None:  # noqa: ANN001
    try:
        row = conn.execute(text("SELECT generation FROM ipam_generation WHERE id = 1")).first()
    except (OperationalError, ProgrammingError):
        return None  # no tables yet: nothing was ever allocated
    return None if row is None else int(row[0])


def generation(engine: Engine) -> int:
    """The store's allocation generation (0: nothing recorded yet)."""
    with engine.connect() as conn:
        g = _generation(conn)
        conn.rollback()
    return g or 0


def read(engine: Engine, app: str | None = None) -> Allocations:
    for _ in range(50):
        with engine.connect() as conn:
            before = _generation(conn)
            if before is None:
                conn.rollback()
                return EMPTY
            q = "SELECT app, kind, owner, value FROM ipam_allocations"
            rows = conn.execute(text(q + (" WHERE app = :app" if app else "")), {"app": app} if app else {}).all()
            after = _generation(conn)
            conn.rollback()
        if before == after:
            return Allocations.from_rows((Row(r[0], Kind(r[1]), r[2], r[3]) for r in rows), before)
    raise Conflict("allocations kept changing while being read (50 attempts)")


def commit(engine: Engine, result: IpamResult, revision: str = "") -> int:
    seen = result.previous.generation
    if not result.changed:
        return seen
    ensure_tables(engine)
    now = time.time()
    try:
        with engine.begin() as conn:
            upd = conn.execute(text("UPDATE ipam_generation SET generation = generation + 1 "
                                    "WHERE id = 1 AND generation = :g"), {"g": seen})
            if upd.rowcount != 1:
                raise Conflict(f"allocations changed since generation {seen}")
            for r in result.released:
                conn.execute(text("DELETE FROM ipam_allocations WHERE app = :a AND kind = :k AND owner = :o"),
                             {"a": r.app, "k": r.kind.value, "o": r.owner})
            if result.new:
                conn.execute(text("INSERT INTO ipam_allocations (app, kind, owner, value, revision, updated) "
                                  "VALUES (:a, :k, :o, :v, :rev, :t)"),
                             [{"a": r.app, "k": r.kind.value, "o": r.owner, "v": r.value, "rev": revision[:64],
                               "t": now} for r in result.new])
    except IntegrityError as exc:
        raise Conflict(f"a value was taken concurrently: {str(exc.orig).splitlines()[0]}") from None
    except OperationalError as exc:
        if "locked" in str(exc.orig) or "busy" in str(exc.orig):
            raise Conflict("database busy") from None
        raise
    except DBAPIError as exc:  # PostgreSQL serialization failures and friends
        if getattr(exc.orig, "sqlstate", "") in ("40001", "40P01"):
            raise Conflict("serialization failure") from None
        raise
    return seen + 1
