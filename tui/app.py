"""ReconcilerApp: the Textual application (`reconciler tui`).

Contract: built from a `ReadModel` (what to show) and an `Actions` (what can be done).
It polls the read model every `poll_s` seconds (default 1 s) and asks the active screen
to `refresh_data()`, so changes written by the daemon or an in-process run appear without
a manual refresh. Actions go through `start_action(kind, app)`: capability check ->
confirmation (ConfirmScreen) -> ActionScreen running it in a worker with progress ->
result, then an immediate refresh. `now` is injectable so snapshot tests are stable.
Layout lives in app.tcss; `-narrow`/`-normal`/`-wide` classes follow the terminal width.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

from textual.app import App
from textual.binding import Binding

from tui.actions import ActionResult, Actions, NoActions
from tui.data import ReadModel
from tui.screens import ActionScreen, AppDetailScreen, AppListScreen, ConfirmScreen, HelpScreen

ACTION_TEXT = {
    "sync": ("Sync {app} now?", "Observe every target of {app}, apply the difference to the intents and verify.",
             "Sync", True),
    "dry-run": ("Dry-run plan for {app}?", "Observe the targets and show what a sync would change. Nothing is written.",
                "Plan", False),
    "refresh": ("Refresh {app}?", "Observe the targets again and update the status. Nothing is written.",
                "Refresh", False),
}


class ReconcilerApp(App):
    CSS_PATH = [Path(__file__).parent / "app.tcss"]
    TITLE = "netintent reconciler"
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (90, "-normal"), (140, "-wide")]
    BINDINGS = [
        Binding("question_mark", "help", "Help"),
        Binding("q", "quit", "Quit"),
        Binding("ctrl+r", "reload", "Reload", show=False),
    ]

    def __init__(self, model: ReadModel, actions: Actions | None = None, *, poll_s: float = 1.0,
                 clock: Callable[[], float] = time.time, open_app: str | None = None) -> None:
        super().__init__()
        self.model = model
        self.actions: Actions = actions or NoActions()
        self.poll_s = poll_s
        self._clock = clock
        self._open_app = open_app
        self.last_result: ActionResult | None = None

    def now(self) -> float:
        return self._clock()

    async def on_mount(self) -> None:
        self.sub_title = self.model.source
        await self.push_screen(AppListScreen())      # mounted before anyone (a test, a poll) looks
        if self._open_app:
            await self.push_screen(AppDetailScreen(self._open_app))
        if self.poll_s > 0:
            self.set_interval(self.poll_s, self.poll, name="poll")

    def poll(self) -> None:
        """Refresh the topmost data screen (modals in front keep it live behind them)."""
        for screen in reversed(self.screen_stack):
            if hasattr(screen, "refresh_data"):
                screen.refresh_data()
                break

    def action_reload(self) -> None:
        self.poll()

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    def open_app(self, name: str) -> None:
        self.push_screen(AppDetailScreen(name))

    # ---- actions ----------------------------------------------------------------------------
    def start_action(self, kind: str, app: str) -> None:
        if kind not in self.actions.capabilities:
            reason = getattr(self.actions, "reason", "") or self.actions.description
            self.notify(f"{kind} is not available: {reason}", title="read-only", severity="warning")
            return
        if kind == "self-heal":
            row = next((a for a in self.model.apps() if a.name == app), None)
            current = row.self_heal if row is not None else None
            policy = getattr(self.actions, "self_heal_policy", lambda: None)() if current is None else None
            effective = current if current is not None else policy
            on = not effective if effective is not None else True
            question = f"{'Enable' if on else 'Disable'} self-heal for {app}?"
            detail = ("Drift found by the periodic scan will be repaired automatically." if on
                      else "Drift will only be reported, not repaired.")
            if current is None:
                known = "" if policy is None else f" ({'on' if policy else 'off'})"
                detail += f" Until now {app} follows the repo's sync policy{known}; this sets an override."
            self.push_screen(ConfirmScreen(question, detail, confirm_label="Enable" if on else "Disable", danger=True),
                             lambda ok: self._self_heal(app, on) if ok else None)
            return
        question, detail, label, danger = ACTION_TEXT[kind]
        self.push_screen(ConfirmScreen(question.format(app=app), detail.format(app=app), confirm_label=label,
                                       danger=danger),
                         lambda ok: self._run_action(kind, app) if ok else None)

    def _run_action(self, kind: str, app: str) -> None:
        fn = {"sync": self.actions.sync, "dry-run": self.actions.dry_run, "refresh": self.actions.refresh}[kind]
        title = {"sync": f"sync {app}", "dry-run": f"dry-run plan {app}", "refresh": f"refresh {app}"}[kind]
        self.push_screen(ActionScreen(title, lambda progress: fn(app, progress)), self._action_done)

    def _self_heal(self, app: str, on: bool) -> None:
        res = self.actions.set_self_heal(app, on)
        self._action_done(res)
        self.notify(res.summary, title="self-heal", severity="information" if res.ok else "error")

    def _action_done(self, res: ActionResult | None) -> None:
        self.last_result = res
        self.poll()
