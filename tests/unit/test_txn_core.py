"""The transaction state machine and journal (reconciler.txn) over the snapshot driver and a
real SQLite store: the journal and the txn logic are under test, the snapshot file plays the
devices (it rejects keys and hides targets as the file says)."""
import json

import pytest

from reconciler.drivers.base import Target
from reconciler.drivers.snapshot import SnapshotDriver
from reconciler.engine import Engine
from reconciler.model import Layer, Resource, ResourceKey, State
from reconciler.service.store import Store
from reconciler.txn.journal import Journal, JournalUnavailable
from reconciler.txn.models import TargetStatus, TxnState
from reconciler.txn.txn import Transactions


def R(layer, target, name, app="shop", v=1):
    return Resource(ResourceKey(layer, target, "thing", name), {"v": v}, app)


PRE = [R(Layer.SWITCH, "sw1", "vlan", v=0), R(Layer.HOST, "h1", "rules", v=0), R(Layer.HOST, "h2", "rules", v=0),
       Resource(ResourceKey(Layer.HOST, "h2", "thing", "foreign"), {"x": 1}, "", owned=False)]
DESIRED = State.of([R(Layer.SWITCH, "sw1", "vlan", v=1), R(Layer.HYPERVISOR, "hv1", "port"),
                    R(Layer.HOST, "h1", "rules", v=1), R(Layer.HOST, "h2", "rules", v=1)])
TARGETS = {Layer.SWITCH: [Target("sw1", Layer.SWITCH)], Layer.HYPERVISOR: [Target("hv1", Layer.HYPERVISOR)],
           Layer.HOST: [Target("h1", Layer.HOST), Target("h2", Layer.HOST)]}


def devices(path):
    return {r["key"]: r["spec"] for r in json.loads(path.read_text())["resources"]}


@pytest.fixture
def world(tmp_path):
    path = tmp_path / "snap.json"

    def make(reject=(), unreachable=()):
        path.write_text(json.dumps({"resources": State.of(PRE).to_json(), "reject": list(reject),
                                    "unreachable": list(unreachable)}))
        eng = Engine({l: SnapshotDriver(l, path) for l in Layer}, sleep=lambda s: None, attempts=1)
        store = Store(str(tmp_path / "db.sqlite"))
        return Transactions(eng, Journal(store)), path
    return make


def set_file(path, **kw):
    data = json.loads(path.read_text())
    data.update(kw)
    path.write_text(json.dumps(data))


def test_clean_apply_commits_and_journals_prestate(world):
    tx, path = world()
    before = devices(path)
    res = tx.apply(DESIRED, TARGETS)
    assert res.state is TxnState.COMMITTED, res.error
    pre, tids = tx.journal.pre_state(res.txn_id)
    assert {str(k): r.spec for k, r in pre.resources.items()} == before   # every resource, the unowned one too
    assert set(tids) == {(Layer.SWITCH, "sw1"), (Layer.HYPERVISOR, "hv1"), (Layer.HOST, "h1"), (Layer.HOST, "h2")}
    assert tx.journal.unfinished() == []


def test_last_host_rejects_then_everything_rolls_back(world):
    tx, path = world(reject=["host/h2/thing/rules"])
    before = devices(path)
    res = tx.apply(DESIRED, TARGETS)
    assert res.state is TxnState.ROLLED_BACK, res.error
    assert "h2" in res.error
    assert devices(path) == before
    status = {r.target: r.status for r in tx.journal.targets(res.txn_id)}
    assert status == {t: TargetStatus.ROLLED_BACK.value for t in ("sw1", "hv1", "h1", "h2")}


def test_failed_check_rolls_back_a_clean_apply(world):
    tx, path = world()
    before = devices(path)
    tx.checks = [lambda report: "probe h1 -> h2:80 refused"]
    res = tx.apply(DESIRED, TARGETS)
    assert res.state is TxnState.ROLLED_BACK and "probe" in res.error
    assert devices(path) == before


def test_prepare_refusal_writes_nothing(world):
    tx, path = world()
    before = devices(path)
    tx.prepare = lambda layers: {(Layer.HOST, "h1"): "nft: syntax error"} if Layer.HOST in layers else {}
    res = tx.apply(DESIRED, TARGETS)
    assert res.state is TxnState.ABORTED and "host/h1: nft: syntax error" in res.error
    assert devices(path) == before


def test_unreachable_target_is_unknown_then_repaired_first(world):
    tx, path = world(reject=["host/h2/thing/rules"])
    before = devices(path)
    written = tx.engine.drivers[Layer.HOST]

    class Vanish(SnapshotDriver):
        def apply(self, plans, dry_run=False):
            out = written.apply(plans, dry_run)
            set_file(path, unreachable=["h1"])   # h1 goes away after its write
            return out
    tx.engine.drivers[Layer.HOST] = Vanish(Layer.HOST, path)
    res = tx.apply(DESIRED, TARGETS)
    assert res.state is TxnState.ROLLBACK_PENDING and res.unknown == ["host/h1"]
    assert devices(path)["host/h1/thing/rules"] == {"v": 1}   # still written: unknown
    set_file(path, unreachable=[])
    done = tx.recover(TARGETS)
    assert [r.state for r in done] == [TxnState.ROLLED_BACK]
    assert devices(path) == before


def test_confirm_window(world):
    tx, path = world()
    before = devices(path)
    res = tx.apply(DESIRED, TARGETS, confirm_within=60)
    assert res.state is TxnState.PENDING_CONFIRM
    assert tx.recover(TARGETS) == []                     # deadline not reached
    assert tx.confirm(res.txn_id)
    assert tx.journal.txn(res.txn_id).state == TxnState.COMMITTED.value
    res2 = tx.revert(res.txn_id, TARGETS)
    assert res2.state is TxnState.COMMITTED
    assert devices(path) == before
    res3 = tx.apply(DESIRED, TARGETS, confirm_within=60)
    tx.journal.set_state(res3.txn_id, TxnState.PENDING_CONFIRM, deadline=0.0)  # the window lapsed
    assert not tx.confirm(res3.txn_id)
    assert [r.state for r in tx.recover(TARGETS)] == [TxnState.ROLLED_BACK]
    assert devices(path) == before


def test_second_transaction_on_a_held_target_is_refused(world):
    tx, path = world()
    res = tx.apply(DESIRED, TARGETS, confirm_within=60)
    other = Transactions(tx.engine, tx.journal)
    res2 = other.apply(State.of([R(Layer.HOST, "h1", "rules", v=7)]), TARGETS)
    assert res2.state is TxnState.ABORTED and "held by unfinished transaction " + res.txn_id in res2.error


def test_store_down_blocks_device_writes(world, tmp_path):
    tx, path = world()
    before = devices(path)
    tx.journal.engine.dispose()
    (tmp_path / "db.sqlite").unlink()
    (tmp_path / "db.sqlite").mkdir()   # the database file is gone and cannot be created
    with pytest.raises(JournalUnavailable, match="no device was written"):
        tx.apply(DESIRED, TARGETS)
    assert devices(path) == before


def test_cli_apply_with_the_store_down_writes_nothing(tmp_path, capsys):
    from reconciler.cli import main
    snap = tmp_path / "snap.json"
    snap.write_text('{"resources": []}')
    rc = main(["apply", "examples/intents", "--observed", str(snap), "--store", "postgresql://u:pw@127.0.0.1:1/db"])
    assert rc == 2
    assert "transaction journal unavailable" in capsys.readouterr().err
    assert json.loads(snap.read_text()) == {"resources": []}


def test_cli_apply_confirm_and_history(tmp_path, capsys, monkeypatch):
    from reconciler.cli import main
    monkeypatch.setattr("reconciler.txn.apply.spawn_watcher", lambda url, txn_id: 0)   # no detached process here
    snap, db = tmp_path / "snap.json", str(tmp_path / "db.sqlite")
    snap.write_text('{"resources": []}')
    assert main(["apply", "examples/intents", "--observed", str(snap), "--store", db, "--confirm-within", "60"]) == 0
    out = capsys.readouterr().out
    txn_id = out.split("transaction ")[-1].split(":")[0]
    assert "pending-confirm" in out and txn_id.startswith("tx-")
    assert main(["confirm", txn_id, "--store", db]) == 0
    assert main(["confirm", txn_id, "--store", db]) == 1            # only once, only while pending
    capsys.readouterr()
    assert main(["rollback", txn_id, "--store", db]) == 0            # reverted as a new transaction
    assert "committed" in capsys.readouterr().out
    assert json.loads(snap.read_text())["resources"] == []


def test_journal_lost_after_the_writes_still_rolls_back(world, tmp_path):
    tx, path = world()
    before = devices(path)

    def database_dies(report):
        tx.journal.engine.dispose()
        for suffix in ("", "-wal", "-shm"):
            (tmp_path / f"db.sqlite{suffix}").unlink(missing_ok=True)
        (tmp_path / "db.sqlite").mkdir()
        return "probe failed"
    tx.checks = [database_dies]
    res = tx.apply(DESIRED, TARGETS)
    assert res.state is TxnState.ROLLED_BACK and "not recorded: transaction journal unavailable" in res.error
    assert devices(path) == before
