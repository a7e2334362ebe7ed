"""Leader lock: only one daemon applies at a time.

Contract: `leader_lock(store_url)` returns a lock with `try_acquire() -> bool` (never
blocks long), `alive() -> bool` (still ours? checked before every apply) and `release()`.
- PostgreSQL: a session-level advisory lock (`pg_try_advisory_lock`) held on a dedicated
  connection with TCP keepalives. When the holder dies (even `kill -9`) the server ends its
  session and frees the lock, so a standby's next `try_acquire` wins. If the connection
  breaks, `alive()` is False and the daemon stops applying until it reacquires.
- SQLite (single machine): an exclusive `flock` on `<db file>.leader`; the kernel frees it
  when the holder dies.
"""
from __future__ import annotations

import fcntl
import logging
import os
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url

log = logging.getLogger("reconciler.service.leader")

LOCK_KEY = 0x6E6574696E74  # "netint"


class FileLock:
    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._fd: int | None = None

    def try_acquire(self) -> bool:
        if self._fd is not None:
            return True
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd
        return True

    def alive(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        if self._fd is not None:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            finally:
                os.close(self._fd)
                self._fd = None


class PgAdvisoryLock:
    def __init__(self, url: str, key: int = LOCK_KEY, connect_timeout_s: int = 3) -> None:
        u = make_url(url)
        self._dsn = u.set(drivername="postgresql").render_as_string(hide_password=False)
        self.key = key
        self.connect_timeout_s = connect_timeout_s
        self._conn: Any = None   # psycopg.Connection while the lock is held

    def try_acquire(self) -> bool:
        import psycopg
        if self._conn is not None:
            return self.alive()
        try:
            conn = psycopg.connect(self._dsn, autocommit=True, connect_timeout=self.connect_timeout_s,
                                   keepalives=1, keepalives_idle=5, keepalives_interval=2, keepalives_count=3,
                                   application_name="netintent-reconciler-leader")
        except psycopg.Error as exc:
            log.warning("leader lock: database unreachable: %s", str(exc).splitlines()[0] if str(exc) else exc)
            return False
        try:
            row = conn.execute("SELECT pg_try_advisory_lock(%s)", (self.key,)).fetchone()
            got = bool(row and row[0])
        except psycopg.Error:
            conn.close()
            return False
        if not got:
            conn.close()
            return False
        self._conn = conn
        return True

    def alive(self) -> bool:
        import psycopg
        if self._conn is None:
            return False
        try:
            self._conn.execute("SELECT 1")
            return True
        except psycopg.Error:
            try:
                self._conn.close()
            except Exception:
                pass
            self._conn = None
            return False

    def release(self) -> None:
        if self._conn is not None:
            try:
                self._conn.execute("SELECT pg_advisory_unlock(%s)", (self.key,))
                self._conn.close()
            except Exception:
                pass
            self._conn = None


def leader_lock(store_url: str):
    if store_url.startswith("postgresql"):
        return PgAdvisoryLock(store_url)
    path = make_url(store_url).database if "://" in store_url else store_url
    if not path or path == ":memory:":
        raise ValueError("the leader lock needs a database file or a PostgreSQL URL")
    return FileLock(str(Path(path).resolve()) + ".leader")
