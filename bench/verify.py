"""Benchmark: full reachability verification from a synthetic snapshot. Prints figures.

    python3 bench/verify.py [--apps 1000 10000] [--json FILE]

For each size, in a child process of its own (so peak RSS is that size's): generates the repo
with bench/scale_repo.py (10 hosts per hypervisor, 10 hypervisors per leaf, 1000 workload hosts
up to 10,000 apps), compiles it and writes the desired state as a snapshot file (as if the
network had converged; not timed). Then, timed:
  observe   the engine's observe through the snapshot driver (every layer reads the file),
  model     the forwarding/filtering model and the scope built from the observed resources,
  verify    every destination of every app: pairs traced, other sources covered at the
            destination, compared with the intents (must be clean: 0 violations, 0 leaks),
  one app   after an accept is inserted ahead of one app's drop on one host: `verify --app`
            of that app alone, which must name the leak at that rule,
and peak RSS (ru_maxrss; /usr/bin/time -v agrees). Targets (issue 16): full verify of 10,000
apps over 1,000 targets <= 30 s and <= 2 GB.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
sys.path.insert(0, str(ROOT))


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _leaky(resources, app: str):
    """The resources with an accept for the app's api port inserted ahead of its drop on the api host."""
    from reconciler.model import Resource, thaw
    out, hit = [], None
    for r in resources:
        if hit is None and r.key.kind == "nft-table" and r.app == app and any(
                "svc_api" in str(x) for x in thaw(r.spec)["chains"]["input"]["rules"]):
            spec = thaw(r.spec)
            spec["chains"]["input"]["rules"].insert(1, {"match": {"daddr_set": "svc_api", "protocol": "tcp",
                                                                  "dport": 9000}, "verdict": "accept"})
            r, hit = Resource(r.key, spec, r.app, r.owned), r.key
        out.append(r)
    return out, hit


def run_one(apps: int) -> dict:
    from bench.scale_repo import Layout, make_repo
    from reconciler.compile import Compiler
    from reconciler.verify.compare import LEAK, compare
    from reconciler.verify.observe import model_of, observe
    from reconciler.verify.verdict import Verifier

    hosts = max(1000, -(-apps // 1000) * 100)
    repo = make_repo(Layout.of(apps, hosts))
    desired = Compiler().compile(repo)
    with tempfile.TemporaryDirectory() as tmp:
        snap = Path(tmp) / "snapshot.json"
        snap.write_text(json.dumps({"resources": desired.to_json()}))
        n_res = len(desired)
        del desired
        t0 = time.perf_counter()
        observed, unobserved = observe(repo, None, snapshot=str(snap))
        t1 = time.perf_counter()
    m, scope = model_of(repo, observed, unobserved)
    t2 = time.perf_counter()
    cmp = compare(Verifier(m, scope).run())
    t3 = time.perf_counter()
    t = cmp.totals()
    assert not unobserved and cmp.exit_code() == 0, (unobserved, t)
    app = "app7"
    leaky, key = _leaky(observed, app)
    t4 = time.perf_counter()
    m2, _ = model_of(repo, leaky, unobserved)
    one = compare(Verifier(m2, scope).run([app]))
    t5 = time.perf_counter()
    leaks = [f for f in one.findings if f.kind == LEAK]
    assert leaks and any(str(key).split("/", 3)[1] == h.device and h.what == "nftables" for h in leaks[0].hops), key
    return {"apps": apps, "hosts": hosts, "resources": n_res, "pairs": t.pairs, "covered": t.others,
            "observe_s": round(t1 - t0, 2), "model_s": round(t2 - t1, 2), "verify_s": round(t3 - t2, 2),
            "total_s": round(t3 - t0, 2), "rss_mb": round(rss_mb()), "one_app_leak_s": round(t5 - t4, 2),
            "one_app_leaks": len(leaks)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--apps", type=int, nargs="+", default=[1000, 10000])
    ap.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    ap.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(run_one(args.child)))
        return
    rows = []
    for n in args.apps:
        cp = subprocess.run([sys.executable, __file__, "--child", str(n)], capture_output=True, text=True, check=True)
        row = json.loads(cp.stdout.strip().splitlines()[-1])
        rows.append(row)
        print(f"{row['apps']:>6} apps over {row['hosts']} hosts ({row['resources']} resources): "
              f"observe {row['observe_s']:6.2f} s, model {row['model_s']:5.2f} s, verify {row['verify_s']:6.2f} s, "
              f"total {row['total_s']:6.2f} s, peak RSS {row['rss_mb']} MB; {row['pairs']} pairs traced, "
              f"{row['covered']} covered at their destination; one-app verify after a leak "
              f"{row['one_app_leak_s']:.2f} s ({row['one_app_leaks']} leaks named)")
    print("targets: 10,000 apps over 1,000 targets <= 30 s and <= 2048 MB")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
