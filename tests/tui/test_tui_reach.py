"""Pilot test: reachability in the TUI. The store holds a real verification (the example intents,
compiled, with an accept inserted ahead of shop's drop on h3, verified by the daemon's incremental
verifier and saved as the daemon saves it); the app list shows a REACH column and the detail
screen a "Reachability" tab with the leak's permitting hop and its witness path."""
from __future__ import annotations

import asyncio
from pathlib import Path

from textual.widgets import TabbedContent

from reconciler.compile import compile_repo
from reconciler.intents.validate import load_repo
from reconciler.model import Resource, thaw
from reconciler.service import store_verify
from reconciler.verify.incremental import Incremental
from tests.unit.verify_cases import healthy
from tui.screens import AppDetailScreen
from tui.widgets import AppTable
from tui.widgets.reach_view import ReachabilityView

from .conftest import wait_for
from .test_tui_pilot import table_rows

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "intents"
ACCEPT_API = {"match": {"daddr_set": "svc_api", "protocol": "tcp", "dport": 8080}, "verdict": "accept"}


def _verified(store) -> None:
    repo = load_repo(str(EXAMPLES))
    res = []
    for r in compile_repo(repo):
        if str(r.key) == "host/h3/nft-table/netintent_shop":
            spec = thaw(r.spec)
            spec["chains"]["input"]["rules"].insert(2, ACCEPT_API)
            r = Resource(r.key, spec, r.app, r.owned)
        res.append(r)
    res = healthy(res)      # the examples' own two defects repaired: only the hand-made leak is left
    inc = Incremental(repo, res)
    apps = set(repo.apps)
    store_verify.save(store, "4f9c2e71d0a8b35c6e21f7a90d4b8c13e5f60a27", inc.counts(),
                      {a: inc.findings(a) for a in apps}, apps)


def test_without_a_verification_there_is_no_reach_column_and_no_tab(demo):
    async def go():
        app = demo.app()
        async with app.run_test(size=(150, 30)) as pilot:
            await pilot.pause()
            cols = [c.label.plain for c in app.screen.query_one(AppTable).columns.values()]
            assert "REACH" not in cols
            await pilot.press("enter")
            await pilot.pause()
            await pilot.press("3")
            await pilot.pause()
            assert app.screen.query_one(TabbedContent).active == "tab-resources"
            assert not app.screen.query(ReachabilityView)
    asyncio.run(go())


def test_reach_column_and_reachability_tab_with_witness_paths(demo):
    _verified(demo.store)

    async def go():
        app = demo.app()
        async with app.run_test(size=(150, 40)) as pilot:
            await pilot.pause()
            table = app.screen.query_one(AppTable)
            cols = [c.label.plain for c in table.columns.values()]
            reach = table_rows(table)
            i = cols.index("REACH")
            assert reach["billing"][i] == "ok" and reach["analytics"][i] == "ok"
            leaks = store_verify.summaries(demo.store)["shop"].leaks
            assert leaks > 0 and reach["shop"][i] == f"{leaks}L"
            await pilot.press("down", "down", "enter")                # rows: analytics, billing, shop
            await wait_for(pilot, lambda: isinstance(app.screen, AppDetailScreen)
                           and bool(app.screen.query(ReachabilityView)))
            await pilot.press("3")
            await pilot.pause()
            screen = app.screen
            assert screen.query_one(TabbedContent).active == "tab-reach"
            text = screen.query_one(ReachabilityView).plain
            assert f"{leaks} leak(s)" in text
            assert "LEAK [l4] billing/ledger@10.50.2.21 -> shop/api@10.50.1.21:8080" in text
            assert "permitted: forward host       h3       nftables inet netintent_shop input #3" in text
            assert "witness:" in text and "return" in text and "switch" in text
            await pilot.press("1")
            await pilot.pause()
            assert screen.query_one(TabbedContent).active == "tab-resources"
    asyncio.run(go())
