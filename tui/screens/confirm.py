"""ConfirmScreen: a modal yes/no question; dismisses with True (confirmed) or False.

Contract: `y` / the confirm button confirms; `n`, Escape or the cancel button cancels.
For actions that write (`danger=True`) the cancel button has the initial focus, so a
stray Enter does not sync the network.
"""
from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static


class ConfirmScreen(ModalScreen[bool]):
    BINDINGS = [Binding("y", "confirm", "Yes"), Binding("n,escape", "cancel", "No")]

    def __init__(self, question: str, detail: str = "", *, confirm_label: str = "Yes", danger: bool = False) -> None:
        super().__init__()
        self.question = question
        self.detail = detail
        self.confirm_label = confirm_label
        self.danger = danger

    def compose(self) -> ComposeResult:
        with Vertical(id="confirm-box", classes="dialog"):
            yield Static(self.question, id="confirm-question")
            if self.detail:
                yield Static(self.detail, id="confirm-detail")
            with Horizontal(id="confirm-buttons"):
                yield Button(f"{self.confirm_label} (y)", variant="error" if self.danger else "primary",
                             id="confirm-yes")
                yield Button("Cancel (n)", variant="default", id="confirm-no")

    def on_mount(self) -> None:
        self.query_one("#confirm-no" if self.danger else "#confirm-yes", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "confirm-yes")

    def action_confirm(self) -> None:
        self.dismiss(True)

    def action_cancel(self) -> None:
        self.dismiss(False)
