"""Pilot: traffic and drop rates in the app list, the Traffic tab of an app (rates with
sparklines, refused sources with the refusing layer, a refused source opens the refusing rule's
resource in the tree). The feed reads Prometheus text exported by the real telemetry stages
(parse -> aggregate -> totals -> export) from two rounds of device output."""
from __future__ import annotations

import asyncio
import json

from prometheus_client import CollectorRegistry, generate_latest
from textual.widgets import DataTable, Static, TabbedContent

from reconciler.compile import compile_repo
from reconciler.intents.validate import load_repo
from reconciler.telemetry.aggregate import aggregate
from reconciler.telemetry.export import TelemetryExport
from reconciler.telemetry.index import build_index
from reconciler.telemetry.model import TargetRead
from reconciler.telemetry.parse import parse_host
from reconciler.telemetry.totals import Totals
from tui.screens import AppDetailScreen
from tui.telemetrymodel import TelemetryFeed
from tui.widgets import AppTable, ResourceTree
from tui.widgets.traffic_view import TrafficView

from .conftest import EXAMPLES, wait_for


def _h3(acc: int, refused: int) -> str:
    counters = {"nftables": [{"counter": {"family": "inet", "table": "netintent_shop", "name": n, "packets": p,
                                          "bytes": p * 60}}
                             for n, p in (("acc_api_grpc", acc), ("drop_api_grpc", refused), ("drop_other", 0))]}
    sets = {"nftables": [{"set": {"family": "inet", "name": "refused", "table": "netintent_shop", "elem": [
        {"elem": {"val": {"concat": ["10.50.2.21", "10.50.1.21", 8080]},
                  "counter": {"packets": refused, "bytes": refused * 60}}}]}}]}
    return json.dumps(counters) + "\n@@NI@@\n" + json.dumps(sets)


def feed() -> TelemetryFeed:
    repo = load_repo(EXAMPLES)
    ix = build_index(repo, compile_repo(repo))
    totals = Totals()
    reg = CollectorRegistry()
    reg.register(TelemetryExport(totals))
    texts = []
    for ts, acc, refused in ((100.0, 100, 10), (110.0, 150, 30)):
        totals.add(aggregate([TargetRead("host", "h3", True, tuple(parse_host("h3", _h3(acc, refused)))),
                              TargetRead("host", "h4", False, error="ssh rc=255")], ix, ts))
        texts.append(generate_latest(reg).decode())
    f = TelemetryFeed(iter(texts).__next__, min_interval_s=5.0)
    f.poll(100.0)
    f.poll(110.0)
    f.min_interval_s = 1e12     # the app's own polls change nothing
    return f


def test_app_list_and_traffic_tab(demo):
    async def go():
        app = demo.app()
        app.telemetry = feed()
        async with app.run_test(size=(180, 40)) as pilot:
            await pilot.pause()
            app.poll()
            table = app.screen.query_one(AppTable)
            await wait_for(pilot, lambda: "traffic" in [c.value for c in table.columns])
            cols = [c.value for c in table.columns]
            shop = [getattr(c, "plain", str(c)) for c in table.get_row("shop")]
            assert shop[cols.index("traffic")] == "5.0/s"           # 50 accepted SYNs in 10 s
            assert shop[cols.index("drops")] == "2.0/s"             # 20 refused in 10 s
            analytics = [getattr(c, "plain", str(c)) for c in table.get_row("analytics")]
            assert analytics[cols.index("traffic")] == "?"          # h4 could not be read: unknown, not 0
            await app.push_screen(AppDetailScreen("shop"))
            await pilot.pause()
            await wait_for(pilot, lambda: bool(app.screen.query("#tab-traffic")))
            app.screen.query_one(TabbedContent).active = "tab-traffic"
            await pilot.pause()
            text = app.screen.query_one("#traffic-summary", Static).render()
            plain = getattr(text, "plain", str(text))
            assert "api" in plain and "5.0/s" in plain and "2.0/s" in plain
            refused = app.screen.query_one("#refused", DataTable)
            row = [getattr(c, "plain", str(c)) for c in refused.get_row_at(0)]
            assert row[:6] == ["billing", "api", "grpc", "host", "h3", "30"]
            app.screen.query_one(TrafficView).post_message(TrafficView.ShowResource("host/h3/nft-table/netintent_shop"))
            await wait_for(pilot, lambda: app.screen.query_one(TabbedContent).active == "tab-resources")
            await wait_for(pilot, lambda: app.screen.query_one(ResourceTree).highlighted_key
                           == "host/h3/nft-table/netintent_shop")
            # a drop counted at a hypervisor opens the app's anti-spoofing drop flow there
            flow = next(str(r.key) for r in compile_repo(load_repo(EXAMPLES))
                        if r.app == "shop" and r.key.layer.value == "hypervisor" and r.key.kind == "ovs-flow"
                        and r.spec["actions"] == "drop")
            hv = "/".join(flow.split("/")[:2])
            app.screen.query_one(TabbedContent).active = "tab-traffic"
            app.screen.query_one(TrafficView).post_message(TrafficView.ShowResource(hv))
            await wait_for(pilot, lambda: app.screen.query_one(TabbedContent).active == "tab-resources")
            await wait_for(pilot, lambda: (app.screen.query_one(ResourceTree).highlighted_key or "").startswith(
                f"{hv}/ovs-flow/priority=100,in_port="))
            assert "," not in app.screen.query_one(ResourceTree).highlighted_key.split("in_port=", 1)[1]
    asyncio.run(go())
