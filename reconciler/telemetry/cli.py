"""`reconciler top`: per-application traffic and drops in the terminal, read from the devices.

    reconciler top REPO [--inventory INV] [--app NAME]... [--json [--rpc]] [--interval S] [--count N]

Contract: loads and compiles the repo (no device is written), builds the attribution index and
reads every host, hypervisor and switch with an app's counters once per round, itself (no daemon
needed). `--json` prints ONE sample: the series as exported on /metrics (labels as there; with
`--rpc` also the sidecar layer's rpc series, rpc.py, and its targets), the targets that could not
be read, and per app the unknown shares; exit 0, or 2 when a target could not be read (its share
is unknown). Otherwise a table per app (packet and drop rates between rounds, `?` for an unknown
share) is redrawn every interval (default the repo's sync.telemetry_interval_s), `--count` rounds
(default: until Ctrl-C).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

EXIT_OK, EXIT_UNKNOWN = 0, 2


def _setup(args: argparse.Namespace) -> tuple[Any, Any, Any, Any, Any]:
    from reconciler.compile import Compiler
    from reconciler.drivers.registry import targets_of
    from reconciler.loading import inventory_path, load
    from reconciler.model import Layer
    from reconciler.telemetry.collect import Collector
    from reconciler.telemetry.index import build_index
    from reconciler.telemetry.rpc import rpc_index
    from reconciler.telemetry.service import targets_to_read
    repo = load(args.repo, args.inventory)
    desired = list(Compiler().compile(repo))
    ix = build_index(repo, desired)
    collector = Collector(inventory_path(args, repo), timeout_s=args.timeout)
    targets = targets_of(repo.inventory)
    sidecar = (rpc_index(desired), list(targets.get(Layer.SIDECAR, ())))
    return repo, ix, collector, targets_to_read(targets, ix), sidecar


def sample_json(totals: Any, apps: list[str] | None, rpc: Any = None) -> dict[str, Any]:
    from reconciler.telemetry.view import series_json
    unknown: dict[str, list[dict[str, str]]] = {}
    for u in totals.unknown:
        if not apps or u.app in apps:
            unknown.setdefault(u.app, []).append({"layer": u.layer, "target": u.target, "value": "unknown",
                                                  "error": u.error})
    return {"ts": totals.last_ts, "round_s": round(totals.last_round_s, 3),
            "targets": [{"layer": l, "target": t, "status": "unknown" if (l, t) in totals.down else "ok",
                         **({"error": totals.down[(l, t)]} if (l, t) in totals.down else {})}
                        for l, t in sorted(totals.targets)],
            "series": series_json(totals, apps) + (rpc_json(rpc, apps) if rpc is not None else []),
            "unknown": unknown}


def rpc_json(rpc: Any, apps: list[str] | None) -> list[dict[str, Any]]:
    """The sidecar layer's series (rpc.py) as JSON rows: calls by code, latency histogram counts."""
    calls, hists = rpc.series()
    rows: list[dict[str, Any]] = [
        {"metric": "netintent_app_rpc_total", "value": n,
         "labels": {"app": app, "service": svc, "code": code, "target": node}}
        for (app, svc, code, node), n in sorted(calls.items()) if not apps or app in apps]
    for (app, svc, node), (h, total) in sorted(hists.items()):
        if not apps or app in apps:
            rows.append({"metric": "netintent_app_rpc_latency_seconds", "value": {
                "buckets": dict(zip([str(b) for b in rpc.buckets] + ["+Inf"], h)), "sum": total,
                "count": h[-1] if h else 0}, "labels": {"app": app, "service": svc, "target": node}})
    return rows


def _fmt(v: float | None) -> str:
    return "?" if v is None else f"{v:,.1f}"


def table(totals: Any, apps: list[str]) -> str:
    from reconciler.telemetry.view import app_rows
    rows = app_rows(totals, apps)
    lines = [f"{'APP':<24} {'HOST ACCEPT/s':>14} {'HOST DROP/s':>12} {'REFUSED/s':>10} {'HV SENT/s':>10} "
             f"{'FABRIC B/s':>12}  UNKNOWN"]
    for app in sorted(rows):
        r = rows[app]
        pps, unknown_layers = r["pps"], {u.split("/")[0] for u in r["unknown"]}

        def get(k: str, pps=pps, unknown_layers=unknown_layers) -> float | None:
            if pps is None or (k not in pps and k.split(":")[0] in unknown_layers):
                return None      # no counter read for it: unknown, not 0
            return pps.get(k, 0.0)
        lines.append(f"{app:<24} {_fmt(get('host:accept')):>14} {_fmt(get('host:drop')):>12} "
                     f"{_fmt(r['drops_ps']):>10} {_fmt(get('hypervisor:accept')):>10} {_fmt(r['bps']):>12}  "
                     f"{', '.join(r['unknown']) or '-'}")
    return "\n".join(lines) + "\n"


def cmd_top(args: argparse.Namespace) -> int:
    from reconciler.telemetry.rpc import RpcCollector, RpcTotals, rpc_round
    from reconciler.telemetry.totals import Totals
    repo, ix, collector, targets, (rix, sidecars) = _setup(args)
    apps = sorted(args.app or repo.apps)
    totals = Totals()
    try:
        if args.json:
            rpc = RpcTotals() if args.rpc else None
            sample = collector.round(targets, ix)
            if rpc is not None:
                sample = rpc_round(RpcCollector(min(args.timeout, 5.0)), sidecars, rix, rpc, sample)
            totals.add(sample)
            print(json.dumps(sample_json(totals, args.app, rpc), indent=2, sort_keys=True))
            return EXIT_UNKNOWN if totals.down else EXIT_OK
        interval = args.interval or float(repo.config.sync.telemetry_interval_s)
        n = 0
        while args.count is None or n < args.count:
            t0 = time.monotonic()
            totals.add(collector.round(targets, ix))
            n += 1
            if sys.stdout.isatty():
                sys.stdout.write("\x1b[H\x1b[2J")
            sys.stdout.write(time.strftime("%H:%M:%S ") + f"round {n} ({totals.last_round_s:.2f}s)\n"
                             + table(totals, apps))
            sys.stdout.flush()
            if args.count is None or n < args.count:
                time.sleep(max(0.0, interval - (time.monotonic() - t0)))
        return EXIT_UNKNOWN if totals.down else EXIT_OK
    except KeyboardInterrupt:
        return EXIT_OK
    finally:
        collector.close()


def add_cli(subparsers: Any) -> None:
    p = subparsers.add_parser("top", help="per-application traffic and drops, read from the devices")
    p.add_argument("repo", help="intents repo directory")
    p.add_argument("--inventory", help="inventory file (default: the one named in reconciler.yaml)")
    p.add_argument("--app", action="append", metavar="NAME", help="only this application (repeatable)")
    p.add_argument("--json", action="store_true", help="print one sample of the counters as JSON")
    p.add_argument("--rpc", action="store_true", help="with --json: also the workloads' gRPC call stats "
                   "(sidecar targets' admin Stats)")
    p.add_argument("--interval", type=float, help="seconds between rounds (default sync.telemetry_interval_s)")
    p.add_argument("--count", type=int, help="stop after N rounds (default: until Ctrl-C)")
    p.add_argument("--timeout", type=float, default=30.0, help="per-round device timeout in seconds")
    p.set_defaults(func=cmd_top)
