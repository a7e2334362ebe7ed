"""ActionScreen: runs one action in a worker thread, shows progress, then the result.

Contract: the action is a blocking callable `(progress) -> ActionResult`; it runs in a
thread worker so the UI (and live updates behind the modal) keep going. Progress calls
from the worker are marshalled to the UI thread. When done the title turns green (ok)
or red (failed), the summary and the result lines (e.g. the coloured plan) are shown,
and Enter/Escape closes; the screen dismisses with the `ActionResult`. Closing while
running is refused (the engine run cannot be cancelled half-way).
"""
from __future__ import annotations

from typing import Callable

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, ProgressBar, Static
from textual.worker import Worker, WorkerState

from tui.actions import ActionResult, Progress

MAX_LINES = 400


class ActionScreen(ModalScreen[ActionResult | None]):
    BINDINGS = [Binding("escape,enter,q", "close", "Close")]

    def __init__(self, title: str, run: Callable[[Progress], ActionResult]) -> None:
        super().__init__()
        self.action_title = title
        self._run = run
        self.result: ActionResult | None = None

    def compose(self) -> ComposeResult:
        with Vertical(id="action-box", classes="dialog"):
            yield Static(Text(f"{self.action_title} …", style="bold"), id="action-title")
            yield ProgressBar(total=None, show_eta=False, id="action-progress")
            yield Static("starting", id="action-status")
            with VerticalScroll(id="action-output"):
                yield Static("", id="action-lines")
            yield Button("Close (Esc)", id="action-close", disabled=True)

    def on_mount(self) -> None:
        self.run_worker(self._work, thread=True, exclusive=True, name="action")

    def _work(self) -> ActionResult:
        def progress(done: int, total: int | None, message: str) -> None:
            self.app.call_from_thread(self._progress, done, total, message)
        try:
            return self._run(progress)
        except Exception as exc:  # an action must never kill the UI
            return ActionResult(False, self.action_title, f"{type(exc).__name__}: {exc}")

    def _progress(self, done: int, total: int | None, message: str) -> None:
        bar = self.query_one(ProgressBar)
        if total:
            bar.update(total=total, progress=done)
        self.query_one("#action-status", Static).update(Text(message, style="dim"))

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.worker.name != "action" or event.state not in (WorkerState.SUCCESS, WorkerState.ERROR):
            return
        res = event.worker.result if event.state is WorkerState.SUCCESS else ActionResult(
            False, self.action_title, f"error: {event.worker.error!r}")
        self.show_result(res)

    def show_result(self, res: ActionResult) -> None:
        self.result = res
        bar = self.query_one(ProgressBar)
        bar.update(total=1, progress=1)
        bar.display = False
        box = self.query_one("#action-box")
        box.add_class("-ok" if res.ok else "-failed")
        self.query_one("#action-title", Static).update(
            Text(f"{'✔' if res.ok else '✘'} {res.title}", style="bold green" if res.ok else "bold red"))
        self.query_one("#action-status", Static).update(Text(res.summary, style="" if res.ok else "red"))
        body = Text()
        for i, (style, text) in enumerate(res.lines[:MAX_LINES]):
            if i:
                body.append("\n")
            body.append(text, style=style)
        if len(res.lines) > MAX_LINES:
            body.append(f"\n… {len(res.lines) - MAX_LINES} more line(s)", style="dim")
        self.query_one("#action-lines", Static).update(body)
        close = self.query_one("#action-close", Button)
        close.disabled = False
        close.focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "action-close":
            self.action_close()

    def action_close(self) -> None:
        if self.result is None:
            self.notify("still running; the result appears here when done", severity="warning")
            return
        self.dismiss(self.result)
