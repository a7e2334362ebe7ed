"""Bench: one-app change to converged on the reference lab (labs/app-fabric.clab.yml), real drivers.

Brings up a private copy of the reference lab, applies examples/intents, then times `Engine.run`
(from its start to verified: observe, plan, apply in layer order, read-back) for one-app changes:
  instance : shop's web gets one more instance on h1 (an OVS port's flows on hv1, an address,
             route and set elements on hosts, a /32 route on the other leaf): every layer changes
  port     : shop's api port changes (nftables rules on the api hosts only)
and a no-op run. Repeated `--repeat` times each (min / median / max). Target (issue 5): <= 5 s
for a one-app change. Root only: `python bench/reference_one_app.py [--layers switch,hypervisor,host]`.
"""
from __future__ import annotations

import argparse
import ipaddress
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from reconciler.compile import Compiler  # noqa: E402
from reconciler.drivers.registry import build_drivers, targets_of  # noqa: E402
from reconciler.engine import Engine  # noqa: E402
from reconciler.intents.validate import load_repo  # noqa: E402
from reconciler.lab import Lab  # noqa: E402
from reconciler.model import Layer  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--layers", default="switch,hypervisor,host")
    args = ap.parse_args()
    layers = [Layer(x) for x in args.layers.split(",")]
    work = Path(tempfile.mkdtemp(prefix="ni-bench-ref-"))
    lab = Lab.from_file(ROOT / "labs" / "app-fabric.clab.yml", "ni-bench-ref", work, "172.31.67.0/24")
    lab.up()
    try:
        repo_dir = work / "repo"
        shutil.copytree(ROOT / "examples" / "intents", repo_dir)
        inv = str(lab.inventory_path)
        drivers = build_drivers(layers, {"inventory_path": inv, "timeout_s": 60})
        engine, compiler = Engine(drivers, attempts=3), Compiler()

        def run(what: str) -> float:
            repo = load_repo(str(repo_dir), inventory_override=inv)
            desired = compiler.compile(repo)
            targets = {k: v for k, v in targets_of(repo.inventory).items() if k in drivers}
            t0 = time.perf_counter()
            rep = engine.run(desired, targets, prune=False)
            dt = time.perf_counter() - t0
            if not rep.converged:
                raise SystemExit(f"{what}: not converged: "
                                 f"{[(t.target, t.outcome.value, t.error) for t in rep.targets.values() if not t.ok]}")
            return dt

        def edit(fn) -> None:
            app = repo_dir / "apps" / "shop.yaml"
            data = yaml.safe_load(app.read_text())
            fn(data["spec"])
            app.write_text(yaml.safe_dump(data, sort_keys=False))

        initial = run("initial")
        times: dict[str, list[float]] = {"instance": [], "port": [], "no-op": []}
        for i in range(args.repeat):
            def add_instance(spec: dict, i: int = i) -> None:
                web = spec["services"]["web"]["instances"]
                net = ipaddress.IPv4Network(spec["segment"]["subnet"])
                web.append({"host": web[0]["host"], "address": str(net.network_address + 100 + i)})

            def new_port(spec: dict, i: int = i) -> None:
                spec["services"]["api"]["ports"][0]["port"] = 8100 + i
            edit(add_instance)
            times["instance"].append(run("instance"))
            edit(new_port)
            times["port"].append(run("port"))
            times["no-op"].append(run("no-op"))
    finally:
        lab.down()
        shutil.rmtree(work, ignore_errors=True)
    print(f"reference lab, layers {','.join(l.value for l in layers)}: Engine.run start -> verified, "
          f"{args.repeat} runs each (initial converge {initial:.2f} s)")
    print(f"{'one-app change':28s} {'min':>6s} {'median':>7s} {'max':>6s}")
    for name, xs in times.items():
        print(f"{name:28s} {min(xs):6.2f} {statistics.median(xs):7.2f} {max(xs):6.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
