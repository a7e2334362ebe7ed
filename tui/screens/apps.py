"""AppListScreen: every application with sync, health, revision, last sync, drift, self-heal.

Contract: polls the read model through the app (`refresh_data`, about once a second);
the search box narrows rows (tui.format.app_matches) and `f` cycles a status filter
(`StatusFilter`); Enter opens the application; s/d/r/h start the actions on the
highlighted application (the app asks for confirmation and shows progress).
"""
from __future__ import annotations

import enum

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Input, Static

from reconciler.status import Health, Phase, Sync
from tui.data import AppRow
from tui.format import app_matches
from tui.telemetrymodel import with_traffic
from tui.widgets import AppTable


class StatusFilter(str, enum.Enum):
    ALL = "all"
    OUT_OF_SYNC = "out of sync"
    DEGRADED = "degraded"
    DRIFTED = "drifted"

    def keep(self, row: AppRow) -> bool:
        if self is StatusFilter.OUT_OF_SYNC:
            return row.sync is not Sync.SYNCED
        if self is StatusFilter.DEGRADED:
            return row.health is Health.DEGRADED
        if self is StatusFilter.DRIFTED:
            return row.drift_count > 0
        return True

    def next(self) -> "StatusFilter":
        members = list(StatusFilter)
        return members[(members.index(self) + 1) % len(members)]


class AppListScreen(Screen):
    BINDINGS = [
        Binding("enter", "open", "Open", show=True),
        Binding("slash", "search", "Search"),
        Binding("f", "cycle_filter", "Filter"),
        Binding("s", "act('sync')", "Sync"),
        Binding("d", "act('dry-run')", "Dry-run"),
        Binding("r", "act('refresh')", "Refresh"),
        Binding("h", "act('self-heal')", "Self-heal"),
        Binding("escape", "clear_search", "Clear", show=False),
    ]

    def __init__(self) -> None:
        self._ready = False
        super().__init__(id="apps-screen")
        self.status_filter = StatusFilter.ALL
        self._rows: list[AppRow] = []

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="apps-bar"):
            yield Input(placeholder="/ search: name, revision, sync:out, health:deg, heal:on", id="search")
            yield Static("", id="filter-label")
        yield AppTable(id="apps")
        yield Static("", id="apps-status")
        yield Footer()

    def on_mount(self) -> None:
        self._ready = True
        self.query_one(AppTable).focus()
        self.refresh_data()

    # ---- data -------------------------------------------------------------------------------
    @property
    def table(self) -> AppTable:
        return self.query_one(AppTable)

    @property
    def visible_apps(self) -> list[str]:
        return [r.name for r in self._visible()]

    def _visible(self) -> list[AppRow]:
        q = self.query_one("#search", Input).value
        return [r for r in self._rows if self.status_filter.keep(r) and app_matches(r, q)]

    def refresh_data(self) -> None:
        if not self._ready:   # the poll timer may fire before the widgets are mounted
            return
        try:
            self._rows = with_traffic(self.app, self.app.model.apps())
            error = ""
        except Exception as exc:  # store unreachable: keep the last rows, say so
            error = f"cannot read {self.app.model.source}: {exc}"
        visible = self._visible()
        self.table.show(visible, self.app.now(), compact=self.app.size.width < 90)
        self.query_one("#filter-label", Static).update(
            Text.assemble(("filter ", "dim"), (self.status_filter.value, "bold"), ("  (f)", "dim")))
        out = sum(1 for r in self._rows if r.sync is Sync.OUT_OF_SYNC)
        deg = sum(1 for r in self._rows if r.health is Health.DEGRADED)
        status = Text.assemble((f"{len(visible)}/{len(self._rows)} applications", ""), "  ",
                               (f"{out} out of sync", "yellow" if out else "green"), "  ",
                               (f"{deg} degraded", "red" if deg else "green"), "  ",
                               (f"source: {self.app.model.source}", "dim"), "  ",
                               (f"actions: {self.app.actions.description}", "dim"))
        running = self._current_run()
        if running is not None:
            status = Text.assemble(
                (f"◌ run {running.run_id[:12]} running ({running.trigger or 'manual'})  ", "bold cyan"), status)
        if error:
            status = Text(error, style="bold red")
        self.query_one("#apps-status", Static).update(status)

    def _current_run(self):
        try:
            latest = self.app.model.runs(None, 1)
        except Exception:
            return None
        return latest[0] if latest and latest[0].phase is Phase.RUNNING else None

    def on_resize(self) -> None:
        self.refresh_data()

    # ---- input ------------------------------------------------------------------------------
    def on_input_changed(self, event: Input.Changed) -> None:
        self.refresh_data()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.table.focus()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        self.action_open()

    def action_search(self) -> None:
        self.query_one("#search", Input).focus()

    def action_clear_search(self) -> None:
        search = self.query_one("#search", Input)
        search.value = ""
        self.table.focus()
        self.refresh_data()

    def action_cycle_filter(self) -> None:
        self.status_filter = self.status_filter.next()
        self.refresh_data()

    def action_open(self) -> None:
        app = self.table.selected_app
        if app:
            self.app.open_app(app)

    def action_act(self, kind: str) -> None:
        app = self.table.selected_app
        if app:
            self.app.start_action(kind, app)
        else:
            self.notify("no application selected", severity="warning")
