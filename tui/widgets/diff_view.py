"""DiffView: desired (intent) vs observed (device) of one resource, as a coloured diff.

Contract: `show(row)` renders, for the resource: its key, app and status; the field diffs
computed by the project's own `reconciler.diff.diff_specs` (after `normalize_spec`, so
volatile fields are not reported) rendered with `FieldDiff.lines()` ('-' observed in red,
'+' desired in green); then the full desired and observed specs for context. A wanted but
absent resource shows its desired fields as '+', an unwanted one its observed fields as
'-'. Specs reaching this widget are already redacted (tui.data.redact).
"""
from __future__ import annotations

import json
from typing import Any

from rich.console import Group
from rich.text import Text
from textual.containers import VerticalScroll
from textual.widgets import Static

import reconciler.compile  # noqa: F401  (registers each layer's normalizers with diff)
from reconciler.diff import FieldDiff, diff_specs, normalize_spec
from reconciler.model import FrozenDict, freeze
from tui.data import ResourceRow, ResState

SIGN_STYLES = {"-": "red", "+": "green"}


def field_diffs(row: ResourceRow) -> list[FieldDiff]:
    d = None if row.desired is None else normalize_spec(row.key, freeze(row.desired))
    o = None if row.observed is None else normalize_spec(row.key, freeze(row.observed))
    if d is None and o is None:
        return []
    return diff_specs(d if d is not None else FrozenDict(), o if o is not None else FrozenDict())


def diff_lines(row: ResourceRow) -> list[tuple[str, str]]:
    """(sign, text) lines of the resource's diff (pure; used by the widget and tests)."""
    out: list[tuple[str, str]] = []
    for fd in field_diffs(row):
        out.extend(fd.lines())
    return out


def _spec_text(spec: Any) -> Text:
    if spec is None:
        return Text("(absent)", style="dim italic")
    return Text(json.dumps(spec, indent=2, sort_keys=True), style="")


def render(row: ResourceRow | None) -> Group | Text:
    if row is None:
        return Text("Select a resource in the tree to see desired vs observed.", style="dim italic")
    head = Text()
    head.append(f"{row.key.kind} ", style="dim")
    head.append(row.key.name, style="bold")
    head.append("  ")
    head.append(f" {row.status.label} ", style=f"reverse {row.status.style}")
    sub = Text(f"{row.key.layer.value} / {row.key.target}   app {row.app or '(fabric)'}", style="dim")
    parts: list[Any] = [head, sub]
    if row.message:
        parts.append(Text(row.message, style="bold red"))
    parts.append(Text(""))
    lines = diff_lines(row)
    if lines:
        parts.append(Text("--- observed (device)", style="red bold"))
        parts.append(Text("+++ desired (intent)", style="green bold"))
        for sign, text in lines:
            parts.append(Text(f"{sign} {text}", style=SIGN_STYLES.get(sign, "")))
        if row.status is ResState.SYNCED:
            parts.append(Text("(these fields are ignored by the repo's ignore rules)", style="dim italic"))
    else:
        parts.append(Text("✔ observed matches desired", style="green"))
    parts.append(Text(""))
    parts.append(Text("desired", style="bold underline"))
    parts.append(_spec_text(row.desired))
    parts.append(Text(""))
    parts.append(Text("observed", style="bold underline"))
    parts.append(_spec_text(row.observed))
    return Group(*parts)


class DiffView(VerticalScroll):
    can_focus = True

    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self._row: ResourceRow | None = None
        self._body = Static(render(None), id="diff-body")

    def compose(self):
        yield self._body

    @property
    def row(self) -> ResourceRow | None:
        return self._row

    def show(self, row: ResourceRow | None) -> None:
        if row == self._row and row is not None:
            return
        same_key = row is not None and self._row is not None and row.key == self._row.key
        self._row = row
        self._body.update(render(row))
        if not same_key:
            self.scroll_home(animate=False)
