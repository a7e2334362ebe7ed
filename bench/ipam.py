"""Benchmark: IPAM allocation at scale, full and one-instance change. Prints figures (docs/ipam.md).

    python3 bench/ipam.py [--apps 10000] [--instances 10] [--edits 30] [--store]

Builds `--apps` applications (one /24 each, two services, `--instances` instances in all, no
literal address, no VNI, no VLAN: allocated from the pools; a VLAN pool holds at most 4094, so
above that many apps the VLANs stay derived from the VNIs) as the loader hands
them to the allocator (AppDocs, not timed), then times the pure allocator
(reconciler.ipam.allocate.allocate), wall and CPU (the machine may be shared):
  full: every value allocated from nothing (100,000 instances at the defaults);
  unchanged: the same repo again with its own allocations as previous (the floor);
  one-instance change: `--edits` times, one instance added to a random app (a new AppDoc for
  that app only, as the loader's per-file cache gives), previous = the last result;
  median / p90 / max.
`--store` also times recording the full allocation into a fresh SQLite store (persist.commit)
and reading it back (persist.read).
"""
from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
sys.path.insert(0, str(ROOT))

from reconciler.intents.loader import Doc  # noqa: E402
from reconciler.intents.models import Application, RepoConfig  # noqa: E402
from reconciler.intents.semantics import AppDoc  # noqa: E402
from reconciler.ipam import persist  # noqa: E402
from reconciler.ipam.incremental import allocate  # noqa: E402
from reconciler.ipam.model import EMPTY  # noqa: E402

CONFIG = RepoConfig.model_validate({"ipam": {"vni": {"start": 10000, "end": 99999},
                                             "vlan": {"start": 1, "end": 4094}}})


def make_app(i: int, instances: int, extra: int = 0) -> AppDoc:
    half = instances // 2
    services = {"web": {"instances": [{"host": f"h{i % 1000}", "name": f"w{k}"} for k in range(half + extra)]},
                "api": {"instances": [{"host": f"h{(i + 1) % 1000}", "name": f"a{k}"}
                                      for k in range(instances - half)]}}
    data = {"apiVersion": "netintent/v1", "kind": "Application", "metadata": {"name": f"app{i}"},
            "spec": {"segment": {"subnet": f"10.{i // 256}.{i % 256}.0/24"}, "services": services}}
    source = f"apps/app{i}.yaml"
    return AppDoc(Doc(source, data, ""), Application.model_validate({**data, "source": source}))


def timed(fn):  # noqa: ANN001, ANN201
    w, c = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - w, time.process_time() - c


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--apps", type=int, default=10_000)
    ap.add_argument("--instances", type=int, default=10)
    ap.add_argument("--edits", type=int, default=30)
    ap.add_argument("--store", action="store_true")
    args = ap.parse_args()
    apps = [make_app(i, args.instances) for i in range(args.apps)]
    # the VLAN pool holds 4094: beyond that, apps keep the VLAN derived from their VNI
    config = CONFIG if args.apps <= 4094 else RepoConfig.model_validate({"ipam": {"vni": {"start": 10000,
                                                                                           "end": 99999}}})
    got, wall, cpu = timed(lambda: allocate(config, apps, EMPTY))
    assert not got.errors, got.errors[:3]
    n = sum(len(a.addresses) for a in got.result.allocations.apps.values())
    print(f"full: {args.apps} apps, {n} instances, {len(got.result.new)} values allocated: "
          f"{wall:.3f} s wall, {cpu:.3f} s CPU")
    previous = got.result.allocations
    again, wall, cpu = timed(lambda: allocate(config, apps, previous))
    assert not again.result.changed
    print(f"same repo, its allocations as previous (first time: every app's memo misses): {wall * 1000:.2f} ms wall")
    again, wall, cpu = timed(lambda: allocate(config, apps, previous))
    print(f"unchanged (floor): {wall * 1000:.2f} ms wall, {cpu * 1000:.2f} ms CPU")
    rnd = random.Random(1)
    walls = []
    extra = [0] * args.apps
    for _ in range(args.edits):
        i = rnd.randrange(args.apps)
        extra[i] += 1
        apps[i] = make_app(i, args.instances, extra=extra[i])
        res, wall, _ = timed(lambda: allocate(config, apps, previous))
        assert not res.errors and len(res.result.new) == 1, (res.errors[:2], res.result.new)
        previous = res.result.allocations
        walls.append(wall * 1000)
    walls.sort()
    print(f"one-instance change x{args.edits}: median {statistics.median(walls):.2f} ms, "
          f"p90 {walls[int(len(walls) * 0.9) - 1]:.2f} ms, max {walls[-1]:.2f} ms")
    if args.store:
        with tempfile.TemporaryDirectory() as d:
            engine = persist.engine_for(str(Path(d) / "state.db"))
            _, wall, _ = timed(lambda: persist.commit(engine, got.result))
            print(f"store: commit of {len(got.result.new)} rows {wall:.3f} s", end="")
            back, wall, _ = timed(lambda: persist.read(engine))
            assert len(back) == len(got.result.new)
            print(f", read back {wall:.3f} s")


if __name__ == "__main__":
    main()
