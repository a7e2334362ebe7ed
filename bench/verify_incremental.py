"""Benchmark: incremental verification after one observed change. Prints figures.

    python3 bench/verify_incremental.py [--apps 1000 10000] [--repeat 20]

For each size, in a child process of its own: generates the repo with bench/scale_repo.py (as
bench/verify.py does), compiles it and uses the desired state as the observed state (as if
converged). Then, timed:
  build     the full first verification that keeps the model, its indexes and every
            destination's verdict and dependencies (reconciler.verify.incremental.Incremental),
  change    one observed change, `update_targets` with the changed target (what the daemon passes
            when it knows which targets were observed again), median and max over --repeat
            changes on different targets, each undone before the next; CPU time of this process
            (process_time: the machine is shared) and wall time:
              rule   a drop inserted first in one app's nft table on one host (violations)
              flow   one OVS flow of one app on one hypervisor removed
              trunk  one VLAN removed from a leaf trunk
              open   an accept for everyone inserted first in one app's table: a leak from EVERY
                     source, so every source is traced to that app's destinations (worst case)
  diff      the same rule change found by `update(all resources)`: the target-by-target comparison
            of a whole observation with the last one, then the update.
After the build the objects are frozen out of the cyclic GC (gc.freeze, as service/reachability.py
does): otherwise a full collection of the ~800 MB heap (1-3 s at 10,000 apps) lands on whichever
update happens to trigger it.
Target (issue 16): one observed rule or flow change <= 10 ms.
"""
from __future__ import annotations

import argparse
import gc
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
sys.path.insert(0, str(ROOT))


def _edit(r, kind: str):
    from reconciler.model import Resource, thaw
    spec = thaw(r.spec)
    rules = spec["chains"]["input"]["rules"]
    if kind == "rule":
        port = next(r["match"]["dport"] for r in rules if "dport" in r.get("match", {}))
        rules.insert(0, {"match": {"protocol": "tcp", "dport": port}, "verdict": "drop"})
    elif kind == "open":
        rules.insert(0, {"match": {}, "verdict": "accept"})
    return Resource(r.key, spec, r.app, r.owned)


def _changes(by, kind: str, n: int):
    """n (target key, new resources) pairs of one kind, on distinct targets."""
    out = []
    for tk, rs in by.items():
        if len(out) >= n:
            break
        if kind in ("rule", "open"):
            hit = next((r for r in rs.values() if r.key.kind == "nft-table" and r.app and any(
                "dport" in x.get("match", {}) for x in r.spec["chains"]["input"]["rules"])), None)
            if hit is not None:
                out.append((tk, [(_edit(r, kind) if r is hit else r) for r in rs.values()]))
        else:
            want = "ovs-flow" if kind == "flow" else "vlan-trunk"
            hit = next((r for r in rs.values() if r.key.kind == want and r.app), None)
            if hit is not None:
                out.append((tk, [r for r in rs.values() if r is not hit]))
    return out


def run_one(apps: int, repeat: int) -> dict:
    from bench.scale_repo import Layout, make_repo
    from reconciler.compile import Compiler
    from reconciler.verify.incremental import Incremental

    hosts = max(1000, -(-apps // 1000) * 100)
    repo = make_repo(Layout.of(apps, hosts))
    desired = list(Compiler().compile(repo))
    t0 = time.perf_counter()
    inc = Incremental(repo, desired)
    gc.freeze()      # as the daemon does after a full verification: its model is long-lived
    out: dict = {"apps": apps, "targets": hosts, "resources": len(desired), "dests": len(inc.entries),
                 "build_s": round(time.perf_counter() - t0, 2)}
    assert not inc.findings(), "the converged state must verify clean"
    for kind in ("rule", "flow", "trunk", "open"):
        cpu, wall, recomputed = [], [], []
        for tk, rs in _changes(inc.observed, kind, repeat if kind != "open" else 3):
            before = list(inc.observed[tk].values())
            c0 = time.process_time()
            d = inc.update_targets({tk: rs})
            cpu.append((time.process_time() - c0) * 1000)
            wall.append(d.seconds * 1000)
            recomputed.append(d.recomputed)
            inc.update_targets({tk: before})
        out[kind] = {"median_ms": round(statistics.median(cpu), 2), "max_ms": round(max(cpu), 2),
                     "wall_median_ms": round(statistics.median(wall), 2),
                     "dests_recomputed": round(statistics.median(recomputed))}
    (tk, rs), = _changes(inc.observed, "rule", 1)
    changed = [r for k, v in inc.observed.items() if k != tk for r in v.values()] + rs
    t1 = time.perf_counter()
    inc.update(changed)
    out["diff_ms"] = round((time.perf_counter() - t1) * 1000, 1)
    out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--apps", type=int, nargs="+", default=[1000, 10000])
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--json", metavar="FILE", help="write the figures as JSON")
    ap.add_argument("--one", type=int, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.one:
        print(json.dumps(run_one(a.one, a.repeat)))
        return 0
    print("CPU ms per change, median/max (destinations recomputed); wall medians in --json")
    print(f"{'apps':>6} {'targets':>7} {'dests':>7} {'build':>7} | {'rule':>22} "
          f"{'flow':>22} {'trunk':>22} {'open (every source)':>22} | {'diff+rule':>9} {'RSS':>7}")
    results: list = []
    for n in a.apps:
        p = subprocess.run([sys.executable, __file__, "--one", str(n), "--repeat", str(a.repeat)],
                           capture_output=True, text=True, check=True)
        r = json.loads(p.stdout.strip().splitlines()[-1])
        cols = [f"{r[k]['median_ms']:>6}/{r[k]['max_ms']:<7} ({r[k]['dests_recomputed']})" for k in
                ("rule", "flow", "trunk", "open")]
        print(f"{r['apps']:>6} {r['targets']:>7} {r['dests']:>7} {r['build_s']:>6}s | {cols[0]:>22} {cols[1]:>22} "
              f"{cols[2]:>22} {cols[3]:>22} | {r['diff_ms']:>7}ms {r['peak_rss_mb']:>5}MB")
        if a.json:
            results.append(r)
    if a.json:
        Path(a.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
