"""Demo data: fill a store (or any event observer) by REAL engine runs against a snapshot.

Contract: `build_demo(repo_dir, workdir, observers)` compiles the intents repo, and runs
the real `Engine` with the snapshot driver of every layer on `workdir/observed.json`:
1. run `demo-0001` (trigger `commit`): from an empty network, creates everything;
2. drift is injected into the snapshot file, as a person on the devices would:
   a shop firewall set loses an element, a shop sidecar route has its split changed,
   a billing host route is deleted (and the device will reject re-adding it), an owned
   flow nobody wants appears on a hypervisor (analytics), and host h4 becomes unreachable;
3. run `demo-0002` (trigger `drift-scan`, dry-run): detects and reports that drift;
4. run `demo-0003` (trigger `self-heal`, billing only): the repair is rejected -> failed.
Events reach `observers` (e.g. `Store.observer`). With `clock` given, event times and
run durations are pinned (`clock()` per run, durations 0.25 s) so screenshots are
reproducible; the runs, plans and outcomes are the engine's own. `desired` replaces the
compiled intents (tests pin it to a fixture so other changes to compile don't move pixels).
Returns the snapshot path. Needs only files (no root, no network).
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Callable, Iterable

from reconciler.drivers.snapshot import SnapshotDriver, read_snapshot, write_snapshot
from reconciler.events import Event, EventBus, EventKind
from reconciler.model import Layer, State

DEMO_REVISION = "4f9c2e71d0a8b35c6e21f7a90d4b8c13e5f60a27"
EXTRA_FLOW = "hypervisor/hv2/ovs-flow/priority=300,in_port=eth9"


def pinned(observer: Callable[[Event], None], clock: Callable[[], float]) -> Callable[[Event], None]:
    """Wrap an observer so every event of a run carries that run's start time (`clock()` is
    called once per run, so times do not depend on how many resources a run touches) and
    runs last 0.25 s."""
    starts: dict[str, float] = {}

    def wrapped(ev: Event) -> None:
        if ev.kind is EventKind.RUN_STARTED or ev.run_id not in starts:
            starts[ev.run_id] = clock()
        ts, data = starts[ev.run_id], ev.data
        if ev.kind is EventKind.RUN_FINISHED:
            data = {**data, "duration_s": 0.25}
            ts += 0.25
        observer(dataclasses.replace(ev, ts=ts, data=data))
    return wrapped


def step_clock(start: float = 1_764_000_000.0, step: float = 60.0) -> Callable[[], float]:
    t = [start]

    def clock() -> float:
        t[0] += step
        return t[0]
    return clock


def inject_drift(path: Path) -> dict[str, str]:
    """Change the observed state in `path` like manual changes on devices would."""
    data = read_snapshot(path)
    res = data["resources"]
    notes: dict[str, str] = {}
    by_key = {r["key"]: r for r in res}
    fw = by_key.get("host/h3/nft-set/netintent_shop/allow_api_grpc")
    if fw and len(fw["spec"].get("elements", [])) > 1:
        fw["spec"]["elements"] = fw["spec"]["elements"][:-1]
        notes["shop"] = fw["key"]
    for r in res:
        if r["app"] == "shop" and r["key"].startswith("sidecar/") and "/route/" in r["key"] \
                and len(r["spec"].get("clusters", [])) == 2:
            for c in r["spec"]["clusters"]:
                c["weight"] = 50
            break
    route = "host/h6/route/10.50.1.0/24"
    if route in by_key:
        res.remove(by_key[route])
        data.setdefault("reject", []).append(route)
        notes["billing"] = route
    res.append({"key": EXTRA_FLOW, "app": "analytics", "owned": True,
                "spec": {"table": 0, "priority": 300, "match": "in_port=eth9", "actions": "NORMAL",
                         "cookie": 1}})
    data.setdefault("unreachable", []).append("h4")
    notes["analytics"] = "h4 unreachable, " + EXTRA_FLOW
    write_snapshot(path, data)
    return notes


def build_demo(repo_dir: str | Path, workdir: str | Path, observers: Iterable[Callable[[Event], None]],
               clock: Callable[[], float] | None = None, desired: State | None = None) -> Path:
    from reconciler.compile import Compiler
    from reconciler.drivers.registry import targets_of
    from reconciler.engine import Engine
    from reconciler.intents.validate import load_repo

    repo = load_repo(str(repo_dir))
    desired = desired if desired is not None else Compiler().compile(repo)
    targets = targets_of(repo.inventory)
    snap = Path(workdir) / "observed.json"
    write_snapshot(snap, {"resources": []})
    bus = EventBus()
    for obs in observers:
        bus.subscribe(pinned(obs, clock) if clock else obs)
    engine = Engine({layer: SnapshotDriver(layer, snap) for layer in Layer}, bus, attempts=2, backoff_s=0.0,
                    sleep=lambda _s: None, publish_state=True)
    kw = dict(prune=repo.config.sync.prune, ignore=repo.config.ignore, revision=DEMO_REVISION)
    engine.run(desired, targets, run_id="demo-0001", trigger="commit", **kw)
    inject_drift(snap)
    engine.run(desired, targets, run_id="demo-0002", trigger="drift-scan", dry_run=True, **kw)
    engine.run(desired, targets, run_id="demo-0003", trigger="self-heal", apps=["billing"], **kw)
    return snap


def screenshot(out: str | Path, app_name: str | None = "shop", size: tuple[int, int] = (130, 36),
               press: tuple[str, ...] = ("n",), repo_dir: str | Path | None = None) -> Path:
    """Save an SVG screenshot of the TUI on the demo data (for the README)."""
    import asyncio
    import tempfile

    from reconciler.service.store import Store, sqlite_url
    from tui.actions import LocalActions, snapshot_drivers
    from tui.app import ReconcilerApp
    from tui.storemodel import StoreReadModel

    repo = Path(repo_dir) if repo_dir else Path(__file__).resolve().parent.parent / "examples" / "intents"
    with tempfile.TemporaryDirectory(prefix="tui-shot-") as work:
        store = Store(sqlite_url(Path(work) / "demo.db"))
        clock = step_clock()
        snap = build_demo(repo, work, [store.observer], clock=clock)
        store.flush()
        model = StoreReadModel(store, source="demo store")
        actions = LocalActions(repo, snapshot_drivers(snap), [store.observer], read_model=model)
        app = ReconcilerApp(model, actions, poll_s=0, clock=lambda: 1_764_000_000.0 + 600, open_app=app_name)
        out = Path(out)

        async def shoot() -> None:
            async with app.run_test(size=size) as pilot:
                await pilot.pause()
                if press:
                    await pilot.press(*press)
                for _ in range(3):
                    await pilot.pause()
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_text(app.export_screenshot(title="reconciler tui"), encoding="utf-8")
        asyncio.run(shoot())
        store.close()
    return out


def main(argv: list[str] | None = None) -> int:
    """python -m tui.demo store REPO WORKDIR DB | screenshot OUT.svg [--app NAME] [--size WxH]"""
    import argparse
    p = argparse.ArgumentParser(prog="python -m tui.demo")
    sub = p.add_subparsers(dest="cmd", required=True)
    st = sub.add_parser("store", help="fill a SQLite store with the demo runs")
    st.add_argument("repo")
    st.add_argument("workdir")
    st.add_argument("db")
    sh = sub.add_parser("screenshot", help="SVG screenshot of the TUI on the demo data")
    sh.add_argument("out")
    sh.add_argument("--app", default="shop", help="application to open ('' = the list)")
    sh.add_argument("--size", default="130x36")
    sh.add_argument("--press", default="n", help="keys to press first, comma separated")
    args = p.parse_args(argv)
    if args.cmd == "store":
        from reconciler.service.store import Store, sqlite_url
        store = Store(sqlite_url(args.db))
        build_demo(args.repo, args.workdir, [store.observer])
        store.flush()
        print(json.dumps({"store": args.db, "snapshot": str(Path(args.workdir) / "observed.json")}))
    else:
        w, h = (int(x) for x in args.size.lower().split("x"))
        keys = tuple(k for k in args.press.split(",") if k)
        print(screenshot(args.out, args.app or None, (w, h), keys))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
