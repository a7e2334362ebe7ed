"""History tables of one application: runs and drift events.

Contract: `show(rows, now)` re-renders only on change, newest first; runs show revision,
trigger (who/what started it), outcome, duration, writes and drift; drift events show
when, which run, the action and the resource key.
"""
from __future__ import annotations

from typing import Sequence

from rich.text import Text
from textual.widgets import DataTable

from tui.data import DriftRow, RunRow
from tui.format import age, duration, phase_text, short_rev

MAX_DRIFT_ROWS = 200
ACTION_STYLES = {"create": "green", "update": "yellow", "delete": "red"}


class RunsTable(DataTable):
    def __init__(self, **kw) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, **kw)
        self._last: tuple | None = None

    def on_mount(self) -> None:
        for label in ("STARTED", "RUN", "REVISION", "TRIGGER", "OUTCOME", "DURATION", "WRITES", "DRIFT", "MESSAGE"):
            self.add_column(label, key=label.lower())

    def show(self, rows: Sequence[RunRow], now: float) -> None:
        snap = (tuple(rows), int(now))
        if snap == self._last:
            return
        self._last = snap
        self.clear()
        for r in rows:
            self.add_row(age(r.started, now), r.run_id[:12], short_rev(r.revision), r.trigger or "—",
                         phase_text(r.outcome_label, r.phase), duration(r.duration_s), str(r.writes), str(r.drift),
                         Text(r.message[:80], style="red" if r.message else ""), key=r.run_id)


class DriftTable(DataTable):
    def __init__(self, **kw) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, **kw)
        self._last: tuple | None = None

    def on_mount(self) -> None:
        for label in ("DETECTED", "RUN", "ACTION", "RESOURCE", "HANDLING"):
            self.add_column(label, key=label.lower())

    def show(self, rows: Sequence[DriftRow], now: float) -> None:
        snap = (tuple(rows), int(now))
        if snap == self._last:
            return
        self._last = snap
        self.clear()
        for i, d in enumerate(rows[:MAX_DRIFT_ROWS]):
            self.add_row(age(d.ts, now), d.run_id[:12], Text(d.action, style=ACTION_STYLES.get(d.action, "")),
                         d.key, "planned" if d.executed else "reported (kept)", key=f"{i}")
