"""Transaction cost on the reference lab (labs/app-fabric.clab.yml), printed as figures.

Run as root, under the shared lock:  flock /tmp/ni-suite.lock python3 bench/txn_overhead.py [--rounds 3]

The change is the lab tests' one-commit change (tests/lab/test_txn_lab.py: analytics moves to a new
VNI/VLAN, two more allowed flows), over the switch, hypervisor and host layers with the real drivers.
- plain: Engine.run of the change (from examples/intents converged), wall time;
- transaction: Transactions.apply of the same change (journal, prepare, apply, verify including
  reachability verification as `reconciler apply` does it, commit); `reach` is the part of it spent
  modelling and re-observing for reachability;
- rollback: a transaction whose verification fails (injected check), its rollback time vs its apply time;
- recovery: `reconciler apply` SIGKILLed before the host layer, then `reconciler recover` (process
  start, journal, observe, restore, verify) wall time.
Between rounds the lab goes back to examples/intents with a plain run (not timed). Prints medians.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "lab")]

from test_txn_lab import EXAMPLES, LAYERS, changed_repo, desired_of  # noqa: E402

from reconciler.drivers.registry import build_drivers  # noqa: E402
from reconciler.engine import Engine  # noqa: E402
from reconciler.intents.validate import load_repo  # noqa: E402
from reconciler.lab.shared import shared_lab  # noqa: E402
from reconciler.service.store import Store  # noqa: E402
from reconciler.txn.journal import Journal  # noqa: E402
from reconciler.txn.models import TxnState  # noqa: E402
from reconciler.txn.prepare import make_preparer  # noqa: E402
from reconciler.txn.reach import ReachCheck  # noqa: E402
from reconciler.txn.txn import Transactions  # noqa: E402

REFERENCE = ROOT / "labs" / "app-fabric.clab.yml"


def timed(fn):
    t0 = time.monotonic()
    out = fn()
    return time.monotonic() - t0, out


def one_round(lab, tmp: Path, i: int) -> dict[str, float]:
    drivers = build_drivers(LAYERS, {"inventory_path": str(lab.inventory_path), "timeout_s": 60})
    engine = Engine(drivers, attempts=2, backoff_s=0.2)
    base, targets = desired_of(EXAMPLES, lab.inventory_path)
    repo_dir = changed_repo(tmp / f"r{i}")
    new, _ = desired_of(repo_dir, lab.inventory_path)
    repo = load_repo(str(repo_dir), inventory_override=str(lab.inventory_path))
    out: dict[str, float] = {}
    assert engine.run(base, targets).converged
    out["plain"], rep = timed(lambda: engine.run(new, targets))
    assert rep.converged
    assert engine.run(base, targets).converged
    tx = Transactions(engine, Journal(Store(str(tmp / f"db{i}.sqlite"))), prepare=make_preparer(drivers),
                      reach=lambda: ReachCheck(repo, LAYERS))
    out["txn"], res = timed(lambda: tx.apply(new, targets))
    assert res.state is TxnState.COMMITTED, res.error
    out["reach"] = json.loads(tx.journal.txn(res.txn_id).timings).get("reach", 0.0)
    assert engine.run(base, targets).converged
    tx.checks = [lambda report: "injected"]
    _, res = timed(lambda: tx.apply(new, targets))
    assert res.state is TxnState.ROLLED_BACK, res.error
    t = tx.journal.txn(res.txn_id)
    timings = json.loads(t.timings)
    out["failed_apply"], out["rollback"] = timings["apply"], timings["rollback"]
    out["recovery"] = recovery(lab, tmp / f"k{i}")
    assert engine.run(base, targets).converged
    return out


def recovery(lab, tmp: Path) -> float:
    db = tmp / "cli.sqlite"
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'tests' / 'lab'}:{ROOT}"}
    argv = [sys.executable, "-m", "reconciler.cli", "apply", str(changed_repo(tmp, "cli-repo")), "--inventory",
            str(lab.inventory_path), "--store", str(db), "--layer", "switch", "--layer", "hypervisor",
            "--layer", "host", "--driver-factory", "txn_faults:factory"]
    p = subprocess.run(argv, env={**env, "TXN_FAULT": "kill-before-hosts"}, capture_output=True, text=True,
                       timeout=600, cwd=ROOT)
    assert p.returncode == -9, p.stderr[-2000:]
    secs, p = timed(lambda: subprocess.run([sys.executable, "-m", "reconciler.cli", "recover", "--store", str(db)],
                                           env=env, capture_output=True, text=True, timeout=600, cwd=ROOT))
    assert p.returncode == 0 and "rolled-back" in p.stdout, p.stdout + p.stderr
    return secs


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    rows = []
    with shared_lab(REFERENCE, inventory_dir=ROOT / "inventory") as lab, \
            tempfile.TemporaryDirectory(prefix="ni-txn-bench-") as d:
        for i in range(args.rounds):
            rows.append(one_round(lab, Path(d), i))
            print(f"round {i + 1}: " + ", ".join(f"{k} {v:.2f}s" for k, v in rows[-1].items()), flush=True)
    med = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
    print(f"\nmedian of {len(rows)} round(s), reference lab, one-commit change over switch+hypervisor+host:")
    print(f"  plain apply            {med['plain']:6.2f} s")
    print(f"  transactional apply    {med['txn']:6.2f} s   overhead {100 * (med['txn'] / med['plain'] - 1):+.1f} %"
          f"   (reachability verification {med['reach']:.2f} s of it)")
    print(f"  failed apply           {med['failed_apply']:6.2f} s   rollback {med['rollback']:.2f} s "
          f"({100 * med['rollback'] / med['failed_apply']:.0f} % of the apply)")
    print(f"  restart recovery       {med['recovery']:6.2f} s   (kill -9 before hosts -> `reconciler recover`, "
          "process start to verified pre-state)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
