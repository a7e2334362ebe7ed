"""A transaction's owner on another host (or named by `--instance`) is found dead by its heartbeat's
expiry, on a real SQLite file and a real PostgreSQL server: a real process keeps the owner's heartbeat,
`recover` leaves its transaction alone while it beats, and rolls it back once the process was SIGKILLed
and the heartbeat expired. The snapshot driver plays the devices."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pg_helpers import PgServer, available

from reconciler.drivers.base import Target
from reconciler.drivers.snapshot import SnapshotDriver
from reconciler.engine import Engine
from reconciler.model import Layer, Resource, ResourceKey, State
from reconciler.service.store import Store
from reconciler.txn.journal import Journal
from reconciler.txn.models import TxnState
from reconciler.txn.txn import Transactions

ROOT = Path(__file__).resolve().parents[2]
TTL_S = 2.0
BEATER = """
import sys, time
from reconciler.service.store import Store
from reconciler.txn.heartbeat import Heartbeat
from reconciler.txn.journal import Journal
with Heartbeat(Journal(Store(sys.argv[1])), sys.argv[2], interval_s=0.2):
    print("beating", flush=True)
    time.sleep(120)        # SIGKILLed by the test long before
"""


def _rules(v: int) -> Resource:
    return Resource(ResourceKey(Layer.HOST, "h1", "thing", "rules"), {"v": v}, "shop")


def _scenario(url: str, tmp_path: Path, owner: str) -> None:
    snap = tmp_path / "snap.json"
    snap.write_text(json.dumps({"resources": State.of([_rules(0)]).to_json()}))
    targets = {Layer.HOST: [Target("h1", Layer.HOST)]}
    tx = Transactions(Engine({Layer.HOST: SnapshotDriver(Layer.HOST, snap)}, sleep=lambda s: None, attempts=1),
                      Journal(Store(url)), ttl_s=TTL_S)
    j = tx.journal
    # the remote owner journalled h1, wrote it (v=9), and is still at it
    j.begin("tx-remote", run_id="remote", revision="", trigger="cli", owner=owner, context={})
    j.record_prestate("tx-remote", {(Layer.HOST, "h1"): [_rules(0)]}, {(Layer.HOST, "h1"): 1})
    j.set_state("tx-remote", TxnState.APPLYING)
    snap.write_text(json.dumps({"resources": State.of([_rules(9)]).to_json()}))
    p = subprocess.Popen([sys.executable, "-c", BEATER, url, owner], stdout=subprocess.PIPE, text=True, cwd=ROOT,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert p.stdout is not None and p.stdout.readline().strip() == "beating"
        t0 = time.time()
        end = time.monotonic() + 30
        while j.beats([owner]).get(owner, 0) <= t0 + TTL_S and time.monotonic() < end:   # beats past one TTL
            time.sleep(0.1)
        assert j.beats([owner])[owner] > t0 + TTL_S
        assert tx.recover(targets) == []          # alive: its heartbeat is fresh although the row is older than TTL
        assert j.txn("tx-remote").state == TxnState.APPLYING.value
    finally:
        os.kill(p.pid, signal.SIGKILL)
        p.wait(timeout=30)
    killed = time.monotonic()
    done: list = []
    while not done and time.monotonic() < killed + TTL_S + 20:
        done = tx.recover(targets)
        if not done:
            time.sleep(0.2)
    took = time.monotonic() - killed
    assert [r.state for r in done] == [TxnState.ROLLED_BACK], [r.error for r in done]
    assert json.loads(snap.read_text())["resources"] == State.of([_rules(0)]).to_json()
    assert took >= TTL_S - 0.5          # not before the heartbeat expired
    print(f"{owner}: dead owner found {took:.1f}s after kill -9 (TTL {TTL_S}s)")


@pytest.mark.parametrize("owner", ["otherhost:4242", "daemon-a"])
def test_dead_owner_found_by_heartbeat_sqlite(tmp_path, owner):
    _scenario(str(tmp_path / "db.sqlite"), tmp_path, owner)


@pytest.mark.skipif(bool(available()), reason=available() or "ok")
@pytest.mark.parametrize("owner", ["otherhost:4242", "daemon-a"])
def test_dead_owner_found_by_heartbeat_postgres(tmp_path, owner):
    server = PgServer()
    try:
        _scenario(server.url, tmp_path, owner)
    finally:
        server.destroy()
