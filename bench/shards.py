"""Benchmark: shards of apps over daemons (service/shards.py, shard_lease.py). Prints figures.

    python3 bench/shards.py [--apps 100000] [--members 2,3,5,10] [--leases 2,5] [--runs 5] [--no-pg]

1. Movement and balance (pure, no database): apps -> slot -> member, with the daemon's
   defaults (1024 slots, eps 0.25, 64 vnodes). For N members: the fraction of apps that move
   when member N+1 joins and when one of N leaves (ideal 1/(N+1) and 1/N), and the largest
   member's load in apps over the mean (the cap is on slots: (1 + eps) x the mean).
2. Takeover of a dead shard (a real PostgreSQL started here, tests/integration/pg_helpers.py):
   a member runs in a child process, a second one in this process; the child is killed with
   SIGKILL and the time until the survivor's view no longer lists it (it owns every slot) is
   measured, `--runs` times per lease period.
3. Cost of the fence: one empty write batch (the ring row FOR SHARE, the lease and owner
   check, the batch row insert, commit), median and p90 of 300.
"""
from __future__ import annotations

import argparse
import logging
import os
import random
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "integration"))

from reconciler.service.shards import ShardSettings, owner_of, owners_of_slots  # noqa: E402


def movement(apps: int, sizes: list[int]) -> None:
    s = ShardSettings()
    names = [f"app-{i}" for i in range(apps)]
    print(f"movement and balance: {apps:,} apps, {s.slots} slots, eps {s.eps}, {s.vnodes} vnodes")
    print(f"  {'N':>3} {'join moves':>11} {'ideal':>7} {'leave moves':>12} {'ideal':>7} {'max/mean apps':>14} "
          f"{'max/mean slots':>15} {'assign ms':>10}")
    for n in sizes:
        members = tuple(f"host{i}:{4000 + i}" for i in range(n))
        t0 = time.perf_counter()
        base = owners_of_slots(members, s)
        ms = (time.perf_counter() - t0) * 1000
        joined = owners_of_slots(tuple(sorted(members + ("newcomer:1",))), s)
        left = owners_of_slots(members[1:], s)
        own = [owner_of(a, base) for a in names]
        j = sum(1 for a, o in zip(names, own) if owner_of(a, joined) != o) / apps
        lv = sum(1 for a, o in zip(names, own) if owner_of(a, left) != o) / apps
        load = {m: 0 for m in members}
        for o in own:
            load[o] += 1
        slots = {m: base.count(m) for m in members}
        print(f"  {n:>3} {j:>11.3f} {1 / (n + 1):>7.3f} {lv:>12.3f} {1 / n:>7.3f} "
              f"{max(load.values()) / (apps / n):>14.3f} {max(slots.values()) / (s.slots / n):>15.3f} {ms:>10.1f}")


CHILD = """
import sys, time
sys.path.insert(0, {root!r})
from reconciler.service.shard_lease import Membership
from reconciler.service.shards import ShardSettings
m = Membership({url!r}, "victim", ShardSettings(lease_s={lease}))
m.try_acquire()
while not m.alive():
    time.sleep(0.05)
print("up", flush=True)
time.sleep(3600)
"""


def _wait_view(m, pred, timeout: float) -> bool:
    end = time.monotonic() + timeout
    with m.changed:
        while not pred():
            left = end - time.monotonic()
            if left <= 0:
                return False
            m.changed.wait(left)
    return True


def takeover(url: str, lease: float, runs: int) -> list[float]:
    from reconciler.service.shard_lease import Membership
    out = []
    for _ in range(runs):
        survivor = Membership(url, "survivor", ShardSettings(lease_s=lease))
        child = subprocess.Popen([sys.executable, "-c", CHILD.format(root=str(ROOT), url=url, lease=lease)],
                                 stdout=subprocess.PIPE, text=True)
        try:
            assert child.stdout is not None and child.stdout.readline().strip() == "up"
            survivor.try_acquire()
            if not _wait_view(survivor, lambda: survivor.view is not None and len(survivor.view.members) == 2, 30):
                raise RuntimeError("the survivor never saw the victim")
            time.sleep(random.uniform(0, lease / 3))   # kill at a random phase of the heartbeats
            os.kill(child.pid, signal.SIGKILL)
            t0 = time.monotonic()
            if not _wait_view(survivor, lambda: survivor.view is not None and survivor.view.members == ("survivor",),
                              10 * lease):
                raise RuntimeError("no takeover")
            out.append(time.monotonic() - t0)
        finally:
            if child.poll() is None:
                child.kill()
            child.wait(10)
            survivor.release()
    return out


def fence_cost(url: str, n: int = 300) -> list[float]:
    from reconciler.service.shard_lease import Fence, Membership
    m = Membership(url, "bench", ShardSettings(lease_s=10))
    m.try_acquire()
    _wait_view(m, m.alive, 30)
    f = Fence(m)
    times = []
    try:
        for _ in range(n):
            t0 = time.perf_counter()
            with f.batch(["shop"], "host", 1):
                pass
            times.append((time.perf_counter() - t0) * 1000)
    finally:
        m.release()
    return times


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--apps", type=int, default=100000)
    ap.add_argument("--members", default="2,3,5,10")
    ap.add_argument("--leases", default="2,5")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--no-pg", action="store_true")
    a = ap.parse_args()
    logging.getLogger("reconciler").setLevel(logging.ERROR)
    movement(a.apps, [int(x) for x in a.members.split(",")])
    if a.no_pg:
        return
    from pg_helpers import PgServer, available

    from reconciler.service.store import Store
    why = available()
    if why:
        print(f"PostgreSQL figures skipped: {why}")
        return
    pg = PgServer()
    try:
        Store(pg.url).close()
        print(f"takeover of a dead shard (SIGKILL -> survivor owns its slots), {a.runs} runs each")
        for lease in [float(x) for x in a.leases.split(",")]:
            t = takeover(pg.url, lease, a.runs)
            print(f"  lease {lease:>4.1f}s: median {statistics.median(t):.2f}s  min {min(t):.2f}s  max {max(t):.2f}s"
                  f"  (max {max(t) / lease:.2f} lease periods; bound 2)")
        ft = sorted(fence_cost(pg.url))
        print(f"fence: one empty write batch: median {statistics.median(ft):.2f} ms, "
              f"p90 {ft[int(len(ft) * 0.9)]:.2f} ms ({len(ft)} batches, loopback PostgreSQL)")
        print(f"load average {os.getloadavg()[0]:.2f}")
    finally:
        pg.destroy()


if __name__ == "__main__":
    main()
