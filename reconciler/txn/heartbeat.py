"""Owner liveness of transactions: a heartbeat in the store, with the local pid check as a fast path.

Contract:
- `Heartbeat(journal, owner)` is a context manager (re-entrant: a rollback inside an apply is
  one holding) that refreshes `owner`'s heartbeat row (`txn_owners`) on entry and then every
  `interval_s` from a daemon thread until the outermost exit. A failed refresh is logged and
  retried at the next beat: the transaction's own journal writes report a database that is down.
- `owner_alive(owner, last_beat, now, ttl_s)`: an owner `host:pid` on THIS host is alive
  exactly while that pid exists (no waiting for an expiry after a local kill -9). Any other
  owner (another host, or a name such as a daemon's `--instance`) is alive while its last sign
  of life — its heartbeat, or the transaction's own last update, whichever is newer — is at
  most `ttl_s` old. `ttl_s` must exceed the beat interval several times (defaults 30 s / 5 s).
"""
from __future__ import annotations

import logging
import os
import socket
import threading
import time
from typing import Any

log = logging.getLogger("reconciler.txn")
HEARTBEAT_INTERVAL_S = 5.0
HEARTBEAT_TTL_S = 30.0


def this_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _local_pid(owner: str) -> int | None:
    host, _, pid = owner.rpartition(":")
    return int(pid) if host == socket.gethostname() and pid.isdigit() else None


def owner_alive(owner: str, last_beat: float | None = None, now: float | None = None,
                ttl_s: float = HEARTBEAT_TTL_S) -> bool:
    """Whether the process that owns a transaction still runs (see the module contract)."""
    pid = _local_pid(owner)
    if pid is not None:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    now = time.time() if now is None else now
    return last_beat is not None and now - last_beat <= ttl_s


def row_owner_alive(row: Any, beats: dict[str, float], now: float | None = None,
                    ttl_s: float = HEARTBEAT_TTL_S) -> bool:
    """`owner_alive` for a journal row: the owner's heartbeat or the row's last update, the newer."""
    last = max(beats.get(row.owner, 0.0), float(row.updated or 0.0)) or None
    return owner_alive(row.owner, last, now, ttl_s)


class Heartbeat:
    def __init__(self, journal: Any, owner: str, interval_s: float = HEARTBEAT_INTERVAL_S) -> None:
        self.journal, self.owner, self.interval_s = journal, owner, interval_s
        self._depth = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _beat(self) -> None:
        try:
            self.journal.beat(self.owner)
        except Exception as exc:   # the journal writes of the transaction itself report it
            log.debug("transaction heartbeat of %s: %s", self.owner, exc)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._beat()

    def __enter__(self) -> "Heartbeat":
        with self._lock:
            self._depth += 1
            if self._depth == 1:
                self._beat()
                self._stop = threading.Event()
                self._thread = threading.Thread(target=self._run, name=f"txn-heartbeat-{self.owner}", daemon=True)
                self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        with self._lock:
            self._depth -= 1
            if self._depth or self._thread is None:
                return
            self._stop.set()
            thread, self._thread = self._thread, None
        thread.join(timeout=self.interval_s + 5)
