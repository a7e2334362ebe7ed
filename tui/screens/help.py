"""HelpScreen: what the screens show and every key binding."""
from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Markdown

HELP = """\
# netintent reconciler — help

**Applications** (start screen): one row per application with its sync status
(*Synced / OutOfSync / Unknown*), health (*Healthy / Progressing / Degraded*), the last
applied revision, when it last synced, how many resources drift and whether self-heal
is on. The screen follows the store live (about once a second).

**Application** (`Enter`): the resources as *layer → target → resource*; the
highlighted resource's desired (intent, `+` green) vs observed (device, `-` red) diff on
the right. `History` tab: runs (revision, trigger, outcome, duration) and drift events.

| key | action |
|---|---|
| `↑` `↓` `Enter` | move, open |
| `/` | search (`shop`, `sync:out`, `health:deg`, `heal:on`, `drift:>0`) |
| `f` | cycle the status filter: all / out of sync / degraded / drifted |
| `Esc` | clear the search, or go back |
| `s` | **sync now** (apply the intents; asks first) |
| `d` | **dry-run plan** (observe and show what would change) |
| `r` | **refresh** (observe again, update the status) |
| `h` | **toggle self-heal** for the application (asks first) |
| `o` | resources: only drifted ones / all |
| `n` | next drifted resource |
| `Tab` | next pane; `1` resources, `2` history |
| `?` | this help |
| `q` | quit |

Actions run through the daemon when one is given (`--daemon URL`), otherwise in this
process; in read-only mode (`--snapshot`, or a store without daemon) sync and self-heal
are disabled. Secrets (passwords, keys, tokens) are never shown.
"""


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q,question_mark", "close", "Close")]

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help-box", classes="dialog"):
            yield Markdown(HELP, id="help-text")

    def action_close(self) -> None:
        self.dismiss(None)
