"""Bench: what the TUI's once-a-second live refresh costs, on the demo store and a large one.

  demo   : the store filled by the real demo runs (tui/demo.py: 3 apps, ~130 resources)
  large  : a synthetic store with `--apps` applications x `--resources` resources each,
           written through `Store.observer` with the engine's event shapes (RUN_STARTED,
           STATE, DRIFT, RUN_FINISHED), plus `--runs` runs of history
For each, in a headless app (Textual's run_test): the median time of one poll
(`refresh_data`) of the application list and of one application's detail screen, in the
steady state (nothing changed: only the store reads and the change check) and after the
store changed (tables and tree re-rendered). Also the store reads alone.
Run: `python bench/tui_poll.py [--apps 40 --resources 300 --runs 200 --repeat 15]`.
"""
from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from reconciler.events import Event, EventKind  # noqa: E402
from reconciler.service.store import Store, sqlite_url  # noqa: E402
from tui.app import ReconcilerApp  # noqa: E402
from tui.demo import build_demo, step_clock  # noqa: E402
from tui.screens import AppDetailScreen  # noqa: E402
from tui.storemodel import StoreReadModel  # noqa: E402


def fill_large(store: Store, apps: int, resources: int, runs: int) -> None:
    t = 1_764_000_000.0
    names = [f"app{i:03d}" for i in range(apps)]
    for n in range(runs):
        rid = f"run{n:05d}"
        store.observer(Event(EventKind.RUN_STARTED, rid, message="drift-scan", ts=t + n,
                             data={"revision": "a" * 40, "dry_run": True}))
        if n == runs - 1:
            rows = []
            for a in names:
                for r in range(resources):
                    spec = {"table": "netintent_" + a, "name": f"set{r}",
                            "elements": [f"10.{r % 250}.0.{k}" for k in range(4)]}
                    obs = dict(spec, elements=spec["elements"][:3]) if r % 17 == 0 else spec
                    rows.append({"key": f"host/h{r % 12}/nft-set/netintent_{a}/set{r}", "app": a,
                                 "status": "update" if r % 17 == 0 else "synced", "desired": spec, "observed": obs})
            store.observer(Event(EventKind.STATE, rid, ts=t + n, data={"resources": rows}))
        for a in names[: 3]:
            store.observer(Event(EventKind.DRIFT, rid, app=a, key=f"host/h1/nft-set/netintent_{a}/set0", ts=t + n,
                                 data={"action": "update", "executed": True, "diff": []}))
        store.observer(Event(EventKind.RUN_FINISHED, rid, ts=t + n + 0.5, data={
            "phase": "succeeded", "duration_s": 0.5, "revision": "a" * 40, "apps": names, "writes": 0,
            "drift": {a: resources // 17 + 1 for a in names}, "targets": []}))
    assert store.flush()


def median_ms(fn, repeat: int) -> float:
    xs = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        xs.append((time.perf_counter() - t0) * 1000)
    return statistics.median(xs)


async def measure_ui(model: StoreReadModel, app_name: str, repeat: int, touch) -> dict[str, float]:
    app = ReconcilerApp(model, None, poll_s=0)
    out: dict[str, float] = {}
    async with app.run_test(size=(160, 50)) as pilot:
        await pilot.pause()
        lst = app.screen
        out["list poll, unchanged"] = median_ms(lst.refresh_data, repeat)
        await app.push_screen(AppDetailScreen(app_name))
        await pilot.pause()
        det = app.screen
        out["detail poll, unchanged"] = median_ms(det.refresh_data, repeat)

        def changed():
            touch()
            det.refresh_data()
        out["detail poll, store changed"] = median_ms(changed, max(3, repeat // 3))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--apps", type=int, default=40)
    ap.add_argument("--resources", type=int, default=300)
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--repeat", type=int, default=15)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as work:
        w = Path(work)
        demo = Store(sqlite_url(w / "demo.db"))
        build_demo(ROOT / "examples" / "intents", w, [demo.observer], clock=step_clock())
        demo.flush()
        big = Store(sqlite_url(w / "big.db"))
        t0 = time.perf_counter()
        fill_large(big, args.apps, args.resources, args.runs)
        fill_s = time.perf_counter() - t0
        n = [0]

        def touch_for(store: Store, app: str):
            def touch() -> None:   # one more drift event: the detail's history changes
                n[0] += 1
                store.observer(Event(EventKind.DRIFT, f"x{n[0]}", app=app, key="host/h1/nft-set/x/y",
                                     ts=1_764_100_000.0 + n[0], data={"action": "update", "executed": False}))
            return touch

        for label, store, app_name, size in (
                ("demo", demo, "shop", "3 apps, demo runs"),
                ("large", big, "app000", f"{args.apps} apps x {args.resources} resources, {args.runs} runs")):
            model = StoreReadModel(store, label)
            reads = {
                "store reads: apps()": median_ms(model.apps, args.repeat),
                "store reads: resources(app)": median_ms(lambda: model.resources(app_name), args.repeat),
                "store reads: runs+drift(app)": median_ms(lambda: (model.runs(app_name, 50),
                                                                   model.drift_events(app_name, 1000)), args.repeat),
            }
            ui = asyncio.run(measure_ui(model, app_name, args.repeat, touch_for(store, app_name)))
            print(f"{label} ({size}):")
            for k, v in {**reads, **ui}.items():
                print(f"  {k:<32} {v:8.1f} ms")
        print(f"(large store written in {fill_s:.1f} s)")


if __name__ == "__main__":
    main()
