"""ReachabilityView: an application's reachability findings with their witness paths, and the
text of the app list's REACH column.

Contract: `show(summary, findings)` renders a summary line (pairs, violations, leaks,
unknown, when verified) and, per finding, its kind, source -> destination and port, the
hops that decide it (the blocking hop of a violation, every permitting hop of a leak, the
undecided hops of an unknown) and the whole witness path hop by hop (forward, then return).
It re-renders only when the data changed; `plain` is the rendered text (for tests).
`reach_text(reach)` is the app list cell: `—` when the app was not verified, `ok` when clean,
else e.g. `2V 1L 3?` (violations, leaks, unknown). Findings come from
reconciler.service.store_verify (names of devices, rules and flows only; no secret).
"""
from __future__ import annotations

from typing import Any, Sequence

from rich.text import Text
from textual.containers import VerticalScroll
from textual.widgets import Static

KIND_STYLES = {"violation": "bold red", "leak": "bold magenta", "unknown": "yellow"}
DECISION_STYLES = {"permit": "green", "deny": "red", "unknown": "yellow"}


def reach_text(reach: tuple[int, int, int] | None) -> Text:
    if reach is None:
        return Text("—", style="dim")
    v, leak, u = reach
    if not (v or leak or u):
        return Text("ok", style="green")
    parts = [(n, s, st) for n, s, st in ((v, "V", "bold red"), (leak, "L", "bold magenta"), (u, "?", "yellow")) if n]
    t = Text()
    for i, (n, suffix, style) in enumerate(parts):
        t.append(("" if i == 0 else " ") + f"{n}{suffix}", style=style)
    return t


def _hop(h: dict, indent: str) -> Text:
    t = Text(indent)
    t.append(f"{h.get('leg', ''):<7} {h.get('layer', ''):<10} {h.get('device', ''):<8} ", style="dim")
    t.append(f"{h.get('what', '')} {h.get('rule', '')}: ")
    t.append(str(h.get("decision", "")), style=DECISION_STYLES.get(str(h.get("decision")), ""))
    if h.get("detail"):
        t.append(f" — {h['detail']}", style="dim")
    return t


def render(summary: Any, findings: Sequence[Any]) -> Text:
    if summary is None:
        return Text("not verified yet: the daemon verifies after each sync and drift scan", style="dim")
    out = Text()
    out.append(f"{summary.pairs} pair(s) traced at revision {summary.revision[:8]}: ")
    out.append_text(reach_text((summary.violations, summary.leaks, summary.unknowns)))
    out.append(f"  ({summary.violations} violation(s), {summary.leaks} leak(s), {summary.unknowns} unknown)\n",
               style="dim")
    for f in findings:
        out.append("\n")
        title = f.kind.upper() + (f" [{f.extent}]" if f.extent else "")
        out.append(title, style=KIND_STYLES.get(f.kind, ""))
        out.append(f" {f.source} -> {f.dest} {f.port}: {'allowed' if f.allowed else 'not allowed'}\n")
        label = {"violation": "blocked at", "leak": "permitted", "unknown": "undecided"}.get(f.kind, "hop")
        for h in f.hops:
            out.append_text(_hop(h, f"  {'blocked' if h.get('blocking') else label}: "))
            out.append("\n")
        out.append("  witness:\n", style="dim")
        for h in f.witness:
            out.append_text(_hop(h, "    "))
            out.append("\n")
    return out


class ReachabilityView(VerticalScroll):
    """Mounted with its first data (it is added to a screen when that data arrives)."""

    def __init__(self, summary: Any = None, findings: Sequence[Any] = (), **kw: Any) -> None:
        super().__init__(**kw)
        self._last: tuple | None = (summary, tuple(findings))
        text = render(summary, findings)
        self.plain, self._first = text.plain, text

    def compose(self):  # noqa: ANN201
        yield Static(self._first, id="reach-text")

    def show(self, summary: Any, findings: Sequence[Any]) -> None:
        snapshot = (summary, tuple(findings))
        if snapshot == self._last:
            return
        self._last = snapshot
        text = render(summary, findings)
        self.plain = text.plain
        self.query_one("#reach-text", Static).update(text)
