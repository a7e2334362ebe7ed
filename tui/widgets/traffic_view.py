"""TrafficView: the "Traffic" tab of an application (tui/telemetrymodel.py's `AppTraffic`).

Contract: `show(traffic)` renders, per service, the accepted packet rate and the policy drop
rate with sparklines of the recent scrapes; RPC calls by status code (when the sidecar layer
reports them); the layers whose share is unknown; and a table of the refused sources (source
app, service, port, the refusing layer and target, packets, rate). Its rows are keyed by the
resource the refusing rule or flow belongs to: selecting one posts `TrafficView.ShowResource`,
which the detail screen answers by showing that resource in the tree. Rates of None are shown
as `?` (unknown), never as 0.
"""
from __future__ import annotations

from typing import Sequence

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import DataTable, Static

from tui.telemetrymodel import AppTraffic

BARS = "▁▂▃▄▅▆▇█"


def sparkline(values: Sequence[float], width: int = 20) -> str:
    vals = list(values)[-width:]
    if not vals:
        return ""
    top = max(vals) or 1.0
    return "".join(BARS[min(len(BARS) - 1, int(v / top * (len(BARS) - 1)))] for v in vals)


def rate(v: float | None) -> str:
    return "?" if v is None else f"{v:,.1f}/s"


def traffic_cells(traffic: tuple[float | None, float | None, bool] | None) -> list[Text]:
    """The app list's TRAFFIC and DROPS cells; `+?` when a share of the app is unknown."""
    acc, drops, partial = traffic if traffic is not None else (None, None, False)
    more = "+?" if partial and acc is not None else ""
    return [Text(rate(acc) + more), Text(rate(drops) + (more if drops is not None else ""),
                                         style="red" if drops else "")]


def summary_text(t: AppTraffic | None) -> Text:
    if t is None:
        return Text("no telemetry for this application yet (the daemon collects every sync.telemetry_interval_s)",
                    style="dim")
    out = Text()
    out.append(f"{'SERVICE':<20} {'ACCEPTED':>10}  {'':<20} {'REFUSED':>10}\n", style="bold")
    for s in t.services:
        out.append(f"{s.service:<20} {rate(s.pps):>10}  ")
        out.append(f"{sparkline(s.pps_history):<20}", style="green")
        out.append(f" {rate(s.drops_ps):>10}  ")
        out.append(sparkline(s.drops_history), style="red")
        out.append("\n")
    if t.rpc:
        out.append("\nRPC calls by code\n", style="bold")
        for svc, code, n in t.rpc:
            out.append(f"  {svc:<18} {code:<18} {n}\n", style="red" if code != "OK" else "")
        for svc, mean_s, n in t.rpc_latency:
            out.append(f"  {svc:<18} {'mean latency':<18} {mean_s * 1000:.1f} ms over {n} call(s)\n")
    else:
        out.append("\nRPC: no sidecar call counts reported\n", style="dim")
    if t.unknown:
        out.append("unknown share (target not read): " + ", ".join(t.unknown) + "\n", style="yellow")
    return out


class TrafficView(Vertical):
    class ShowResource(Message):
        def __init__(self, key: str) -> None:
            super().__init__()
            self.key = key

    def __init__(self, traffic: AppTraffic | None, **kw) -> None:
        super().__init__(**kw)
        self._traffic = traffic

    def compose(self) -> ComposeResult:
        yield Static(summary_text(self._traffic), id="traffic-summary")
        yield Static(Text("Refused sources (enter: show the refusing rule)", style="bold"), classes="section")
        table: DataTable = DataTable(id="refused", cursor_type="row", zebra_stripes=True)
        for label in ("SOURCE APP", "SERVICE", "PORT", "LAYER", "TARGET", "PACKETS", "RATE"):
            table.add_column(label)
        yield table

    def on_mount(self) -> None:
        self.show(self._traffic)

    def show(self, traffic: AppTraffic | None) -> None:
        self._traffic = traffic
        self.query_one("#traffic-summary", Static).update(summary_text(traffic))
        table = self.query_one("#refused", DataTable)
        table.clear()
        seen: set[str] = set()
        for r in traffic.refused if traffic else ():
            key = f"{r.resource}#{r.source_app}#{r.service}#{r.port}"
            if key in seen:
                continue
            seen.add(key)
            table.add_row(Text(r.source_app, style="bold"), r.service or "-", r.port or "-", r.layer, r.target,
                          str(r.packets), rate(r.rate), key=key)

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        if event.row_key.value:
            event.stop()
            self.post_message(self.ShowResource(str(event.row_key.value).split("#", 1)[0]))
