"""`reconciler tui`: the terminal UI, wired to a store, a snapshot or a daemon.

Contract: `add_cli(subparsers)` registers the subcommand; `build(args)` returns
(read model, actions) without starting anything, so it is testable. Modes:
  --snapshot FILE --repo DIR   read-only, no daemon: the observed state comes from the
                               snapshot file; the TUI runs dry-runs (nothing written).
  --store URL [--daemon H:P]   the service's store, polled ~1/s. With --daemon, sync goes
                               through the daemon (signed with --webhook-secret-file);
                               with --repo (and no daemon), in-process engine runs on the
                               real drivers; dry-run/refresh need --repo. Self-heal is
                               written to the store (the daemon honours it).
  --demo                       a temporary store filled by real engine runs on the example
                               intents over a snapshot with drift; actions run in-process.
Default store: $RECONCILER_STORE or .reconciler/state.db (as `reconciler serve`).
Errors (missing files, unreadable store) are one line on stderr and exit code 2.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

DEFAULT_STORE = ".reconciler/state.db"
EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "intents"


class TuiUsageError(Exception):
    pass


def add_cli(sub: Any) -> None:
    p = sub.add_parser("tui", help="terminal UI: drift per application, live, with diffs, history and actions")
    p.add_argument("--store", metavar="URL",
                   help=f"store URL or SQLite file (env RECONCILER_STORE; default {DEFAULT_STORE})")
    p.add_argument("--snapshot", metavar="FILE", help="read-only: observed state from a snapshot file (needs --repo)")
    p.add_argument("--repo", metavar="DIR",
                   help="intents repo directory (for dry-run/refresh, and sync without daemon)")
    p.add_argument("--daemon", metavar="URL", help="the daemon's HTTP address (host:port) to sync through")
    p.add_argument("--webhook-secret-file", metavar="FILE", help="the daemon's webhook secret (signs sync requests)")
    p.add_argument("--demo", action="store_true",
                   help="try it: a temporary store filled by runs on the example intents")
    p.add_argument("--app", metavar="NAME", help="open this application at start")
    p.add_argument("--poll", type=float, default=1.0, metavar="S", help="refresh interval in seconds (default 1)")
    p.set_defaults(func=cmd_tui)


def _read_secret(path: str | None) -> bytes | None:
    if not path:
        return None
    try:
        data = Path(path).read_bytes().strip()
    except OSError as exc:
        raise TuiUsageError(f"{path}: cannot read webhook secret: {exc.strerror}") from None
    if not data:
        raise TuiUsageError(f"{path}: webhook secret file is empty")
    return data


def _store_url(value: str) -> str:
    if "://" in value:
        return value
    from reconciler.service.store import sqlite_url
    return sqlite_url(value)


def _check_repo(repo: str | None) -> str | None:
    if repo is None:
        return None
    if not Path(repo).is_dir():
        raise TuiUsageError(f"{repo}: intents repo directory not found")
    return repo


def build(args: argparse.Namespace) -> tuple[Any, Any]:
    from tui.actions import LocalActions, NoActions, real_drivers, snapshot_drivers
    from tui.storemodel import StoreReadModel

    repo = _check_repo(getattr(args, "repo", None))
    if getattr(args, "demo", False):
        from reconciler.service.store import Store, sqlite_url
        from tui.demo import build_demo
        work = Path(tempfile.mkdtemp(prefix="reconciler-tui-demo-"))
        repo = repo or str(EXAMPLES)
        store = Store(sqlite_url(work / "demo.db"))
        snap = build_demo(repo, work, [store.observer])
        store.flush()
        model = StoreReadModel(store, source=f"demo store {work / 'demo.db'}")
        args.cleanup = work      # removed when the TUI exits
        return model, LocalActions(repo, snapshot_drivers(snap), [store.observer], read_model=model)

    if args.snapshot:
        if not repo:
            raise TuiUsageError("--snapshot needs --repo DIR (the intents to compare the snapshot with)")
        if not Path(args.snapshot).is_file():
            raise TuiUsageError(f"{args.snapshot}: snapshot file not found")
        from reconciler.intents.validate import load_repo
        from tui.eventmodel import EventModel
        intents = load_repo(repo)
        model = EventModel({a: intents.config.sync.self_heal for a in intents.apps},
                           source=f"snapshot {args.snapshot} (read-only)", read_only=True)
        actions = LocalActions(repo, snapshot_drivers(args.snapshot), [model.observer], read_model=model, write=False)
        first = actions.refresh("")      # fill the model: one dry-run over the snapshot
        if not first.ok and not first.run_id:
            raise TuiUsageError(first.summary)
        return model, actions

    url = args.store or os.environ.get("RECONCILER_STORE") or DEFAULT_STORE
    if "://" not in url and not Path(url).is_file():
        raise TuiUsageError(f"{url}: no store here (start `reconciler serve`, or use --store, --snapshot or --demo)")
    try:
        model = StoreReadModel.open(_store_url(url))
        model.apps()
    except Exception as exc:
        raise TuiUsageError(f"cannot open the store: {exc}") from None
    local = None
    if repo:
        local = LocalActions(repo, real_drivers(), [model.observer], read_model=model, write=not args.daemon)
    if args.daemon:
        from tui.http_actions import DaemonActions
        return model, DaemonActions(args.daemon, _read_secret(args.webhook_secret_file), model, local=local)
    if local is not None:
        return model, local
    return model, NoActions("read-only: no daemon (--daemon) and no intents repo (--repo)", read_model=model)


def cmd_tui(args: argparse.Namespace) -> int:
    try:
        model, actions = build(args)
    except TuiUsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from tui.app import ReconcilerApp
    try:
        app = ReconcilerApp(model, actions, poll_s=args.poll, open_app=args.app)
        if getattr(args, "daemon", None):   # traffic and drops from the daemon's /metrics
            from tui.http_actions import daemon_base
            from tui.telemetrymodel import TelemetryFeed, http_fetch
            app.telemetry = TelemetryFeed(http_fetch(daemon_base(args.daemon)))  # type: ignore[attr-defined]
        app.run()
    finally:
        work = getattr(args, "cleanup", None)
        if work is not None:
            import shutil
            shutil.rmtree(work, ignore_errors=True)
    return 0
