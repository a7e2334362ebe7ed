"""Benchmark: the compliance report from the store, 10,000 apps over 1,000 targets. Prints figures.

    python3 bench/report.py [--apps 10000] [--hosts 1000] [--drift 0.01] [--unreachable 0.01] [--keep DIR]

Setup (not timed): the repo of bench/scale_repo.py is compiled, and a fresh SQLite store is
filled with what the daemon records for it (bulk inserts of the store's own tables, the rows
shaped as the engine's events write them): a first deploy run that applied every resource (one
`resource_results` row each), then a drift scan (dry run, every app's last run) that found
`--drift` of the resources changed on the devices and `--unreachable` of the hosts (with
their sidecars) unreachable; `resource_state` holds every resource with its desired/observed
JSON, `app_state` one row per app. Timed, in this process: open the store, read its records
(`compliance.records.read_store`), build the report (pure) and render it as json, csv and html.
Targets (issue 19): <= 2 s from the store to the html, <= 5 MB of html.
"""
from __future__ import annotations

import argparse
import json
import random
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
sys.path.insert(0, str(ROOT))


def _fill(url: str, apps: int, hosts: int, drift: float, unreachable: float) -> dict:
    from bench.scale_repo import Layout, make_repo
    from reconciler.compile import Compiler
    from reconciler.model import Layer, thaw
    from reconciler.service.store import Store
    from reconciler.service.store_models import AppStateRow, ResourceResultRow, ResourceStateRow, RunRow

    desired = Compiler().compile(make_repo(Layout.of(apps, hosts)))
    rng = random.Random(19)
    host_names = sorted({r.key.target for r in desired if r.key.layer is Layer.HOST})
    down = set(rng.sample(host_names, int(len(host_names) * unreachable)))
    t_deploy, t_scan = 1_764_000_000.0, 1_764_003_600.0
    states, results_deploy, results_scan = [], [], []
    for r in sorted(desired, key=lambda r: r.key.sort_key()):   # in a fixed order: the same drift every time
        key, spec = str(r.key), json.dumps(thaw(r.spec), sort_keys=True)
        results_deploy.append({"run_id": "deploy", "app": r.app, "key": key, "layer": r.key.layer.value,
                               "target": r.key.target, "outcome": "applied", "action": "create"})
        status = "synced"
        if r.key.target in down and r.key.layer in (Layer.HOST, Layer.SIDECAR):
            status = "unknown"
            results_scan.append({"run_id": "scan", "app": r.app, "key": key, "layer": r.key.layer.value,
                                 "target": r.key.target, "outcome": "unreachable", "action": "unknown"})
        elif rng.random() < drift:
            status = "update"
            results_scan.append({"run_id": "scan", "app": r.app, "key": key, "layer": r.key.layer.value,
                                 "target": r.key.target, "outcome": "dry-run", "action": "update"})
        states.append({"key": key, "app": r.app, "status": status, "desired": spec, "observed": spec,
                       "updated": t_scan})
    names = sorted({r.app for r in desired if r.app})
    store = Store(url)
    with store.engine.begin() as conn:
        conn.execute(RunRow.__table__.insert(), [  # type: ignore[attr-defined]
            {"run_id": "deploy", "revision": "a" * 40, "trigger": "startup", "phase": "succeeded", "dry_run": False,
             "started": t_deploy, "finished": t_deploy + 60, "duration": 60.0, "apps": json.dumps(names),
             "writes": len(desired), "converged": True, "rollback": False, "error": "", "owner": "bench"},
            {"run_id": "scan", "revision": "a" * 40, "trigger": "drift-scan", "phase": "succeeded", "dry_run": True,
             "started": t_scan, "finished": t_scan + 30, "duration": 30.0, "apps": json.dumps(names),
             "writes": 0, "converged": False, "rollback": False, "error": "", "owner": "bench"}])
        conn.execute(ResourceResultRow.__table__.insert(), results_deploy + results_scan)  # type: ignore[attr-defined]
        conn.execute(ResourceStateRow.__table__.insert(), states)  # type: ignore[attr-defined]
        conn.execute(AppStateRow.__table__.insert(), [  # type: ignore[attr-defined]
            {"app": a, "revision": "a" * 40, "sync": "Synced", "health": "Healthy", "last_sync": t_deploy + 60,
             "last_scan": t_scan + 30, "drift_count": 0, "self_heal": None, "held_revision": "", "message": "",
             "last_run": "scan"} for a in names])
    store.close()
    targets = {(r.key.layer, r.key.target) for r in desired}
    return {"apps": len(names), "resources": len(desired), "targets": len(targets), "hosts": len(host_names),
            "unreachable_hosts": len(down), "results": len(results_deploy) + len(results_scan)}


def run(args: argparse.Namespace, work: Path) -> dict:
    from reconciler.compliance.build import build_report
    from reconciler.compliance.records import read_store
    from reconciler.compliance.render import render
    from reconciler.service.store import Store, sqlite_url

    url = sqlite_url(work / "state.db")
    t0 = time.perf_counter()
    shape = _fill(url, args.apps, args.hosts, args.drift, args.unreachable)
    t_fill = time.perf_counter() - t0
    t0 = time.perf_counter()
    store = Store(url)
    records = read_store(store)
    t1 = time.perf_counter()
    report = build_report(records, now=1_764_007_200.0)
    t2 = time.perf_counter()
    out = {}
    for fmt in ("html", "json", "csv"):
        s = time.perf_counter()
        text, _ = render(report, fmt)
        out[fmt] = (time.perf_counter() - s, len(text.encode()))
        (work / f"report.{fmt}").write_text(text, encoding="utf-8")
    store.close()
    by_status = report.apps_by_status()
    return {**shape, "fill_s": round(t_fill, 1), "read_s": round(t1 - t0, 3), "build_s": round(t2 - t1, 3),
            **{f"{f}_render_s": round(v[0], 3) for f, v in out.items()},
            **{f"{f}_bytes": v[1] for f, v in out.items()},
            "store_to_html_s": round(t2 - t0 + out["html"][0], 3), "apps_by_status": by_status,
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--apps", type=int, default=10_000)
    p.add_argument("--hosts", type=int, default=1_000)
    p.add_argument("--drift", type=float, default=0.01, help="share of resources found changed by the scan")
    p.add_argument("--unreachable", type=float, default=0.01, help="share of hosts unreachable in the scan")
    p.add_argument("--keep", help="write the store and the reports here (default: a temporary directory)")
    args = p.parse_args()
    if args.keep:
        Path(args.keep).mkdir(parents=True, exist_ok=True)
        fig = run(args, Path(args.keep))
    else:
        with tempfile.TemporaryDirectory(prefix="bench-report-") as tmp:
            fig = run(args, Path(tmp))
    print(f"{fig['apps']} apps, {fig['resources']} resources on {fig['targets']} targets ({fig['hosts']} hosts, "
          f"{fig['unreachable_hosts']} unreachable); store filled in {fig['fill_s']} s")
    print(f"read store {fig['read_s']} s, build {fig['build_s']} s, html {fig['html_render_s']} s "
          f"-> store to html {fig['store_to_html_s']} s (target <= 2 s)")
    print(f"html {fig['html_bytes'] / 1e6:.2f} MB (target <= 5 MB), json {fig['json_bytes'] / 1e6:.2f} MB "
          f"in {fig['json_render_s']} s, csv {fig['csv_bytes'] / 1e6:.2f} MB in {fig['csv_render_s']} s; "
          f"peak RSS {fig['peak_rss_mb']} MB")
    print(f"apps by status: {fig['apps_by_status']}")
    print(json.dumps(fig, sort_keys=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
