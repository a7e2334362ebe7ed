"""Transactions across layers on the reference lab (labs/app-fabric.clab.yml, shared fixture) with the
real switch, hypervisor and host drivers and injected faults (tests/lab/txn_faults.py). Each test
starts from examples/intents converged, applies a one-commit change that touches every layer
(analytics moves to VNI 5093 / VLAN 193: leaves and hypervisors; shop and analytics allow one more flow: hosts), and
checks that after the fault the observed state equals the journalled pre-state, resource by
resource. Marked `lab`."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from txn_faults import Wrapped, once, reject_key

from reconciler.compile import compile_repo
from reconciler.drivers.registry import build_drivers, targets_of
from reconciler.engine import Engine
from reconciler.intents.validate import load_repo
from reconciler.model import Layer, State
from reconciler.service.store import Store
from reconciler.txn.journal import Journal
from reconciler.txn.models import TargetStatus, TxnState
from reconciler.txn.prepare import make_preparer
from reconciler.txn.txn import Transactions

pytestmark = pytest.mark.lab
ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "intents"
LAYERS = (Layer.SWITCH, Layer.HYPERVISOR, Layer.HOST)
# only in the changed state, on the last host the change touches (h1 and h4 are)
REJECTED = "host/h4/nft-set/netintent_analytics/allow_dash_http"


def changed_repo(tmp_path: Path, name: str = "repo") -> Path:
    """examples/intents with one commit's worth of change across the three layers."""
    repo = tmp_path / name
    shutil.copytree(EXAMPLES, repo)
    a = yaml.safe_load((repo / "apps/analytics.yaml").read_text())
    a["spec"]["segment"].update(vni=5093, vlan=193)
    a["spec"]["policy"]["allow"].append({"from": "collector", "to": "dash", "ports": ["http"]})
    (repo / "apps/analytics.yaml").write_text(yaml.safe_dump(a))
    s = yaml.safe_load((repo / "apps/shop.yaml").read_text())
    s["spec"]["policy"]["allow"].append({"from": "api", "to": "web", "ports": ["http"]})
    (repo / "apps/shop.yaml").write_text(yaml.safe_dump(s))
    return repo


def desired_of(repo_dir, inventory) -> tuple[State, dict]:
    repo = load_repo(str(repo_dir), inventory_override=str(inventory))
    desired = State.of(r for r in compile_repo(repo) if r.key.layer in LAYERS)
    return desired, {l: ts for l, ts in targets_of(repo.inventory).items() if l in LAYERS}


@pytest.fixture
def world(app_fabric_lab, tmp_path):
    """(lab, engine over the real drivers, transactions, changed desired state, targets), from a
    lab converged on examples/intents."""
    lab = app_fabric_lab
    drivers = build_drivers(LAYERS, {"inventory_path": str(lab.inventory_path), "timeout_s": 30})
    engine = Engine(drivers, attempts=2, backoff_s=0.2)
    base, targets = desired_of(EXAMPLES, lab.inventory_path)
    # prune: leftovers of an earlier run (owned, no longer wanted) would hide part of the change
    rep = Engine(drivers, attempts=3, backoff_s=0.5).run(base, targets, prune=True)
    assert rep.converged, ("baseline: examples/intents did not converge",
                           [(t.target, t.outcome.value, t.error[:300]) for t in rep.targets.values() if not t.ok],
                           [str(c.key) for c in rep.residual.changes][:10])
    new, _ = desired_of(changed_repo(tmp_path), lab.inventory_path)
    tx = Transactions(engine, Journal(Store(str(tmp_path / "db.sqlite"))), prepare=make_preparer(drivers))
    yield lab, engine, tx, new, targets
    for d in drivers.values():
        getattr(d, "close", lambda: None)()


def assert_pre_state(engine: Engine, journal: Journal, txn_id: str, targets: dict) -> None:
    """Every journalled target observed again equals its journalled pre-state, resource by resource."""
    pre, tids = journal.pre_state(txn_id)
    assert {t[0] for t in tids} == set(LAYERS), tids   # the change did span the three layers
    wanted = {l: [t for t in ts if (l, t.name) in set(tids)] for l, ts in targets.items()}
    observed, obs = engine.observe({l: ts for l, ts in wanted.items() if ts})
    assert all(o.ok for o in obs.values()), {k: o.error for k, o in obs.items() if not o.ok}
    got = {str(k): r.spec for k, r in observed.resources.items() if (k.layer, k.target) in set(tids) and r.owned}
    want = {str(k): r.spec for k, r in pre.resources.items() if r.owned}
    assert got.keys() == want.keys(), (sorted(got.keys() - want.keys()), sorted(want.keys() - got.keys()))
    assert [k for k in want if got[k] != want[k]] == []


def test_last_host_rejects_after_switches_and_hypervisors_were_written(world):
    lab, engine, tx, new, targets = world
    engine.drivers[Layer.HOST] = reject_key(engine.drivers[Layer.HOST], REJECTED)
    res = tx.apply(new, targets)
    assert res.state is TxnState.ROLLED_BACK, res.error
    written = {(r.layer, r.target) for r in tx.journal.targets(res.txn_id) if r.writes}
    assert {"switch", "hypervisor", "host"} == {l for l, _ in written}, written
    assert ("host", "h4") not in written and "host/h4: failed" in res.error
    assert_pre_state(engine, tx.journal, res.txn_id, targets)


def test_verification_fails_after_a_clean_apply(world):
    lab, engine, tx, new, targets = world
    tx.checks = [lambda report: "probe h3 -> h1:80 refused (injected)"]
    res = tx.apply(new, targets)
    assert res.state is TxnState.ROLLED_BACK and "verification failed" in res.error
    assert res.report is not None and res.report.converged      # the apply itself was clean
    assert_pre_state(engine, tx.journal, res.txn_id, targets)


def test_target_disappears_mid_transaction(world):
    lab, engine, tx, new, targets = world
    gone = "h1"   # shop/web: written by this change, then unreachable; h4 rejects its part: roll back

    def vanish(plans, out):
        lab.exec(gone, ["ip", "link", "set", "dev", "eth0", "down"])
        return out
    engine.drivers[Layer.HOST] = Wrapped(reject_key(engine.drivers[Layer.HOST], REJECTED), after=once(vanish))
    try:
        res = tx.apply(new, targets)
        assert res.state is TxnState.ROLLBACK_PENDING, res.error
        assert res.unknown == [f"host/{gone}"]
        status = {r.target: r.status for r in tx.journal.targets(res.txn_id)}
        assert status[gone] == TargetStatus.UNKNOWN.value
        assert {s for t, s in status.items() if t != gone} == {TargetStatus.ROLLED_BACK.value}
    finally:
        lab.exec(gone, ["ip", "link", "set", "dev", "eth0", "up"])
    done = tx.recover(targets)     # the next run repairs it to the pre-state first
    assert [r.state for r in done] == [TxnState.ROLLED_BACK], [r.error for r in done]
    assert_pre_state(engine, tx.journal, res.txn_id, targets)


def _cli(*argv: str, env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "reconciler.cli", *argv], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, env={**os.environ, **(env or {})})


def _wait_state(journal: Journal, txn_id: str, states: set[TxnState], timeout_s: float) -> TxnState:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        row = journal.txn(txn_id)
        if row is not None and TxnState(row.state) in states:
            return TxnState(row.state)
        time.sleep(0.5)
    raise AssertionError(f"{txn_id} did not reach {states} in {timeout_s}s: {journal.txn(txn_id)}")


def _apply_argv(tmp_path: Path, lab, db: Path) -> list[str]:
    return ["apply", str(changed_repo(tmp_path, "cli-repo")), "--inventory", str(lab.inventory_path), "--store", str(db),
            "--layer", "switch", "--layer", "hypervisor", "--layer", "host", "--attempts", "2"]


def _only_txn(journal: Journal) -> str:
    rows = journal.history(5)
    assert len(rows) == 1, [(r.txn_id, r.state) for r in rows]
    return rows[0].txn_id


def test_confirm_window_lapses(world, tmp_path):
    lab, engine, tx, new, targets = world
    db = tmp_path / "cli.sqlite"
    p = _cli(*_apply_argv(tmp_path, lab, db), "--confirm-within", "5")
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    assert "pending-confirm" in p.stdout
    journal = Journal(Store(str(db)))
    txn_id = _only_txn(journal)
    # nobody confirms: the detached watcher rolls every layer back at the deadline
    assert _wait_state(journal, txn_id, {TxnState.ROLLED_BACK, TxnState.ROLLBACK_FAILED}, 300) is TxnState.ROLLED_BACK
    assert_pre_state(engine, journal, txn_id, targets)
    p = _cli("confirm", txn_id, "--store", str(db))
    assert p.returncode == 1 and "rolled-back" in p.stderr


def test_kill_9_between_switch_and_host_layers_then_restart(world, tmp_path):
    lab, engine, tx, new, targets = world
    db = tmp_path / "cli.sqlite"
    env = {"TXN_FAULT": "kill-before-hosts", "PYTHONPATH": f"{ROOT / 'tests' / 'lab'}:{ROOT}"}
    p = _cli(*_apply_argv(tmp_path, lab, db), "--driver-factory", "txn_faults:factory", env=env)
    assert p.returncode == -9, p.stdout[-2000:] + p.stderr[-2000:]
    journal = Journal(Store(str(db)))
    txn_id = _only_txn(journal)
    assert journal.txn(txn_id).state == TxnState.APPLYING.value
    t0 = time.monotonic()
    p = _cli("recover", "--store", str(db), env={"PYTHONPATH": env["PYTHONPATH"]})
    took = time.monotonic() - t0
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    assert f"transaction {txn_id}: rolled-back" in p.stdout
    assert json.loads(journal.txn(txn_id).timings).get("recover", 0) > 0
    assert_pre_state(engine, journal, txn_id, targets)
    print(f"restart recovery: {took:.2f}s (process), {json.loads(journal.txn(txn_id).timings)}")


FOREIGN_DROP = """table ip handmade {
    chain input { type filter hook input priority -10; policy accept; ip saddr 10.50.1.0/24 drop; }
}
"""


def test_plain_apply_rolls_back_a_clean_change_that_blocks_an_allowed_path(world, tmp_path):
    """The change applies cleanly (observed == desired), but a foreign nftables table appears on h1
    with it (the diff does not model foreign tables): shop/web on h1 no longer gets api's replies.
    Plain `reconciler apply`'s reachability verification sees the violation the change added, rolls
    back, and the journal names the pair and the hop."""
    lab, engine, tx, new, targets = world
    db = tmp_path / "cli.sqlite"
    argv, _ = lab.node_argv("h1", ["nft", "-f", "-"])
    env = {"TXN_FAULT": "foreign-during-hosts", "TXN_FAULT_ARGV": json.dumps(argv), "TXN_FAULT_INPUT": FOREIGN_DROP,
           "PYTHONPATH": f"{ROOT / 'tests' / 'lab'}:{ROOT}"}
    try:
        p = _cli(*_apply_argv(tmp_path, lab, db), "--driver-factory", "txn_faults:factory", env=env)
        assert p.returncode == 1, p.stdout[-2000:] + p.stderr[-2000:]
        journal = Journal(Store(str(db)))
        txn_id = _only_txn(journal)
        row = journal.txn(txn_id)
        assert row.state == TxnState.ROLLED_BACK.value, row.error
        want = "violation shop/web@10.50.1.11 -> shop/api@10.50.1.21:8080 at host h1: nftables ip handmade input"
        assert "verification failed: reachability: the change added" in row.error and want in row.error, row.error
        added = {(f.kind, f.source, f.dest) for f in journal.findings(txn_id) if f.change == "added"}
        assert ("violation", "shop/web@10.50.1.11", "shop/api@10.50.1.21:8080") in added, added
        assert_pre_state(engine, journal, txn_id, targets)
    finally:
        lab.exec("h1", ["nft", "delete", "table", "ip", "handmade"], check=False)
