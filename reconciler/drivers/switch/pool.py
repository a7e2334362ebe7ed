"""Idle SSH sessions to switches, kept for a short while so the next observe or apply of the
same switch skips the login (connect, key exchange, auth and prompt discovery: most of a short
apply's cost).

Contract: `take(target)` returns `(session, reused)`: an idle session of that target opened
with the same variables and used less than `reuse_s` ago, else a new one (`make(target)`, which
may raise). `give(target, session, healthy)` puts it back when healthy, else closes it. A
session is held by one caller at a time. Expired sessions are closed on every take/give;
`close()` closes all. A reused session can be stale (the switch restarted sshd, a firewall
now drops it): callers retry once on a fresh session when the first command of a session that
wrote nothing fails.
"""
from __future__ import annotations

import threading
import time
from typing import Any, Callable

Key = tuple[str, str]


def _key(target: Any) -> Key:
    return target.name, repr(sorted((str(k), repr(v)) for k, v in target.vars.items()))


class SessionPool:
    def __init__(self, make: Callable[[Any], Any], reuse_s: float = 60.0) -> None:
        self.make, self.reuse_s = make, reuse_s
        self._idle: dict[Key, tuple[Any, float]] = {}
        self._lock = threading.Lock()

    def take(self, target: Any) -> tuple[Any, bool]:
        with self._lock:
            found = self._idle.pop(_key(target), None)
            stale = self._expired()
        for s in stale:
            s.close()
        if found is not None:
            session, used = found
            if time.monotonic() - used < self.reuse_s:
                return session, True
            session.close()
        return self.make(target), False

    def give(self, target: Any, session: Any, healthy: bool) -> None:
        if not healthy or self.reuse_s <= 0:
            session.close()
            return
        with self._lock:
            old = self._idle.pop(_key(target), None)
            self._idle[_key(target)] = (session, time.monotonic())
            stale = self._expired()
        for s in stale + ([old[0]] if old else []):
            s.close()

    def close(self) -> None:
        with self._lock:
            sessions = [s for s, _ in self._idle.values()]
            self._idle.clear()
        for s in sessions:
            s.close()

    def _expired(self) -> list[Any]:
        now = time.monotonic()
        gone = [k for k, (_, used) in self._idle.items() if now - used >= self.reuse_s]
        return [self._idle.pop(k)[0] for k in gone]
