"""AppTable: one row per application (sync, health, revision, last sync, drift, self-heal).

Contract: `show(rows, now, compact)` replaces the rows only when something visible changed
and keeps the cursor on the same application; row keys are application names.
`compact` drops the revision and self-heal columns for narrow terminals. The REACH column
(reachability violations/leaks/unknown, tui/widgets/reach_view.py) is shown once any row has
been verified by the daemon. The TRAFFIC column (accepted packets/s and policy drops/s,
tui/telemetrymodel.py) is shown once any row has telemetry; `?` is an unknown rate.
"""
from __future__ import annotations

from typing import Sequence

from rich.text import Text
from textual.widgets import DataTable

from tui.data import AppRow
from tui.format import age, drift_text, heal_text, health_text, short_rev, sync_text
from tui.widgets.reach_view import reach_text
from tui.widgets.traffic_view import traffic_cells

MESSAGE_COLUMN_AT = 92   # cells left of the message column with the widest usual values
REACH_WIDTH = 10         # the REACH column, when shown
TRAFFIC_WIDTH = 24       # the TRAFFIC and DROPS columns, when shown


class AppTable(DataTable):
    def __init__(self, **kw) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, **kw)
        self._last: tuple | None = None
        self._compact: bool | None = None
        self._reach = False
        self._traffic = False

    def _columns(self, compact: bool, reach: bool = False, traffic: bool = False) -> None:
        self.clear(columns=True)
        cols = [("APPLICATION", "name"), ("SYNC", "sync"), ("HEALTH", "health")]
        if not compact:
            cols.append(("REVISION", "rev"))
        cols += [("LAST SYNC", "last"), ("DRIFT", "drift")] + ([("REACH", "reach")] if reach else [])
        cols += [("TRAFFIC pkt/s", "traffic"), ("DROPS/s", "drops")] if traffic else []
        if not compact:
            cols += [("SELF-HEAL", "heal"), ("MESSAGE", "msg")]
        for label, key in cols:
            self.add_column(label, key=key)
        self._compact, self._reach, self._traffic = compact, reach, traffic

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
        reach = any(r.reach is not None for r in rows)
        traffic = any(r.traffic is not None for r in rows)
        if compact != self._compact or reach != self._reach or traffic != self._traffic:
            self._columns(compact, reach, traffic)
        else:
            self.clear()
        for r in rows:
            cells: list = [Text(r.name, style="bold"), sync_text(r.sync), health_text(r.health)]
            if not compact:
                cells.append(short_rev(r.revision))
            cells += [age(r.last_sync, now), drift_text(r.drift_count)] + ([reach_text(r.reach)] if reach else [])
            cells += traffic_cells(r.traffic) if traffic else []
            if not compact:
                left = MESSAGE_COLUMN_AT + (REACH_WIDTH if reach else 0) + (TRAFFIC_WIDTH if traffic else 0)
                room = max(12, self.size.width - left) if self.size.width else 60
                msg = r.message if len(r.message) <= room else r.message[:room - 1] + "…"
                cells += [heal_text(r.self_heal), Text(msg, style="red" if r.message else "")]
            self.add_row(*cells, key=r.name)
        if keep is not None:
            for i, r in enumerate(rows):
                if r.name == keep:
                    self.move_cursor(row=i, animate=False)
                    break
