"""AppTable: one row per application (sync, health, revision, last sync, drift, self-heal).

Contract: `show(rows, now, compact)` replaces the rows only when something visible changed
and keeps the cursor on the same application; row keys are application names.
`compact` drops the revision and self-heal columns for narrow terminals.
"""
from __future__ import annotations

from typing import Sequence

from rich.text import Text
from textual.widgets import DataTable

from tui.data import AppRow
from tui.format import age, drift_text, heal_text, health_text, short_rev, sync_text

MESSAGE_COLUMN_AT = 92   # cells left of the message column with the widest usual values


class AppTable(DataTable):
    def __init__(self, **kw) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, **kw)
        self._last: tuple | None = None
        self._compact: bool | None = None

    def _columns(self, compact: bool) -> None:
        self.clear(columns=True)
        cols = [("APPLICATION", "name"), ("SYNC", "sync"), ("HEALTH", "health")]
        if not compact:
            cols.append(("REVISION", "rev"))
        cols += [("LAST SYNC", "last"), ("DRIFT", "drift")]
        if not compact:
            cols += [("SELF-HEAL", "heal"), ("MESSAGE", "msg")]
        for label, key in cols:
            self.add_column(label, key=key)
        self._compact = compact

    @property
    def selected_app(self) -> str | None:
        if not self.row_count:
            return None
        try:
            key, _ = self.coordinate_to_cell_key(self.cursor_coordinate)
        except Exception:
            return None
        return key.value

    def show(self, rows: Sequence[AppRow], now: float, compact: bool = False) -> None:
        snapshot = (tuple(rows), int(now), compact)
        if snapshot == self._last:
            return
        self._last = snapshot
        keep = self.selected_app
        if compact != self._compact:
            self._columns(compact)
        else:
            self.clear()
        for r in rows:
            cells: list = [Text(r.name, style="bold"), sync_text(r.sync), health_text(r.health)]
            if not compact:
                cells.append(short_rev(r.revision))
            cells += [age(r.last_sync, now), drift_text(r.drift_count)]
            if not compact:
                room = max(12, self.size.width - MESSAGE_COLUMN_AT) if self.size.width else 60
                msg = r.message if len(r.message) <= room else r.message[:room - 1] + "…"
                cells += [heal_text(r.self_heal), Text(msg, style="red" if r.message else "")]
            self.add_row(*cells, key=r.name)
        if keep is not None:
            for i, r in enumerate(rows):
                if r.name == keep:
                    self.move_cursor(row=i, animate=False)
                    break
