"""Pilot tests: the TUI's behaviour on a store filled by real engine runs (tests/tui/conftest.py).

Navigate, filter and search, open a diff, history, dry-run and sync through the real
engine (snapshot driver), self-heal toggled with confirmation, live updates, read-only
snapshot mode, small terminals, help, secrets hidden.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import threading

from textual.widgets import DataTable, Input, Static, TabbedContent

from reconciler.events import Event, EventKind
from reconciler.model import Layer
from reconciler.status import Health, Sync
from tui.actions import LocalActions, NoActions
from tui.app import ReconcilerApp
from tui.data import ResState
from tui.eventmodel import EventModel
from tui.screens import ActionScreen, AppDetailScreen, AppListScreen, ConfirmScreen, HelpScreen
from tui.widgets import AppTable, DiffView, DriftTable, ResourceTree, RunsTable
from tui.widgets.diff_view import diff_lines, render

from .conftest import wait_for

SHOP_FW = "host/h3/nft-set/netintent_shop/allow_api_grpc"
BILLING_ROUTE = "host/h6/route/10.50.1.0/24"


def table_rows(table: DataTable) -> dict[str, list[str]]:
    out = {}
    for row_key in table.rows:
        cells = table.get_row(row_key)
        out[row_key.value] = [getattr(c, "plain", str(c)) for c in cells]
    return out


def run(coro):
    return asyncio.run(coro)


def test_app_list_shows_store_status(demo):
    async def go():
        app = demo.app()
        async with app.run_test(size=(140, 30)) as pilot:
            await pilot.pause()
            rows = table_rows(app.screen.query_one(AppTable))
            assert sorted(rows) == ["analytics", "billing", "shop"]
            status = {a.app: a for a in demo.store.apps()}
            for name, cells in rows.items():
                assert status[name].sync.value in cells[1]
                assert status[name].health.value in cells[2]
                assert cells[3] == status[name].revision[:8]
                assert cells[5] == str(status[name].drift_count)
            # what the real runs produced: shop drifted (2), billing's repair was rejected
            assert "OutOfSync" in rows["shop"][1] and rows["shop"][5] == "2" and "Healthy" in rows["shop"][2]
            assert "Degraded" in rows["billing"][2] and "rejected" in rows["billing"][7]
    run(go())


def test_filter_and_search(demo):
    async def go():
        app = demo.app()
        async with app.run_test(size=(140, 30)) as pilot:
            screen = app.screen
            assert isinstance(screen, AppListScreen)
            await pilot.press("slash")
            assert isinstance(app.focused, Input)
            await pilot.press(*"bill")
            assert screen.visible_apps == ["billing"]
            await pilot.press("escape")           # clears the search, focus back on the table
            assert screen.visible_apps == ["analytics", "billing", "shop"]
            assert isinstance(app.focused, AppTable)
            await pilot.press("f")                 # out of sync
            assert screen.visible_apps == ["analytics", "billing", "shop"]
            await pilot.press("f")                 # degraded
            assert screen.visible_apps == ["analytics", "billing"]
            await pilot.press("f")                 # drifted
            assert "shop" in screen.visible_apps
            await pilot.press("f")                 # all again
            await pilot.press("slash", *"health:deg sync:out", "enter")
            assert screen.visible_apps == ["analytics", "billing"]
            assert isinstance(app.focused, AppTable)
            screen.query_one("#search", Input).value = "no-such-app"
            await pilot.pause()
            assert screen.visible_apps == []
            assert screen.query_one(AppTable).row_count == 0
    run(go())


def test_navigate_open_diff_and_history(demo):
    async def go():
        app = demo.app()
        async with app.run_test(size=(140, 40)) as pilot:
            # move down to shop (rows sorted: analytics, billing, shop) and open it
            await pilot.press("down", "down", "enter")
            await pilot.pause()
            screen = app.screen
            assert isinstance(screen, AppDetailScreen) and screen.app_name == "shop"
            tree = screen.query_one(ResourceTree)
            await pilot.press("n")                 # next drifted resource
            await wait_for(pilot, lambda: tree.highlighted_key is not None)
            diff = screen.query_one(DiffView)
            # drifted shop resources in tree order: the hv... none; host h3 firewall set first
            assert tree.highlighted_key == SHOP_FW
            assert diff.row is not None and diff.row.status is ResState.DIFFERS
            # the injected drift: 10.50.2.11 was removed on the device, the intent wants it
            lines = [f"{s} {t}" for s, t in diff_lines(diff.row)]
            assert lines == ["+ elements: 10.50.2.11"]
            assert "+&#160;elements:&#160;10.50.2.11" in app.export_screenshot()   # and it is on screen
            await pilot.press("n")
            await pilot.pause()
            second = tree.highlighted_key
            assert second != SHOP_FW and second.startswith("sidecar/") and "/route/" in second
            assert diff.row.key.kind == "route"
            # history tab: the three runs touching shop, newest first, with trigger and outcome
            await pilot.press("2")
            await pilot.pause()
            assert screen.query_one(TabbedContent).active == "tab-history"
            runs = table_rows(screen.query_one(RunsTable))
            assert list(runs) == ["demo-0002", "demo-0001"]
            assert runs["demo-0001"][3] == "commit" and runs["demo-0001"][4] == "succeeded"
            assert runs["demo-0002"][3] == "drift-scan" and runs["demo-0002"][4].startswith("dry-run")
            drift = table_rows(screen.query_one(DriftTable))
            keys = {cells[3] for cells in drift.values()}
            assert SHOP_FW in keys
            await pilot.press("escape")
            assert isinstance(app.screen, AppListScreen)
    run(go())


def test_only_drift_toggle(demo):
    async def go():
        app = demo.app(open_app="billing")
        async with app.run_test(size=(140, 40)) as pilot:
            await pilot.pause()
            tree = app.screen.query_one(ResourceTree)
            leaves = lambda: [n.data for n in tree._walk(tree.root) if n.data]  # noqa: E731
            all_keys = leaves()
            assert BILLING_ROUTE in all_keys and len(all_keys) > 10
            await pilot.press("o")
            await pilot.pause()
            assert leaves() == [BILLING_ROUTE]
            row = app.screen._resources[BILLING_ROUTE]
            assert row.status is ResState.FAILED      # the self-heal run's result for it
    run(go())


def test_dry_run_through_the_engine(demo):
    before = demo.snapshot.read_bytes()
    runs_before = {r.run_id for r in demo.model.runs()}

    async def go():
        app = demo.app()
        async with app.run_test(size=(140, 40)) as pilot:
            await pilot.press("down", "down", "d")
            assert isinstance(app.screen, ConfirmScreen)
            await pilot.press("y")
            assert isinstance(app.screen, ActionScreen)
            screen = app.screen
            await wait_for(pilot, lambda: screen.result is not None)
            res = screen.result
            assert res.ok, res
            assert res.title == "dry-run plan shop"
            assert res.summary == "2 change(s) would be made"
            texts = [t for _, t in res.lines]
            assert "~ nft-set netintent_shop/allow_api_grpc" in texts
            assert "    + elements: 10.50.2.11" in texts
            await pilot.press("escape")
            assert isinstance(app.screen, AppListScreen)
    run(go())
    assert demo.snapshot.read_bytes() == before          # a dry-run writes nothing
    new = [r for r in demo.model.runs() if r.run_id not in runs_before]
    assert len(new) == 1 and new[0].dry_run and new[0].trigger == "tui-dry-run" and new[0].apps == ("shop",)


def test_cancel_does_nothing_and_sync_repairs(demo):
    async def go():
        app = demo.app()
        async with app.run_test(size=(140, 40)) as pilot:
            await pilot.press("down", "down", "s")
            assert isinstance(app.screen, ConfirmScreen)
            assert app.focused.id == "confirm-no"       # a stray Enter must not sync
            await pilot.press("enter")
            assert isinstance(app.screen, AppListScreen)
            assert {a.app: a.sync for a in demo.store.apps()}["shop"] is Sync.OUT_OF_SYNC
            await pilot.press("s", "y")
            screen = app.screen
            assert isinstance(screen, ActionScreen)
            await wait_for(pilot, lambda: screen.result is not None)
            assert screen.result.ok and screen.result.summary.startswith("converged: 2 change(s), 2 write(s)")
            await pilot.press("enter")
            await pilot.pause()
            rows = table_rows(app.screen.query_one(AppTable))
            assert "Synced" in rows["shop"][1] and rows["shop"][5] == "0"
    run(go())
    status = {a.app: a for a in demo.store.apps()}["shop"]
    assert status.sync is Sync.SYNCED and status.health is Health.HEALTHY
    snap = json.loads(demo.snapshot.read_text())
    fw = next(r for r in snap["resources"] if r["key"] == SHOP_FW)
    assert "10.50.2.11" in fw["spec"]["elements"]          # the device state was repaired


def test_toggle_self_heal_with_confirmation(demo):
    async def go():
        app = demo.app()
        async with app.run_test(size=(140, 30)) as pilot:
            await pilot.press("h")                      # analytics (first row); no override yet
            assert isinstance(app.screen, ConfirmScreen)
            # examples/intents/reconciler.yaml has sync.self_heal: true, so the toggle turns it off
            assert app.screen.question == "Disable self-heal for analytics?"
            assert "follows the repo's sync policy (on)" in app.screen.detail
            await pilot.press("n")
            assert {a.app: a.self_heal for a in demo.store.apps()}["analytics"] is None
            await pilot.press("h", "y")
            await pilot.pause()
            assert {a.app: a.self_heal for a in demo.store.apps()}["analytics"] is False
            assert table_rows(app.screen.query_one(AppTable))["analytics"][6] == "off"
            await pilot.press("h")
            assert app.screen.question == "Enable self-heal for analytics?"
            await pilot.press("y")
            await pilot.pause()
            assert {a.app: a.self_heal for a in demo.store.apps()}["analytics"] is True
            assert table_rows(app.screen.query_one(AppTable))["analytics"][6] == "on"
    run(go())


def test_live_updates_without_keys(demo):
    """Another writer (here: an engine run in a thread, as the daemon would) changes the
    store; the screen follows within a few polls."""
    async def go():
        app = demo.app(poll_s=0.1)
        async with app.run_test(size=(140, 30)) as pilot:
            await pilot.pause()
            assert "OutOfSync" in table_rows(app.screen.query_one(AppTable))["shop"][1]
            actions = demo.actions()
            t = threading.Thread(target=actions.sync, args=("shop",))
            t.start()
            try:
                await wait_for(pilot, lambda: "Synced" in table_rows(app.screen.query_one(AppTable))["shop"][1]
                               and "OutOf" not in table_rows(app.screen.query_one(AppTable))["shop"][1])
            finally:
                t.join(30)
    run(go())


def test_read_only_snapshot_mode(demo, tmp_path):
    from tui.cli import build
    args = argparse.Namespace(snapshot=str(demo.snapshot), repo=str(demo.repo), store=None, daemon=None,
                              webhook_secret_file=None, demo=False)
    model, actions = build(args)
    assert model.read_only and "sync" not in actions.capabilities and "self-heal" not in actions.capabilities
    shop = {a.name: a for a in model.apps()}["shop"]
    assert shop.sync is Sync.OUT_OF_SYNC and shop.drift_count >= 2   # live compile vs the pinned demo state
    ana = {a.name: a for a in model.apps()}["analytics"]
    assert ana.sync is Sync.UNKNOWN and ana.health is Health.DEGRADED   # h4 is unreachable in the snapshot
    before = demo.snapshot.read_bytes()

    async def go():
        app = ReconcilerApp(model, actions, poll_s=0)
        async with app.run_test(size=(140, 30)) as pilot:
            await pilot.press("s")
            await pilot.pause()
            assert isinstance(app.screen, AppListScreen)          # refused, no confirmation asked
            await pilot.press("h")
            assert isinstance(app.screen, AppListScreen)
            await pilot.press("r", "y")
            screen = app.screen
            assert isinstance(screen, ActionScreen)
            await wait_for(pilot, lambda: screen.result is not None)
            assert screen.result.title.startswith("refresh")
    run(go())
    assert demo.snapshot.read_bytes() == before


def test_small_terminal_stacks_panes(demo):
    async def go():
        app = demo.app(open_app="shop")
        async with app.run_test(size=(60, 20)) as pilot:
            await pilot.pause()
            screen = app.screen
            assert screen.has_class("-narrow")
            split = screen.query_one("#res-split")
            assert split.styles.layout.name == "vertical"
            tree, diff = screen.query_one(ResourceTree), screen.query_one(DiffView)
            assert tree.region.width == diff.region.width and diff.region.y > tree.region.y
            await pilot.press("escape")
            await pilot.pause()
            cols = [c.label.plain for c in app.screen.query_one(AppTable).columns.values()]
            assert "REVISION" not in cols and "SYNC" in cols and "DRIFT" in cols
    run(go())


def test_help_screen(demo):
    async def go():
        app = demo.app()
        async with app.run_test(size=(100, 40)) as pilot:
            await pilot.press("question_mark")
            assert isinstance(app.screen, HelpScreen)
            await pilot.press("escape")
            assert isinstance(app.screen, AppListScreen)
    run(go())


def test_secrets_are_never_shown():
    model = EventModel(["vault"])
    secret = "s3cr3t-Pa55word-value"
    key = "switch/leaf1/bgp/65001"
    model.observer(Event(EventKind.RUN_STARTED, "r1", data={"dry_run": True}))
    model.observer(Event(EventKind.STATE, "r1", data={"resources": [
        {"key": key, "app": "vault", "status": "update",
         "desired": {"asn": 65001, "neighbors": [{"ip": "10.0.0.2", "password": secret}]},
         "observed": {"asn": 65001, "neighbors": [{"ip": "10.0.0.2", "password": "old-" + secret}],
                      "tls": {"private_key": "-----BEGIN PRIVATE KEY-----\nMII"}}}]}))
    model.observer(Event(EventKind.RUN_FINISHED, "r1", data={"phase": "succeeded", "apps": ["vault"]}))

    async def go():
        app = ReconcilerApp(model, NoActions(), poll_s=0, open_app="vault")
        async with app.run_test(size=(140, 40)) as pilot:
            await pilot.pause()
            tree = app.screen.query_one(ResourceTree)
            assert tree.select_key(key)
            await pilot.pause()
            await pilot.pause()
            diff = app.screen.query_one(DiffView)
            assert diff.row is not None and str(diff.row.key) == key
            from rich.console import Console
            console = Console(width=140, record=True, file=open("/dev/null", "w"))
            console.print(render(diff.row))          # what the DiffView shows
            out = console.export_text()
            assert "neighbors" in out and "asn" in out and "***" in out
            assert secret not in out and "BEGIN PRIVATE KEY" not in out
            screen_svg = app.export_screenshot()       # and what is on screen
            assert "neighbors" in screen_svg and secret not in screen_svg and "PRIVATE" not in screen_svg
    run(go())


def test_cli_errors_are_one_line(tmp_path, capsys):
    from reconciler.cli import main
    assert main(["tui", "--snapshot", str(tmp_path / "nope.json"), "--repo", str(tmp_path)]) == 2
    assert "snapshot file not found" in capsys.readouterr().err
    assert main(["tui", "--snapshot", str(tmp_path / "nope.json")]) == 2
    assert "--snapshot needs --repo" in capsys.readouterr().err
    assert main(["tui", "--store", str(tmp_path / "missing.db")]) == 2
    assert "no store here" in capsys.readouterr().err


def test_run_in_progress_shows_progressing(demo):
    """While a writing run is under way (another writer, e.g. the daemon) the app shows
    Progressing and the list says which run is running; afterwards the outcome."""
    from reconciler.drivers.snapshot import SnapshotDriver
    gate, entered = threading.Event(), threading.Event()

    class Held(SnapshotDriver):            # the real snapshot driver, held before it writes
        def apply(self, plans, dry_run=False):
            entered.set()
            gate.wait(30)
            return super().apply(plans, dry_run)

    actions = LocalActions(demo.repo, lambda _inv, _targets: {l: Held(l, demo.snapshot) for l in Layer},
                           [demo.store.observer], read_model=demo.model, backoff_s=0.0)

    async def go():
        app = demo.app(poll_s=0.1)
        async with app.run_test(size=(140, 30)) as pilot:
            t = threading.Thread(target=actions.sync, args=("shop",))
            t.start()
            try:
                await wait_for(pilot, entered.is_set)
                await wait_for(pilot, lambda: "Progressing" in table_rows(app.screen.query_one(AppTable))["shop"][2])
                await wait_for(pilot, lambda: "running (tui)" in str(app.screen.query_one("#apps-status", Static).render()))
                assert "Progressing" not in table_rows(app.screen.query_one(AppTable))["billing"][2]
            finally:
                gate.set()
                t.join(30)
            await wait_for(pilot, lambda: "Healthy" in table_rows(app.screen.query_one(AppTable))["shop"][2])
            assert "Synced" in table_rows(app.screen.query_one(AppTable))["shop"][1]
    run(go())


def test_cli_modes(demo, tmp_path):
    from tui.actions import LocalActions as Local
    from tui.cli import build
    from tui.http_actions import DaemonActions
    db = str(tmp_path / "state.db")
    ns = lambda **kw: argparse.Namespace(**{"snapshot": None, "repo": None, "store": db, "daemon": None,  # noqa: E731
                                            "webhook_secret_file": None, "demo": False, **kw})
    model, actions = build(ns())
    assert isinstance(actions, NoActions) and actions.capabilities == {"self-heal"}
    assert [a.name for a in model.apps()] == ["analytics", "billing", "shop"]
    _, actions = build(ns(repo=str(demo.repo)))
    assert isinstance(actions, Local) and actions.capabilities == {"sync", "dry-run", "refresh", "self-heal"}
    secret = tmp_path / "secret"
    secret.write_text("0123456789abcdef0123")
    _, actions = build(ns(daemon="127.0.0.1:9", webhook_secret_file=str(secret), repo=str(demo.repo)))
    assert isinstance(actions, DaemonActions) and actions.base == "http://127.0.0.1:9"
    assert actions.capabilities == {"sync", "dry-run", "refresh", "self-heal"}
    assert "sync" not in actions.local.capabilities          # with a daemon, only it writes the network
    assert "0123456789abcdef" not in actions.description
    _, actions = build(ns(daemon="127.0.0.1:9"))
    assert actions.capabilities == {"self-heal"}
