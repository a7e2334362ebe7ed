"""Bench: nftables set sizes on one netns host (the host driver's nft step), prints figures.

What it measures (each run `--repeat` times, median printed), in a netns it creates and removes:
  full 10k / full 100k   : `nft -f -` of one owned table whose allow set has N elements, created
                           from scratch (the script the driver renders for a new table)
  replace 100k           : the same table replaced whole (delete + recreate in one script)
  1% change on 100k      : the driver's element-only script (500 `delete element` + 500
                           `add element`) against a loaded 100k set
  observe 100k           : `nft -j list ruleset` + parse into resources (the observe cost)
  render/plan 100k       : pure Python: rendering the table / planning the 1% change
Targets (issue 5): full 10k <= 0.2 s, full 100k <= 1 s, 1% change much cheaper than a replace.
Run as root: `python bench/nft_sets.py [--repeat 3]`.
"""
from __future__ import annotations

import argparse
import ipaddress
import json
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from reconciler.drivers.ansible.nftables import parse_ruleset, plan_script, render_table  # noqa: E402
from reconciler.model import Layer, Resource, ResourceKey  # noqa: E402

TABLE = "netintent_bench"


def resources(n: int, shift: int = 0) -> list[Resource]:
    base = int(ipaddress.IPv4Address("10.128.0.0"))
    elems = sorted(str(ipaddress.IPv4Address(base + i + shift)) for i in range(n))
    k = lambda kind, name: ResourceKey(Layer.HOST, "bench", kind, name)  # noqa: E731
    sets = [Resource(k("nft-set", f"{TABLE}/allow_api_grpc"), {"family": "inet", "table": TABLE,
                     "name": "allow_api_grpc", "type": "ipv4_addr", "elements": elems}, "bench"),
            Resource(k("nft-set", f"{TABLE}/local"), {"family": "inet", "table": TABLE, "name": "local",
                     "type": "ipv4_addr", "elements": ["10.50.1.21"]}, "bench"),
            Resource(k("nft-set", f"{TABLE}/svc_api"), {"family": "inet", "table": TABLE, "name": "svc_api",
                     "type": "ipv4_addr", "elements": ["10.50.1.21"]}, "bench")]
    table = Resource(k("nft-table", TABLE), {"family": "inet", "name": TABLE, "chains": {"input": {
        "type": "filter", "hook": "input", "priority": 0, "policy": "accept", "rules": [
            {"match": {"daddr_set": "local", "ct_state": ["established", "related"]}, "verdict": "accept"},
            {"match": {"saddr_set": "allow_api_grpc", "daddr_set": "svc_api", "protocol": "tcp", "dport": 8080},
             "verdict": "accept"},
            {"match": {"daddr_set": "local"}, "verdict": "drop"}]}}}, "bench")
    return sets + [table]


def nft(ns: str, script: str) -> float:
    t0 = time.perf_counter()
    p = subprocess.run(["ip", "netns", "exec", ns, "nft", "-f", "-"], input=script, text=True, capture_output=True)
    dt = time.perf_counter() - t0
    if p.returncode:
        raise SystemExit(f"nft failed: {p.stderr[:300]}")
    return dt


def observe(ns: str) -> tuple[float, list[Resource]]:
    t0 = time.perf_counter()
    out = subprocess.run(["ip", "netns", "exec", ns, "nft", "-j", "list", "ruleset"], capture_output=True,
                         text=True, check=True).stdout
    tables, sets = parse_ruleset(json.loads(out), "bench")
    return time.perf_counter() - t0, tables + sets


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    ns = f"ni-hd-bench-{uuid.uuid4().hex[:6]}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    rows: list[tuple[str, float, str]] = []
    try:
        def med(xs): return statistics.median(xs)
        for n, target in ((10_000, 0.2), (100_000, 1.0)):
            rs = resources(n)
            t0 = time.perf_counter()
            script = render_table(rs[-1].spec, rs[:-1], "bench")
            render_s = time.perf_counter() - t0
            times = []
            for _ in range(args.repeat):
                nft(ns, f"table inet {TABLE} {{}}\ndelete table inet {TABLE}\n")
                times.append(nft(ns, script))
            rows.append((f"full {n // 1000}k (create table, nft -f)", med(times), f"target <= {target} s"))
            rows.append((f"render {n // 1000}k (python)", render_s, ""))
        rs = resources(100_000)
        full = render_table(rs[-1].spec, rs[:-1], "bench")
        rep = [nft(ns, f"delete table inet {TABLE}\n" + full) for _ in range(args.repeat)]
        rows.append(("replace 100k (delete+create, one script)", med(rep), ""))
        obs_t, observed = observe(ns)
        rows.append(("observe 100k (nft -j list ruleset + parse)", obs_t, ""))
        # 1% change: 500 removed from the bottom, 500 new at the top
        changed = resources(100_000, shift=500)
        t0 = time.perf_counter()
        plan = plan_script(changed, observed, prune=False)
        plan_s = time.perf_counter() - t0
        assert plan.details and all("element" in d for d in plan.details), plan.details
        inc = []
        for _ in range(args.repeat):
            nft(ns, f"delete table inet {TABLE}\n" + full)          # back to the base state
            inc.append(nft(ns, plan.script))
        rows.append(("1% change on 100k (add/delete element)", med(inc),
                     f"{med(rep) / med(inc):.0f}x cheaper than replace"))
        rows.append(("plan 1% change on 100k (python)", plan_s, f"{len(plan.script)} bytes of script"))
        _, after = observe(ns)
        want = {r.key: r.spec for r in changed}
        assert all(want[r.key] == r.spec for r in after), "1% change did not converge"
    finally:
        subprocess.run(["ip", "netns", "del", ns])
    print(f"{'nftables step':48s} {'seconds':>8s}")
    for name, secs, note in rows:
        print(f"{name:48s} {secs:8.3f}  {note}")


if __name__ == "__main__":
    main()
