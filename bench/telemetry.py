"""Telemetry speed: a collection round on the reference lab, parse + aggregate CPU of a synthetic
1,000-target round, and the /metrics scrape at 10,000 apps. Prints figures; asserts nothing.

    python3 bench/telemetry.py [--targets-apps 2000] [--scrape-apps 10000] [--lab]

- synthetic round: bench/scale_repo.py's repo on 900 hosts (90 hypervisors, 9 leaves: 999
  targets); every device's output is what the telemetry command prints there (nft JSON of the
  owned tables' counters plus 5 refused sources per table, dump-flows lines with statistics for
  every desired flow, `ip -s -j link` of every VXLAN device), built from the desired state.
  Measured: CPU (process time) of parse + aggregate + totals for one round (2nd round: with
  history), and the parsed counters.
- scrape: the same pipeline at --scrape-apps apps, then `generate_latest` of a registry with the
  daemon's Metrics and the telemetry export (median of 5), and the body size.
- --lab (root; run under `flock /tmp/ni-suite.lock`): the reference lab up (shared), examples
  applied, then 5 collection rounds with every host, hypervisor and switch: the first (logins)
  and the median of the others (wall clock).
"""
from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from reconciler.compile import compile_repo  # noqa: E402
from reconciler.model import Layer  # noqa: E402
from reconciler.telemetry.aggregate import aggregate  # noqa: E402
from reconciler.telemetry.index import build_index  # noqa: E402
from reconciler.telemetry.model import TargetRead  # noqa: E402
from reconciler.telemetry.parse import parse_host, parse_hypervisor, parse_switch  # noqa: E402
from reconciler.telemetry.totals import Totals  # noqa: E402

PARSERS = {"host": parse_host, "hypervisor": parse_hypervisor, "switch": parse_switch}


def device_outputs(desired, rng: random.Random) -> dict[tuple[str, str], str]:
    """(layer, target) -> what the telemetry command prints on it, for the desired state."""
    hosts: dict[str, tuple[list, list]] = {}
    flows: dict[str, list[str]] = {}
    links: dict[str, list[dict]] = {}
    for r in desired:
        t = r.key.target
        if r.key.layer is Layer.HOST and r.key.kind == "nft-table":
            c, s = hosts.setdefault(t, ([], []))
            c += [{"counter": {"family": "inet", "table": r.spec["name"], "name": n, "handle": 1,
                               "packets": rng.randrange(10**6), "bytes": rng.randrange(10**9)}}
                  for n in r.spec["counters"]]
            s.append({"set": {"family": "inet", "name": "refused", "table": r.spec["name"], "elem": [
                {"elem": {"val": {"concat": [f"10.{i}.0.9", "10.0.0.4", 80]}, "expires": 3000,
                          "counter": {"packets": rng.randrange(1000), "bytes": rng.randrange(10**5)}}}
                for i in range(5)]}})
        elif r.key.layer is Layer.HYPERVISOR and r.key.kind == "ovs-flow":
            flows.setdefault(t, []).append(
                f" cookie={r.spec['cookie']:#x}, duration=9.1s, table=0, n_packets={rng.randrange(10**6)}, "
                f"n_bytes={rng.randrange(10**9)}, priority={r.spec['priority']},{r.spec['match']} "
                f"actions={r.spec['actions']}")
        elif r.key.layer is Layer.SWITCH and r.key.kind == "vxlan":
            links.setdefault(t, []).append({"ifname": r.key.name, "ifalias": f"netintent app={r.app}", "stats64": {
                "rx": {"packets": rng.randrange(10**6), "bytes": rng.randrange(10**9)},
                "tx": {"packets": rng.randrange(10**6), "bytes": rng.randrange(10**9)}}})
    out = {("host", t): json.dumps({"nftables": c}) + "\n@@NI@@\n" + "\n".join(json.dumps({"nftables": [x]}) for x in s)
           for t, (c, s) in hosts.items()}
    out.update({("hypervisor", t): "NXST_FLOW reply (xid=0x4):\n" + "\n".join(v) for t, v in flows.items()})
    out.update({("switch", t): json.dumps(v) for t, v in links.items()})
    return out


def synthetic(apps: int, hosts: int):
    from scale_repo import Layout, make_repo
    repo = make_repo(Layout.of(apps, hosts))
    desired = compile_repo(repo)
    return repo, desired, build_index(repo, desired)


def one_round(ix, outputs, totals: Totals, ts: float) -> tuple[float, int]:
    t0 = time.process_time()
    reads = [TargetRead(layer, t, True, tuple(PARSERS[layer](t, text))) for (layer, t), text in outputs.items()]
    sample = aggregate(reads, ix, ts)
    totals.add(sample)
    return time.process_time() - t0, sum(len(r.raws) for r in reads)


def bench_round(apps: int) -> None:
    repo, desired, ix = synthetic(apps, 900)
    rng = random.Random(1)
    outputs = device_outputs(desired, rng)
    totals = Totals()
    cpu1, raws = one_round(ix, outputs, totals, 1.0)
    cpu2, _ = one_round(ix, device_outputs(desired, rng), totals, 2.0)
    size = sum(len(v) for v in outputs.values())
    print(f"synthetic round: {len(outputs)} targets, {apps} apps, {raws} counters, {size / 1e6:.1f} MB of output; "
          f"parse+aggregate+totals CPU: first {cpu1:.2f} s, second {cpu2:.2f} s")


def bench_scrape(apps: int) -> None:
    from prometheus_client import generate_latest

    from reconciler.service.metrics import Metrics
    from reconciler.telemetry.export import TelemetryExport
    t0 = time.monotonic()
    repo, desired, ix = synthetic(apps, 2000)
    outputs = device_outputs(desired, random.Random(2))
    totals = Totals()
    one_round(ix, outputs, totals, 1.0)
    m = Metrics()
    export = TelemetryExport(totals)
    m.extra.append(export.text)
    setup = time.monotonic() - t0
    renders = []
    for i in range(2):   # what the telemetry thread does once per round, after folding it in
        totals.version += 1
        t = time.process_time()
        export.text()
        renders.append(time.process_time() - t)
    times, body = [], b""
    for _ in range(5):
        t = time.monotonic()
        body = m.render()          # what GET /metrics serves
        times.append(time.monotonic() - t)
    series = sum(1 for line in body.splitlines() if line.startswith(b"netintent_app_"))
    t = time.monotonic()
    generate_latest(_registry(totals))
    naive = time.monotonic() - t
    print(f"/metrics scrape at {apps} apps: {series} netintent_app_* series, {len(body) / 1e6:.1f} MB; "
          f"scrape median {statistics.median(times) * 1000:.0f} ms, max {max(times) * 1000:.0f} ms; "
          f"render once per round (CPU) first {renders[0] * 1000:.0f} ms, then {renders[1] * 1000:.0f} ms "
          f"(prometheus_client per scrape would take {naive * 1000:.0f} ms; setup {setup:.1f} s)")


def _registry(totals):
    from prometheus_client import CollectorRegistry

    from reconciler.telemetry.export import TelemetryExport
    reg = CollectorRegistry()
    reg.register(TelemetryExport(totals))
    return reg


def bench_lab(rounds: int = 5) -> None:
    from reconciler.drivers.registry import build_drivers, targets_of
    from reconciler.engine import Engine
    from reconciler.intents.validate import load_repo
    from reconciler.lab.shared import shared_lab
    from reconciler.model import State
    from reconciler.telemetry.collect import Collector
    from reconciler.telemetry.service import targets_to_read
    layers = (Layer.SWITCH, Layer.HYPERVISOR, Layer.HOST)
    with shared_lab(ROOT / "labs" / "app-fabric.clab.yml", inventory_dir=ROOT / "inventory") as lab:
        repo = load_repo(str(ROOT / "examples" / "intents"), inventory_override=str(lab.inventory_path))
        desired = State.of(r for r in compile_repo(repo) if r.key.layer in layers)
        targets = targets_of(repo.inventory)
        drivers = build_drivers(layers, {"inventory_path": str(lab.inventory_path), "timeout_s": 120})
        report = Engine(drivers, attempts=3).run(desired, {l: targets[l] for l in layers}, prune=False)
        ix = build_index(repo, desired)
        read = targets_to_read(targets, ix)
        c = Collector(str(lab.inventory_path), timeout_s=30)
        try:
            walls = []
            for _ in range(rounds):
                t = time.monotonic()
                s = c.round(read, ix)
                walls.append(time.monotonic() - t)
                bad = [f"{r.layer}/{r.target}" for r in s.targets if not r.ok]
        finally:
            c.close()
        n = sum(len(v) for v in read.values())
        print(f"reference lab round ({n} targets, converged={report.converged}, unread={bad or 'none'}): "
              f"first {walls[0]:.2f} s (logins), then median {statistics.median(walls[1:]):.2f} s, "
              f"max {max(walls[1:]):.2f} s")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--targets-apps", type=int, default=2000)
    ap.add_argument("--scrape-apps", type=int, default=10000)
    ap.add_argument("--lab", action="store_true", help="also a collection round on the reference lab (root)")
    args = ap.parse_args()
    bench_round(args.targets_apps)
    bench_scrape(args.scrape_apps)
    if args.lab:
        bench_lab()
    return 0


if __name__ == "__main__":
    sys.exit(main())
