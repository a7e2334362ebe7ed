"""Rollback in reverse layer order, and owner liveness by heartbeat (reconciler.txn.heartbeat), over the
snapshot driver (the devices) and a real SQLite store. PostgreSQL: tests/integration/test_txn_heartbeat_pg.py."""
from __future__ import annotations

import json
import os
import time

from test_txn_core import DESIRED, PRE, TARGETS, R, devices

from reconciler.drivers.snapshot import SnapshotDriver
from reconciler.engine import Engine
from reconciler.model import Layer, State
from reconciler.service.store import Store
from reconciler.status import Action
from reconciler.txn.heartbeat import Heartbeat, owner_alive, this_owner
from reconciler.txn.journal import Journal
from reconciler.txn.models import TxnState
from reconciler.txn.rollback import layer_groups
from reconciler.txn.txn import Transactions


class Recording(SnapshotDriver):
    """The snapshot driver, noting (layer, action, key) of every change it is asked to write."""

    def __init__(self, layer, path, log):
        super().__init__(layer, path)
        self.log = log

    def apply(self, plans, dry_run=False):
        if not dry_run:
            self.log += [(self.layer, c.action.value, str(c.key)) for tp in plans for c in tp.changes]
        return super().apply(plans, dry_run)


def _world(tmp_path, reject=()):
    path = tmp_path / "snap.json"
    path.write_text(json.dumps({"resources": State.of(PRE).to_json(), "reject": list(reject)}))
    log: list = []
    eng = Engine({l: Recording(l, path, log) for l in Layer}, sleep=lambda s: None, attempts=1)
    return Transactions(eng, Journal(Store(str(tmp_path / "db.sqlite")))), path, log


def test_rollback_restores_changed_and_created_resources_in_reverse_layer_order(tmp_path):
    tx, path, log = _world(tmp_path)
    before = devices(path)
    tx.checks = [lambda report: "injected"]
    applied = len(log)
    res = tx.apply(DESIRED, TARGETS)
    assert res.state is TxnState.ROLLED_BACK, res.error
    forward = [layer for layer, _, _ in log[applied:]][:4]
    rollback = log[applied + 4:]
    assert forward == [Layer.SWITCH, Layer.HYPERVISOR, Layer.HOST, Layer.HOST]
    # switch vlan and host rules were UPDATED by the change, hv1's port CREATED: all undone host first
    assert [(l, a) for l, a, _ in rollback] == [(Layer.HOST, "update"), (Layer.HOST, "update"),
                                                (Layer.HYPERVISOR, "delete"), (Layer.SWITCH, "update")]
    assert len(res.rollback) == 2           # host + hypervisor (it only deletes), then switch: one observation
    assert devices(path) == before


def test_layer_groups_keep_every_write_above_the_layers_below():
    U, D = Action.UPDATE, Action.DELETE
    assert layer_groups({Layer.SWITCH: {U}, Layer.HYPERVISOR: {D}, Layer.HOST: {U, D}}) == [
        [Layer.HOST, Layer.HYPERVISOR], [Layer.SWITCH]]
    assert layer_groups({Layer.SWITCH: {D}, Layer.HYPERVISOR: {U}, Layer.HOST: {D}, Layer.SIDECAR: {U}}) == [
        [Layer.SIDECAR, Layer.HOST], [Layer.HYPERVISOR, Layer.SWITCH]]
    assert layer_groups({Layer.SWITCH: {Action.CREATE}, Layer.HOST: set()}) == [[Layer.SWITCH]]


def test_a_failed_layer_does_not_stop_the_layers_below_from_rolling_back(tmp_path):
    tx, path, _ = _world(tmp_path)
    tx.checks = [lambda report: "injected"]

    class Down(SnapshotDriver):   # the host layer cannot be written during the rollback
        def apply(self, plans, dry_run=False):
            raise OSError("ssh: connection refused")
    real = tx.engine.drivers[Layer.HOST]
    tx.engine.write_gate = None

    def swap(report):
        tx.engine.drivers[Layer.HOST] = Down(Layer.HOST, path)
        return "injected"
    tx.checks = [swap]
    res = tx.apply(DESIRED, TARGETS)
    tx.engine.drivers[Layer.HOST] = real
    assert res.state is TxnState.ROLLBACK_FAILED
    assert devices(path)["switch/sw1/thing/vlan"] == {"v": 0}      # restored after the host layer failed
    assert "hypervisor/hv1/thing/port" not in devices(path)


def _in_flight(tx: Transactions, owner: str, path) -> str:
    """A transaction journalled by `owner` that wrote h1 and then stopped (its process is gone or not)."""
    j = tx.journal
    j.begin("tx-remote", run_id="remote", revision="", trigger="cli", owner=owner, context={})
    j.record_prestate("tx-remote", {(Layer.HOST, "h1"): [R(Layer.HOST, "h1", "rules", v=0)]}, {(Layer.HOST, "h1"): 1})
    j.set_state("tx-remote", TxnState.APPLYING)
    data = json.loads(path.read_text())
    kept = [r for r in State.from_json(data["resources"]) if str(r.key) != "host/h1/thing/rules"]
    data["resources"] = State.of([*kept, R(Layer.HOST, "h1", "rules", v=9)]).to_json()
    path.write_text(json.dumps(data))
    return "tx-remote"


def test_owner_on_another_host_is_alive_while_its_heartbeat_is_fresh(tmp_path):
    tx, path, _ = _world(tmp_path)
    before = devices(path)
    txn = _in_flight(tx, "otherhost:4242", path)
    tx.journal.beat("otherhost:4242")
    assert tx.recover(TARGETS) == []                               # fresh heartbeat: leave it alone
    tx.journal.beat("otherhost:4242", now=time.time() - 3600)      # its host died an hour ago
    tx.journal.set_state(txn, TxnState.APPLYING)                   # (set_state touched `updated`)
    with tx.journal._session() as s:                               # the row itself is as old as its last beat
        row = s.get(type(tx.journal.txn(txn)), txn)
        row.updated = time.time() - 3600
        s.add(row)
        s.commit()
    assert [r.state for r in tx.recover(TARGETS)] == [TxnState.ROLLED_BACK]
    assert devices(path) == before


def test_named_owner_without_heartbeat_expires_and_local_dead_pid_is_dead_at_once(tmp_path):
    now = time.time()
    assert not owner_alive("daemon-a", None, now)                  # `--instance daemon-a`, never beat
    assert owner_alive("daemon-a", now - 5, now) and not owner_alive("daemon-a", now - 31, now)
    assert owner_alive(this_owner(), None, now)                    # this process: alive without a beat
    host = this_owner().rpartition(":")[0]
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    assert not owner_alive(f"{host}:{pid}", now, now)              # local pid gone: dead despite a fresh beat


def test_heartbeat_refreshes_while_held_and_stops_after(tmp_path):
    j = Journal(Store(str(tmp_path / "db.sqlite")))
    hb = Heartbeat(j, "me:1", interval_s=0.05)
    with hb:
        first = j.beats(["me:1"])["me:1"]
        with hb:                                                   # re-entrant: a rollback inside an apply
            end = time.monotonic() + 5
            while j.beats(["me:1"])["me:1"] == first and time.monotonic() < end:
                time.sleep(0.02)
        assert j.beats(["me:1"])["me:1"] > first
    assert hb._thread is None
