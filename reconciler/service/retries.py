"""Per-app retry backoff of the daemon: which apps are applied again, and when.

Contract: `RetrySchedule(base_s, max_s)`. `fail(app, now)` counts one more failure in a row and
returns (failures, delay): the delay doubles per failure from `base_s` up to `max_s`, and the app
is due at `now + delay`. `clear(app)` forgets it (it succeeded, or is no longer ours). `due(now,
known)` -> the apps whose time came, sorted; apps `known` rejects (gone from the repo) are
forgotten. `apps()` lists the apps waiting; the schedule is false when none is. `loaded`: the
revision to retry at when the daemon has none applied yet (shards: a refused first sync).
Times are `time.monotonic()` seconds. Not thread safe: the daemon's run lock and its scheduler
thread serialise its users.
"""
from __future__ import annotations

from typing import Any, Callable


class RetrySchedule:
    def __init__(self, base_s: float, max_s: float) -> None:
        self.base_s, self.max_s = float(base_s), float(max_s)
        self._at: dict[str, tuple[int, float]] = {}   # app -> (failures in a row, due time)
        self.loaded: Any = None

    def fail(self, app: str, now: float) -> tuple[int, float]:
        n = self._at.get(app, (0, 0.0))[0] + 1
        delay = min(self.max_s, self.base_s * 2 ** (n - 1))
        self._at[app] = (n, now + delay)
        return n, delay

    def clear(self, app: str) -> None:
        self._at.pop(app, None)

    def due(self, now: float, known: Callable[[str], bool]) -> list[str]:
        for app in [a for a in self._at if not known(a)]:
            del self._at[app]
        return sorted(a for a, (_, t) in self._at.items() if t <= now)

    def apps(self) -> list[str]:
        return sorted(self._at)

    def __bool__(self) -> bool:
        return bool(self._at)
