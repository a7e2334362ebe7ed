"""Bench: one-app change to converged, host + hypervisor layers through ansible-runner.

On a mini netns lab (4 hosts with sshd + nftables, 2 hypervisors with their own OVS, see
tests/lab/hd_setup.py) it runs the real Engine with the real host and hypervisor drivers:
  initial    : converge both example apps from empty (observe, apply, observe again)
  one-app    : `shop` gets a new allowed caller address (one nft set element on two hosts) and a
               new instance on h1 (address + flows): time from `engine.run` start to converged
  no-op      : a run with nothing to change (observe only, zero writes)
  observe    : one observe of each layer alone (over kept ssh shells; one ansible-runner run per
               layer with RECONCILER_OBSERVE_SSH=0)
Each is repeated `--repeat` times (median). Target (issue 5): one-app change <= 5 s.
Run as root: `python bench/host_hv_converge.py [--repeat 3]`.
"""
from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "lab"))

from hd_setup import MINI, MINI_APPS, write_repo  # noqa: E402
from minilab import MiniLab  # noqa: E402

from reconciler.compile import compile_repo  # noqa: E402
from reconciler.drivers.ansible.host import HostDriver  # noqa: E402
from reconciler.drivers.ansible.hypervisor import HypervisorDriver  # noqa: E402
from reconciler.drivers.base import targets_of  # noqa: E402
from reconciler.engine import Engine  # noqa: E402
from reconciler.intents.inventory import parse_inventory  # noqa: E402
from reconciler.intents.validate import load_repo  # noqa: E402
from reconciler.model import Layer, State  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    lab = MiniLab("ni-hd-").up(MINI)
    rows = []
    med = statistics.median
    try:
        inv = str(lab.inventory_path)
        drivers = {Layer.HOST: HostDriver(inventory_path=inv), Layer.HYPERVISOR: HypervisorDriver(inventory_path=inv)}
        engine = Engine(drivers, attempts=3, backoff_s=0.2)
        # the targets as the reconciler makes them from the inventory (connection vars included)
        parsed, errors = parse_inventory(inv, lab.inventory_path.read_bytes())
        assert parsed is not None, errors
        targets = {layer: [t for t in ts if t.name in MINI["nodes"]] for layer, ts in targets_of(parsed).items()
                   if layer in (Layer.HOST, Layer.HYPERVISOR)}

        def desired(apps: dict) -> State:
            repo_dir = write_repo(lab.dir / "repo", apps, lab.inventory_path)
            d = compile_repo(load_repo(str(repo_dir), inventory_override=inv))
            return State.of(r for r in d if r.key.layer in (Layer.HOST, Layer.HYPERVISOR)
                            and r.key.target in MINI["nodes"])

        base, changed = MINI_APPS, copy.deepcopy(MINI_APPS)
        changed["shop"]["services"]["web"]["instances"].append({"host": "h1", "address": "10.61.1.12"})
        d_base, d_changed = desired(base), desired(changed)

        def run(d: State, what: str) -> float:
            t0 = time.perf_counter()
            rep = engine.run(d, targets, prune=True)
            dt = time.perf_counter() - t0
            if not rep.converged:
                raise SystemExit(
                    f"{what}: not converged: {[(t.target, t.outcome, t.error) for t in rep.targets.values()]}")
            return dt

        rows.append(("initial converge (2 apps, 6 targets)", run(d_base, "initial"), ""))
        ones, noops = [], []
        for _ in range(args.repeat):
            ones.append(run(d_changed, "one-app change"))
            noops.append(run(d_changed, "no-op"))
            run(d_base, "revert")
        rows.append(("one-app change -> converged (engine.run)", med(ones), "target <= 5 s"))
        rows.append(("no-op run (observe both layers, 0 writes)", med(noops), ""))
        for layer, drv in drivers.items():
            ts = []
            for _ in range(args.repeat):
                t0 = time.perf_counter()
                drv.observe(targets[layer])
                ts.append(time.perf_counter() - t0)
            how = "ansible-runner" if os.environ.get("RECONCILER_OBSERVE_SSH") == "0" else "kept ssh"
            rows.append((f"observe {layer.value} layer ({how})", med(ts), ""))
    finally:
        lab.down()
    print(f"{'host+hypervisor converge':48s} {'seconds':>8s}")
    for name, secs, note in rows:
        print(f"{name:48s} {secs:8.3f}  {note}")


if __name__ == "__main__":
    main()
