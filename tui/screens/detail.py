"""AppDetailScreen: one application — resource tree with diff, and its history.

Contract: a summary line (sync, health, revision, last sync, drift, self-heal); tab
"Resources": `ResourceTree` (layer -> target -> resource) beside a `DiffView` of the
highlighted resource (stacked on narrow terminals via the `-narrow` breakpoint class);
tab "History": runs and drift events of this application; tab "Reachability" (added once the
read model has a verification of the app: `reachability(app)`): its findings with witness paths;
tab "Traffic" (added once the TUI's telemetry feed has the app, tui/telemetrymodel.py): rates with
sparklines per service, refused sources with the refusing layer (enter shows the refusing rule's
resource in the tree), RPC calls by code.
`refresh_data()` is called by the app about once a second; when the read model offers `marker(app)` and it is unchanged,
nothing is re-read (only ages move); widgets re-render only what changed (cursor and
expansion kept).
"""
from __future__ import annotations

from collections import Counter
from dataclasses import replace
from typing import Callable

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Footer, Header, Static, TabbedContent, TabPane, Tree

from tui.data import AppRow, ResourceRow
from tui.format import age, drift_text, heal_text, health_text, short_rev, sync_text
from tui.widgets import DiffView, DriftTable, ResourceTree, RunsTable
from tui.widgets.reach_view import ReachabilityView
from tui.widgets.traffic_view import TrafficView
from tui.widgets.txn_table import TxnTable


def refusing_flow(where: str) -> Callable[[str], bool]:
    """For a drop counted at `hypervisor/<hv>`: the app's anti-spoofing drop flow there
    (`priority=100,in_port=<port>`, nothing else in the match), the flow that refuses it."""
    prefix = f"{where}/ovs-flow/priority=100,in_port="
    return lambda key: where.startswith("hypervisor/") and key.startswith(prefix) and "," not in key[len(prefix):]


class AppDetailScreen(Screen):
    BINDINGS = [
        Binding("escape,backspace", "back", "Back"),
        Binding("s", "act('sync')", "Sync"),
        Binding("d", "act('dry-run')", "Dry-run"),
        Binding("r", "act('refresh')", "Refresh"),
        Binding("h", "act('self-heal')", "Self-heal"),
        Binding("o", "only_drift", "Only drift"),
        Binding("n", "next_drift", "Next drift"),
        Binding("1", "tab('tab-resources')", "Resources", show=False),
        Binding("2", "tab('tab-history')", "History", show=False),
        Binding("3", "tab('tab-reach')", "Reachability", show=False),
    ]

    def __init__(self, app_name: str) -> None:
        self._ready = False
        super().__init__(id="detail-screen")
        self.app_name = app_name
        self.only_drift = False
        self._resources: dict[str, ResourceRow] = {}
        self._row: AppRow | None = None
        self._marker: object = None
        self._cache: tuple | None = None
        self._reach_marker: object = None
        self._reach_tab = False
        self._txn_tab = False
        self._traffic_tab = False

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("", id="summary")
        with TabbedContent(id="tabs", initial="tab-resources"):
            with TabPane("Resources", id="tab-resources"):
                with Horizontal(id="res-split"):
                    yield ResourceTree(id="tree")
                    yield DiffView(id="diff")
            with TabPane("History", id="tab-history"):
                with Vertical(id="history"):
                    yield Static(Text("Runs", style="bold"), classes="section")
                    yield RunsTable(id="runs")
                    yield Static(Text("Drift events", style="bold"), classes="section")
                    yield DriftTable(id="drift")
        yield Footer()

    def on_mount(self) -> None:
        self._ready = True
        self.sub_title = self.app_name
        self.refresh_data()
        self.query_one(ResourceTree).focus()

    # ---- data -------------------------------------------------------------------------------
    def refresh_data(self) -> None:
        if not self._ready:   # the poll timer may fire before the widgets are mounted
            return
        model, now = self.app.model, self.app.now()
        try:
            marker_of = getattr(model, "marker", None)
            marker = marker_of(self.app_name) if marker_of is not None else None
            if marker is not None and marker == self._marker and self._cache is not None:
                row, resources, runs, drift = self._cache      # nothing changed: only the ages move
            else:
                row, resources, runs, drift = self._read(model)
                self._marker, self._cache = marker, (row, resources, runs, drift)
        except Exception as exc:
            self.query_one("#summary", Static).update(Text(f"cannot read {model.source}: {exc}", style="bold red"))
            return
        self._show(row, resources, runs, drift, now)
        self._show_reach(model, marker)
        self._show_txns(model, now)
        self._show_traffic(now)

    def _show_reach(self, model, marker: object) -> None:
        """The Reachability tab: added when the first verification of the app is there."""
        read = getattr(model, "reachability", None)
        if read is None or (marker is not None and marker == self._reach_marker):
            return
        self._reach_marker = marker
        summary, findings = read(self.app_name)
        if self._reach_tab:
            self.query_one(ReachabilityView).show(summary, findings)
        elif summary is not None:
            self._reach_tab = True
            pane = TabPane("Reachability", ReachabilityView(summary, findings, id="reach"), id="tab-reach")
            self.query_one(TabbedContent).add_pane(pane)

    def _show_traffic(self, now: float) -> None:
        """The Traffic tab: added when the telemetry feed has counters of this app."""
        feed = getattr(self.app, "telemetry", None)
        if feed is None:
            return
        feed.poll(now)
        traffic = feed.traffic(self.app_name)
        if self._traffic_tab:
            self.query_one(TrafficView).show(traffic)
        elif traffic is not None:
            self._traffic_tab = True
            self.query_one(TabbedContent).add_pane(TabPane("Traffic", TrafficView(traffic, id="traffic"),
                                                           id="tab-traffic"))

    def on_traffic_view_show_resource(self, message: TrafficView.ShowResource) -> None:
        self.query_one(TabbedContent).active = "tab-resources"
        tree = self.query_one(ResourceTree)
        if not tree.select_key(message.key) and not tree.select_key(refusing_flow(message.key)):
            self.notify(f"{message.key}: not in this application's resources", severity="information")
        tree.focus()

    def _show_txns(self, model, now: float) -> None:
        """The Transactions tab: added when the store has a transaction touching this app."""
        read = getattr(model, "transactions", None)
        txns = read(self.app_name) if read is not None else []
        if self._txn_tab:
            self.query_one(TxnTable).show(txns, now)
        elif txns:
            self._txn_tab = True
            table = TxnTable(id="txns")
            self.query_one(TabbedContent).add_pane(TabPane("Transactions", table, id="tab-txn"))
            self.call_after_refresh(table.show, txns, now)

    def _read(self, model) -> tuple:
        row = next((a for a in model.apps() if a.name == self.app_name), None)
        return (row, model.resources(self.app_name), model.runs(self.app_name, 50),
                model.drift_events(self.app_name, 1000))

    def _show(self, row, resources, runs, drift, now: float) -> None:
        self._row = row
        self._resources = {str(r.key): r for r in resources}
        self.query_one("#summary", Static).update(self._summary(row, now))
        tree = self.query_one(ResourceTree)
        tree.show(resources, self.only_drift)
        self._show_diff(tree.highlighted_key)
        per_run = Counter(d.run_id for d in drift)
        runs = [r if r.drift or not per_run.get(r.run_id) else replace(r, drift=per_run[r.run_id]) for r in runs]
        self.query_one(RunsTable).show(runs, now)
        self.query_one(DriftTable).show(drift, now)

    def _summary(self, row: AppRow | None, now: float) -> Text:
        if row is None:
            return Text(f"{self.app_name}: not in the store (yet)", style="dim")
        t = Text()
        t.append(f" {row.name} ", style="bold reverse")
        t.append("  ")
        t.append_text(sync_text(row.sync))
        t.append("  ")
        t.append_text(health_text(row.health))
        t.append("  rev ", style="dim")
        t.append(short_rev(row.revision))
        t.append("  synced ", style="dim")
        t.append(age(row.last_sync, now))
        t.append("  drift ", style="dim")
        t.append_text(drift_text(row.drift_count))
        t.append("  self-heal ", style="dim")
        t.append_text(heal_text(row.self_heal))
        if self.only_drift:
            t.append("  [only drift]", style="yellow")
        if row.message:
            t.append(f"\n {row.message}", style="red")
        return t

    def _show_diff(self, key: str | None) -> None:
        self.query_one(DiffView).show(self._resources.get(key) if key else None)

    def on_tree_node_highlighted(self, event: Tree.NodeHighlighted) -> None:
        self._show_diff(event.node.data)

    def on_tree_node_selected(self, event: Tree.NodeSelected) -> None:
        self._show_diff(event.node.data)
        if event.node.data:
            self.query_one(DiffView).focus()

    # ---- actions ----------------------------------------------------------------------------
    def action_back(self) -> None:
        self.app.pop_screen()

    def action_act(self, kind: str) -> None:
        self.app.start_action(kind, self.app_name)

    def action_only_drift(self) -> None:
        self.only_drift = not self.only_drift
        self.refresh_data()

    def action_tab(self, tab: str) -> None:
        # TabbedContent follows focus: move focus into the new pane, or it switches back.
        if tab == "tab-reach":
            if not self._reach_tab:
                self.notify("not verified yet", severity="information")
                return
            self.query_one(TabbedContent).active = tab
            self.query_one(ReachabilityView).focus()
            return
        self.query_one(TabbedContent).active = tab
        (self.query_one(RunsTable) if tab == "tab-history" else self.query_one(ResourceTree)).focus()

    def on_tabbed_content_tab_activated(self, event: TabbedContent.TabActivated) -> None:
        pane = event.pane.id if event.pane is not None else ""
        focused = self.focused
        if pane == "tab-history" and (focused is None
                                      or focused not in (self.query_one(RunsTable), self.query_one(DriftTable))):
            self.query_one(RunsTable).focus()
        elif pane == "tab-resources" and (focused is None or focused not in (self.query_one(ResourceTree),
                                                                             self.query_one(DiffView))):
            self.query_one(ResourceTree).focus()

    def action_next_drift(self) -> None:
        tree = self.query_one(ResourceTree)
        self.query_one(TabbedContent).active = "tab-resources"
        keys = [k for k, r in sorted(self._resources.items(), key=lambda kv: kv[1].key.sort_key())
                if r.status.drifted]
        if not keys:
            self.notify("no drifted resource", severity="information")
            return
        current = tree.highlighted_key
        nxt = keys[0]
        if current in keys:
            nxt = keys[(keys.index(current) + 1) % len(keys)]
        elif current is not None:
            order = sorted(self._resources, key=lambda k: self._resources[k].key.sort_key())
            after = [k for k in keys if order.index(k) > order.index(current)] if current in order else []
            nxt = after[0] if after else keys[0]
        tree.select_key(nxt)
        tree.focus()
