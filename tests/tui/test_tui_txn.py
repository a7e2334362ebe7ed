"""The Transactions tab of an application's detail screen, over the demo store (tests/tui/conftest.py)
after a real transaction (snapshot driver, journal in the same store) was rolled back."""
from __future__ import annotations

import asyncio
import json

from textual.widgets import TabbedContent

from reconciler.drivers.base import targets_of
from reconciler.drivers.snapshot import SnapshotDriver
from reconciler.engine import Engine
from reconciler.intents.validate import load_repo
from reconciler.model import Layer
from reconciler.txn.journal import Journal
from reconciler.txn.models import TxnState
from reconciler.txn.txn import Transactions
from tui.screens import AppDetailScreen
from tui.widgets.txn_table import TxnTable

from .conftest import desired_state, wait_for
from .test_tui_pilot import table_rows


def test_transactions_tab_lists_targets_and_outcome(demo):
    key = "host/h5/nft-set/netintent_shop/allow_api_grpc"   # missing on the device, and the device refuses it
    data = json.loads(demo.snapshot.read_text())
    data.update(reject=[key], resources=[r for r in data["resources"] if r["key"] != key])
    demo.snapshot.write_text(json.dumps(data))
    engine = Engine({l: SnapshotDriver(l, demo.snapshot) for l in Layer}, attempts=1, sleep=lambda s: None)
    tx = Transactions(engine, Journal(demo.store))
    res = tx.apply(desired_state(), targets_of(load_repo(str(demo.repo)).inventory), apps=["shop"])
    assert res.state is TxnState.ROLLED_BACK, res.error

    async def go():
        app = demo.app()
        async with app.run_test(size=(160, 40)) as pilot:
            await pilot.press("down", "down", "enter")
            await pilot.pause()
            screen = app.screen
            assert isinstance(screen, AppDetailScreen) and screen.app_name == "shop"
            await wait_for(pilot, lambda: bool(screen.query(TxnTable)))
            screen.query_one(TabbedContent).active = "tab-txn"
            table = screen.query_one(TxnTable)
            await wait_for(pilot, lambda: table.row_count > 1)
            rows = table_rows(table)
            assert rows[res.txn_id][4] == "rolled-back"
            assert rows[f"{res.txn_id}/host/h5"][4] == "rolled-back"
    asyncio.run(go())
