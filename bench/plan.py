"""Benchmark: compile + plan at scale, full and incremental. Prints figures (docs/scale.md).

    python3 bench/plan.py [--apps 10000] [--targets N] [--edits 30] [--validate] [--json FILE]

Generates N applications over M workload hosts (bench/scale_repo.py: 10 hosts per hypervisor,
10 hypervisors per leaf; VLANs per leaf and interfaces per host grow with the apps; `--targets`
defaults to max(1000, apps / 10)), each app with two services and a policy flow; every 50th
app calls an exported service of the next one. Generation and validation are not timed (they
have their own bench, bench/validate.py); `--validate` checks the generated repo first.
Figures, wall and CPU time (the machine may be shared: the load average is printed):
  full compile; full plan vs empty observed (all creates); no-op plan (observed: a plain copy
  of desired, as drivers hand it over); peak RSS of the process (/usr/bin/time -v agrees);
  incremental: `--edits` one-app edits at random apps, each compiled and re-planned against
  the previous desired state (as if the devices were in sync) over `Compiler.last_changed`:
  median / p90 / max, once with the changed app named (`compile(repo, changed=...)`, as a
  commit's file list would) and once found by the compiler's scan of the apps; the floor of
  each (an unchanged repo); then edits of 10, 100 and 1000 apps at once.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import random
import resource
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# bench/validate.py would shadow the `validate` package some dependencies import
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
sys.path.insert(0, str(ROOT))

from bench.scale_repo import Layout, make_app, make_repo, validate  # noqa: E402
from reconciler.compile import Compiler  # noqa: E402
from reconciler.intents.models import IntentRepo  # noqa: E402
from reconciler.model import FrozenDict, State  # noqa: E402
from reconciler.plan import make_plan  # noqa: E402


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


class Clock:
    """Wall and CPU seconds of a phase: the machine is shared, CPU time shows what contention hides."""

    def __init__(self) -> None:
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def lap(self) -> tuple[float, float]:
        wall, cpu = time.perf_counter(), time.process_time()
        out = (wall - self.wall, cpu - self.cpu)
        self.wall, self.cpu = wall, cpu
        return out


def full_run(compiler: Compiler, repo: IntentRepo, out: dict) -> State:
    gc.collect()
    clock = Clock()
    desired = compiler.compile(repo)
    compile_t = clock.lap()
    plan = make_plan(desired, State())
    plan_t = clock.lap()
    assert len(plan.changes) == len(desired)
    del plan
    observed = State(FrozenDict(desired.resources.items()))  # what drivers hand over: a plain map, same values
    clock.lap()
    noop = make_plan(desired, observed)
    noop_t = clock.lap()
    assert noop.empty
    del observed
    total = tuple(a + b + c for a, b, c in zip(compile_t, plan_t, noop_t))
    out.update(resources=len(desired), targets=len(desired.targets()), rss_mb=round(rss_mb()),
               load=[round(x, 2) for x in os.getloadavg()])
    for name, (wall, cpu) in (("compile", compile_t), ("plan", plan_t), ("noop_plan", noop_t), ("full_run", total)):
        out[f"{name}_s"], out[f"{name}_cpu_s"] = round(wall, 3), round(cpu, 3)
    print(f"resources: {len(desired)}  targets: {out['targets']}  load average: {out['load']}")
    print("                            wall      cpu")
    print(f"full compile:             {compile_t[0]:6.2f} s {compile_t[1]:6.2f} s")
    print(f"full plan (all creates):  {plan_t[0]:6.2f} s {plan_t[1]:6.2f} s")
    print(f"no-op plan (in sync):     {noop_t[0]:6.2f} s {noop_t[1]:6.2f} s")
    print(f"full run:                 {total[0]:6.2f} s {total[1]:6.2f} s   (target <= 30 s at 100,000 apps)")
    print(f"peak RSS:                 {out['rss_mb']:6.0f} MB  (target <= 4096 MB at 100,000 apps)")
    return desired


def step(compiler: Compiler, repo: IntentRepo, observed: State, changed: dict,
         hint: bool) -> tuple[IntentRepo, State, tuple[float, float], tuple[float, float], int]:
    """One incremental compile + re-plan over the apps that changed: (repo, desired, compile
    (wall, cpu) s, plan (wall, cpu) s, changes). `hint`: tell the compiler which apps changed
    (as a commit's file list would), else it finds them by scanning the repo's apps."""
    repo2 = IntentRepo(config=repo.config, inventory=repo.inventory, apps={**repo.apps, **changed})
    gc.collect(1)  # the young objects of building repo2 (the loader's cost) are not the compile's
    clock = Clock()
    desired = compiler.compile(repo2, changed=list(changed) if hint else None)
    compile_t = clock.lap()
    plan = make_plan(desired, observed, apps=compiler.last_changed)
    plan_t = clock.lap()
    return repo2, desired, compile_t, plan_t, len(plan.changes)


def one_app_edits(compiler: Compiler, repo: IntentRepo, desired: State, layout: Layout, edits: int, hint: bool,
                  rev: int) -> tuple[IntentRepo, State, dict]:
    rng = random.Random(rev)
    comp, plan = [], []
    for k in range(edits):
        i = rng.randrange(layout.apps)
        repo, new, c, p, n = step(compiler, repo, desired, {f"app{i}": make_app(i, layout, rev=rev + k)}, hint)
        assert n > 0, n
        comp.append(c)
        plan.append(p)
        desired = new
    total = [c[0] + p[0] for c, p in zip(comp, plan)]
    total_cpu = [c[1] + p[1] for c, p in zip(comp, plan)]
    floors = []
    for _ in range(max(3, edits // 3)):
        _, _, c, p, _ = step(compiler, repo, desired, {}, hint)
        floors.append(c[0] + p[0])
    q = statistics.quantiles(total, n=10, method="inclusive")[-1] if len(total) >= 2 else total[0]
    fig = {"compile_ms_median": ms(statistics.median(c[0] for c in comp)),
           "plan_ms_median": ms(statistics.median(p[0] for p in plan)),
           "total_ms_median": ms(statistics.median(total)), "total_cpu_ms_median": ms(statistics.median(total_cpu)),
           "total_ms_p90": ms(q), "total_ms_max": ms(max(total)), "floor_ms": ms(statistics.median(floors)),
           "edits": edits}
    how = "changed apps given" if hint else "apps scanned      "
    print(f"one-app edit, {how} x{edits}: compile {fig['compile_ms_median']:6.2f} + re-plan "
          f"{fig['plan_ms_median']:5.2f} = median {fig['total_ms_median']:6.2f} ms (cpu "
          f"{fig['total_cpu_ms_median']:6.2f}), p90 {ms(q):6.2f}, max {ms(max(total)):6.2f}; "
          f"floor (no change) {fig['floor_ms']:6.2f} ms")
    return repo, desired, fig


def incremental(compiler: Compiler, repo: IntentRepo, desired: State, layout: Layout, edits: int, out: dict) -> None:
    print("(targets: one-app compile + re-plan <= 20 ms at 10,000 apps, <= 25 ms at 100,000)")
    repo, desired, out["one_app_hint"] = one_app_edits(compiler, repo, desired, layout, edits, True, 1)
    repo, desired, out["one_app_scan"] = one_app_edits(compiler, repo, desired, layout, edits, False, 1 + edits)
    rng, rev = random.Random(2), 1 + 2 * edits
    for k in (10, 100, 1000):
        if k > layout.apps:
            break
        picks = rng.sample(range(layout.apps), k)
        changed = {f"app{i}": make_app(i, layout, rev=rev) for i in picks}
        repo, new, c, p, n = step(compiler, repo, desired, changed, True)
        assert n >= k, (n, k)
        out[f"apps_{k}_ms"], out[f"apps_{k}_cpu_ms"] = ms(c[0] + p[0]), ms(c[1] + p[1])
        print(f"incremental {k:>5} apps: compiled {len(compiler.last_compiled):>5} apps in {c[0] * 1000:7.1f} ms,"
              f" re-plan {p[0] * 1000:7.1f} ms, total {(c[0] + p[0]) * 1000:7.1f} ms (cpu "
              f"{(c[1] + p[1]) * 1000:7.1f}), {n} changes")
        desired, rev = new, rev + 1


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--apps", type=int, default=10000)
    ap.add_argument("--targets", type=int, default=None,
                    help="workload hosts (even; a multiple of 100 above 100); default max(1000, apps / 10)")
    ap.add_argument("--edits", type=int, default=30, help="one-app edits timed (median, p90, max)")
    ap.add_argument("--validate", action="store_true", help="check the generated repo (check_semantics) first")
    ap.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    args = ap.parse_args()
    targets = args.targets or max(1000, -(-args.apps // 1000) * 100)
    try:
        layout = Layout.of(args.apps, targets)
    except ValueError as exc:
        ap.error(str(exc))

    t = time.perf_counter()
    repo = make_repo(layout)
    print(f"generate {args.apps} apps x {targets} hosts ({layout.leaves} leaves, {layout.apps_per_leaf} apps "
          f"and VLANs per leaf, {layout.ifaces_per_host} interfaces per host): {time.perf_counter() - t:.2f} s")
    if args.validate:
        t = time.perf_counter()
        errors = validate(repo)
        print(f"validate: {len(errors)} error(s) in {time.perf_counter() - t:.2f} s")
        if errors:
            sys.exit("\n".join(errors[:20]))
    out: dict = {"apps": args.apps, "hosts": targets}
    compiler = Compiler()
    desired = full_run(compiler, repo, out)
    incremental(compiler, repo, desired, layout, args.edits, out)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
