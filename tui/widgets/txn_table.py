"""Transactions of one application: one row per transaction, then one per layer and target.

Contract: `show(txns, now)` takes `reconciler.txn.history.transactions(...)` dicts (newest first)
and re-renders only on change: the outcome per transaction (committed, rolled-back,
rollback-failed, pending-confirm with its deadline, ...) and per target what was written and
what was rolled back (written, rolled-back, unknown, differs) with the message.
"""
from __future__ import annotations

from typing import Any, Sequence

from rich.text import Text
from textual.widgets import DataTable

from tui.format import age

STATE_STYLES = {"committed": "green", "rolled-back": "yellow", "rollback-failed": "bold red",
                "rollback-pending": "red", "pending-confirm": "cyan", "aborted": "red"}
TARGET_STYLES = {"written": "green", "rolled-back": "yellow", "unknown": "red", "differs": "bold red"}
MAX_ROWS = 400


class TxnTable(DataTable):
    def __init__(self, **kw: Any) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, **kw)
        self._last: tuple | None = None

    def on_mount(self) -> None:
        for label in ("STARTED", "TRANSACTION", "LAYER", "TARGET", "STATE", "WRITES", "MESSAGE"):
            self.add_column(label, key=label.lower())

    def show(self, txns: Sequence[dict], now: float) -> None:
        snap = (repr(txns), int(now))
        if snap == self._last:
            return
        self._last = snap
        self.clear()
        n = 0
        for t in txns:
            if n >= MAX_ROWS:
                break
            self.add_row(age(t["started"], now), t["txn_id"], t["trigger"], "",
                         Text(t["state"], style=STATE_STYLES.get(t["state"], "")), "",
                         Text((t["error"] or "").splitlines()[0][:80] if t["error"] else "", style="red"),
                         key=t["txn_id"])
            for tg in t["targets"]:
                status = Text(tg["status"], style=TARGET_STYLES.get(tg["status"], ""))
                self.add_row("", "", tg["layer"], tg["target"], status, str(tg["writes"]), tg["message"][:80],
                             key=f"{t['txn_id']}/{tg['layer']}/{tg['target']}")
                n += 1
            n += 1
