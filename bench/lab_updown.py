#!/usr/bin/env python3
"""Measure `lab up` and `lab down` of a topology (default: the reference lab), N runs.

Usage (root):  python bench/lab_updown.py [--runs 3] [--topology labs/app-fabric.clab.yml]
                                         [--name ni-lab-bench] [--mgmt-subnet 172.31.90.0/24]
Prints per-run up/down seconds with the up phases, then min/median/max, and the targets
(up <= 20 s, down <= 5 s). A private name and subnet are used so a running lab is not touched.
Also measures the time until the leaves' BGP session is Established (underlay converged).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from reconciler.lab import Lab  # noqa: E402
from reconciler.lab.shared import skip_reason  # noqa: E402


def bgp_established(lab: Lab) -> bool:
    if "leaf1" not in lab.topo.nodes:
        return True
    cp = lab.exec("leaf1", ["vtysh", "-c", "show bgp summary json"], check=False)
    try:
        peers = json.loads(cp.stdout)["ipv4Unicast"]["peers"]
    except (ValueError, KeyError):
        return False
    return any(p.get("state") == "Established" and p.get("pfxRcd", 0) >= 1 for p in peers.values())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--topology", default=str(REPO / "labs/app-fabric.clab.yml"))
    ap.add_argument("--name", default="ni-lab-bench")
    ap.add_argument("--mgmt-subnet", default="172.31.90.0/24")
    args = ap.parse_args()
    reason = skip_reason()
    if reason:
        print(f"cannot run: {reason}", file=sys.stderr)
        return 2
    ups, downs, convs = [], [], []
    with tempfile.TemporaryDirectory() as inv:
        for i in range(args.runs):
            lab = Lab.from_file(args.topology, args.name, inv, args.mgmt_subnet, log=lambda m: None)
            try:
                t = time.monotonic()
                lab.up()
                up = time.monotonic() - t
                deadline = time.monotonic() + 60
                while not bgp_established(lab) and time.monotonic() < deadline:
                    time.sleep(0.1)
                conv = time.monotonic() - t
                phases = " ".join(f"{k}={v:.2f}" for k, v in lab.timings.items() if k != "total")
                t = time.monotonic()
                problems = lab.down()
                down = time.monotonic() - t
            finally:
                lab.down(quiet=True)
            ups.append(up)
            downs.append(down)
            convs.append(conv)
            print(f"run {i + 1}: up {up:.2f}s ({phases}); underlay BGP established after "
                  f"{conv:.2f}s; down {down:.2f}s{' PROBLEMS: ' + str(problems) if problems else ''}")
    n = len(lab.topo.netns_nodes())
    for what, xs, target in (("up", ups, 20.0), ("down", downs, 5.0),
                             ("up+BGP", convs, None)):
        print(f"{what:>7}: min {min(xs):.2f}s median {statistics.median(xs):.2f}s "
              f"max {max(xs):.2f}s" + (f"  (target <= {target:g}s: "
                                        f"{'OK' if max(xs) <= target else 'MISSED'})"
                                        if target else ""))
    print(f"topology {args.topology}: {n} netns nodes, {len(lab.topo.links)} links, "
          f"{args.runs} runs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
