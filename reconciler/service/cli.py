"""CLI of the service: `serve`, `status`, `history`, `rollback`, `sync`, `hooks install`.

Contract: `add_cli(subparsers)` registers the commands (wired by reconciler/cli.py).
Errors a user can fix are printed as one line and exit 2; `status` exits 0 when every app
is Synced and Healthy, 1 otherwise. The store URL comes from `--store` or the environment
variable RECONCILER_STORE (default: SQLite file `.reconciler/state.db`). Secrets are read
from files (`--webhook-secret-file`), never taken on the command line.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import time
import urllib.request
from pathlib import Path

from reconciler.service.shard_status import add_shard_args, print_ownership, shard_ownership, shard_settings

DEFAULT_STORE = ".reconciler/state.db"
DEFAULT_LISTEN = "127.0.0.1:8686"


def _store_url(args: argparse.Namespace) -> str:
    return args.store or os.environ.get("RECONCILER_STORE") or DEFAULT_STORE


def _open_store(args: argparse.Namespace):
    from reconciler.service.store import Store
    url = _store_url(args)
    if "://" not in url:
        Path(url).parent.mkdir(parents=True, exist_ok=True)
    return Store(url)


def _secret(path: str | None) -> bytes | None:
    if not path:
        return None
    try:
        data = Path(path).read_bytes().strip()
    except OSError as exc:
        raise SystemExit(_fail(f"{path}: cannot read webhook secret: {exc.strerror}"))
    if len(data) < 16:
        raise SystemExit(_fail(f"{path}: webhook secret must be at least 16 bytes"))
    return data


def _fail(msg: str) -> int:
    print(f"error: {msg}", file=sys.stderr)
    return 2


def _ts(t: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(t)) + "Z" if t else "-"


# ---- serve --------------------------------------------------------------------------------
def cmd_serve(args: argparse.Namespace) -> int:
    from sqlalchemy.exc import OperationalError

    from reconciler.service.daemon import Daemon, DaemonConfig
    from reconciler.service.jsonlog import setup_json_logging
    from reconciler.service.store import SchemaMismatch, Store
    setup_json_logging(args.log_file, logging.DEBUG if args.verbose else logging.INFO)
    log = logging.getLogger("reconciler.serve")
    base = Path(args.state_dir)
    base.mkdir(parents=True, exist_ok=True)
    url = _store_url(args)
    cfg = DaemonConfig(repo=args.repo, branch=args.branch, store_url=url, cache_dir=args.cache or str(base / "cache"),
                       state_dir=str(base / "state"), inventory=args.inventory, listen=args.listen or None,
                       webhook_secret=_secret(args.webhook_secret_file), interval_s=args.interval,
                       drift_interval_s=args.drift_interval, observed=args.observed, driver_factory=args.driver_factory,
                       attempts=args.attempts, timeout_s=args.timeout, keyring=args.keyring,
                       layers=tuple(args.layer or ()), shards=shard_settings(args),
                       confirm_checks=tuple(args.confirm_check) if args.confirm_check else None,
                       **({"instance": args.instance} if args.instance else {}))
    stop = {"now": False}

    def _sig(_s, _f):  # noqa: ANN001
        stop["now"] = True
    signal.signal(signal.SIGTERM, _sig)
    signal.signal(signal.SIGINT, _sig)
    delay, store = 1.0, None
    while store is None and not stop["now"]:  # survive a database that is not up yet
        try:
            store = Store(url, owner=cfg.instance)
        except SchemaMismatch as exc:
            log.error("store refused: %s", exc)
            return 2
        except OperationalError as exc:
            log.warning("store unreachable, retrying in %.0fs: %s", delay, str(exc.orig).strip().splitlines()[0]
                        if exc.orig else exc)
            time.sleep(delay)
            delay = min(30.0, delay * 2)
    if store is None:
        return 0
    daemon = Daemon(cfg, store=store)
    daemon.start()
    try:
        while not stop["now"]:
            time.sleep(0.2)
    finally:
        log.info("stopping")
        daemon.stop()
    return 0


# ---- status / history ---------------------------------------------------------------------
def cmd_status(args: argparse.Namespace) -> int:
    store = _open_store(args)
    apps = store.apps()
    hold = store.hold()
    applied = store.service("applied_revision") or ""
    refused = store.service("refused")
    ownership = shard_ownership(store)   # None unless daemons share the apps (serve --shards)
    if args.json:
        print(json.dumps({"applied_revision": applied, **({"shards": ownership} if ownership else {}),
                          "hold": None if hold is None else {"revision": hold.revision, "since": hold.since},
                          "refused": refused,
                          "apps": [{"app": a.app, "revision": a.revision, "sync": a.sync.value,
                                    "health": a.health.value, "last_sync": a.last_sync, "drift_count": a.drift_count,
                                    "self_heal": a.self_heal,
                                    "held_revision": a.held_revision, "message": a.message} for a in apps]},
                         indent=2, sort_keys=True))
    else:
        print_ownership(ownership)
        print(f"applied revision: {applied[:12] or '(none yet)'}")
        if hold:
            print(f"ROLLBACK HOLD: auto-sync held at {hold.revision[:12]} since {_ts(hold.since)} "
                  "(until a new commit arrives or `reconciler rollback --release`)")
        if refused:
            print(f"refused revision {refused['sha'][:12]}: {len(refused['errors'])} error(s); "
                  f"last good revision stays applied")
            for e in refused["errors"][:10]:
                print(f"  {e}")
        print(f"{'APP':<16} {'SYNC':<10} {'HEALTH':<11} {'REVISION':<12} {'DRIFT':>5} {'SELF-HEAL':<9} LAST SYNC")
        for a in apps:
            heal = "policy" if a.self_heal is None else ("on" if a.self_heal else "off")
            print(f"{a.app:<16} {a.sync.value:<10} {a.health.value:<11} {a.revision[:12]:<12} {a.drift_count:>5} "
                  f"{heal:<9} {_ts(a.last_sync)}{'  ' + a.message if a.message else ''}")
    return 0 if apps and all(a.sync.in_sync and a.health.healthy for a in apps) else 1


def cmd_history(args: argparse.Namespace) -> int:
    store = _open_store(args)
    runs = store.runs(app=args.app, limit=args.limit)
    if args.json and args.txn:   # one transaction, per layer and target
        from reconciler.txn.history import transactions
        print(json.dumps(transactions(store, txn_id=args.txn), indent=2, sort_keys=True))
        return 0
    if args.json:
        print(json.dumps([r.model_dump() for r in runs], indent=2, sort_keys=True))
        return 0
    print(f"{'STARTED':<20} {'RUN':<12} {'TRIGGER':<10} {'PHASE':<11} {'REVISION':<12} {'SECS':>6} {'WRITES':>6} APPS")
    for r in runs:
        kind = r.trigger + (" (rollback)" if r.rollback and r.trigger != "rollback" else "")
        dry = " dry-run" if r.dry_run else ""
        print(f"{_ts(r.started):<20} {r.run_id:<12} {kind:<10} {r.phase:<11} {r.revision[:12]:<12} "
              f"{(r.duration or 0):>6.2f} {r.writes:>6} {', '.join(a for a in json.loads(r.apps) if a)}{dry}")
        if r.error:
            print(f"{'':<20} {r.error.splitlines()[0][:150]}")
    from reconciler.txn.history import print_transactions
    print_transactions(store, limit=args.limit, txn_id=args.txn)
    return 0


# ---- rollback / sync ----------------------------------------------------------------------
def _notify(args: argparse.Namespace, path: str = "/sync") -> str:
    from reconciler.service.http import signed_request
    secret = _secret(getattr(args, "webhook_secret_file", None))
    if not secret:
        return "daemon not notified (no --webhook-secret-file); it applies at its next poll"
    # signed with a fresh timestamp and delivery id: the request is good once, for `path` only
    req = signed_request(f"http://{args.daemon}{path}", secret, json.dumps({"source": "cli"}).encode())
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return f"daemon notified ({r.status})"
    except Exception as exc:
        return f"daemon not reachable at {args.daemon} ({exc.__class__.__name__}); it applies at its next poll"


def cmd_rollback(args: argparse.Namespace) -> int:
    from reconciler.service.gitsource import GitSource, SourceError
    from reconciler.service.hooks import check_revision
    if args.revision and args.revision.startswith("tx-"):   # a transaction id: revert it as a new transaction
        from reconciler.txn.cli import cmd_revert
        return cmd_revert(args)
    store = _open_store(args)
    if args.release:
        store.release_hold()
        print(f"rollback hold released; auto-sync follows {args.branch} again. {_notify(args)}")
        return 0
    if not args.revision or not args.repo:
        return _fail("rollback needs REVISION and --repo (or --release)")
    src = GitSource(args.repo, args.branch, args.cache or str(Path(args.state_dir) / "cache-cli"))
    try:
        head = src.fetch()
        sha = src.resolve(args.revision)
    except SourceError as exc:
        return _fail(str(exc))
    if not src.is_ancestor(sha, head):
        return _fail(f"{sha[:12]} is not in the history of {args.branch}")
    errors = check_revision(src.repo_dir, sha, args.inventory)
    if errors:
        for e in errors:
            print(e, file=sys.stderr)
        return _fail(f"revision {sha[:12]} is invalid ({len(errors)} error(s)); not rolled back")
    store.set_hold(sha, head)
    print(f"rollback to {sha[:12]} recorded; auto-sync holds there until a new commit on {args.branch} "
          f"or `reconciler rollback --release`. {_notify(args)}")
    return 0


def cmd_sync(args: argparse.Namespace) -> int:
    msg = _notify(args)
    print(msg)
    return 0 if msg.startswith("daemon notified") else 1


def cmd_hooks(args: argparse.Namespace) -> int:
    from reconciler.service.hooks import HookError, install
    try:
        paths = install(args.bare_repo, webhook=args.webhook, secret_file=args.webhook_secret_file, branch=args.branch,
                        keyring=args.keyring, inventory=args.inventory, force=args.force)
    except HookError as exc:
        return _fail(str(exc))
    for p in paths:
        print(f"installed {p}")
    return 0


# ---- parser -------------------------------------------------------------------------------
def _store_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--store", help=f"database URL or SQLite file (env RECONCILER_STORE; default {DEFAULT_STORE})")


def add_cli(sub: argparse._SubParsersAction) -> None:
    _add_serve(sub)
    _add_store_readers(sub)
    _add_daemon_requests(sub)
    _add_hooks(sub)


def _add_serve(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="run the reconcile daemon (sync on commits, drift scans, self-heal)")
    p.add_argument("--repo", required=True, help="intents repo URL or path")
    p.add_argument("--branch", default="main")
    _store_arg(p)
    p.add_argument("--inventory", help="inventory file overriding the repo's")
    p.add_argument("--listen", default=DEFAULT_LISTEN, help="host:port of the webhook/metrics server ('' = none)")
    p.add_argument("--webhook-secret-file", help="file holding the webhook HMAC secret (>= 16 bytes)")
    p.add_argument("--interval", type=float, help="poll interval in seconds (default: the repo's sync.interval_s)")
    p.add_argument("--drift-interval", type=float, help="drift scan interval (default: sync.drift_interval_s)")
    p.add_argument("--state-dir", default=".reconciler", help="cache and state directory")
    p.add_argument("--cache", help="git cache directory (default STATE_DIR/cache)")
    p.add_argument("--observed", metavar="SNAPSHOT.json", help="offline: snapshot drivers on this file")
    p.add_argument("--driver-factory", metavar="MODULE:FUNC", help="build drivers with this factory (tests)")
    p.add_argument("--keyring", help="only apply commits signed by a key in this keyring (needs gpg)")
    p.add_argument("--layer", action="append", choices=["switch", "hypervisor", "host", "sidecar"],
                   help="only reconcile this layer (repeatable; default every layer with a driver)")
    p.add_argument("--attempts", type=int, default=1, help="engine attempts per run (the daemon retries apps itself)")
    p.add_argument("--timeout", type=float, default=60.0, help="per-target timeout in seconds")
    p.add_argument("--log-file", help="JSON log lines go here (default stderr)")
    p.add_argument("--confirm-check", action="append", choices=["verify"],
                   help="a health check that confirms a pending commit-confirm transaction when it passes "
                        "(verify: reachability clean after the change went live); repeatable")
    add_shard_args(p)
    p.set_defaults(func=cmd_serve)


def _add_store_readers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("status", help="sync and health per application, rollback hold, refused revision")
    _store_arg(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("history", help="runs, newest first")
    _store_arg(p)
    p.add_argument("--app", help="only runs touching this application")
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--json", action="store_true")
    p.add_argument("--txn", metavar="TXID", help="only this transaction, per layer and target")
    p.set_defaults(func=cmd_history)


def _add_daemon_requests(sub: argparse._SubParsersAction) -> None:
    for name, helptext in (("rollback", "apply an earlier revision and hold auto-sync there"),
                           ("sync", "ask the daemon for a manual sync now (allowed in deny windows)")):
        p = sub.add_parser(name, help=helptext)
        if name == "rollback":
            p.add_argument("revision", nargs="?", help="commit to roll back to, or a transaction id (tx-...) to "
                           "revert as a new transaction")
            p.add_argument("--release", action="store_true", help="end the hold; follow the branch again")
            p.add_argument("--repo", help="intents repo URL or path")
            p.add_argument("--branch", default="main")
            p.add_argument("--inventory", help="inventory override used to validate the revision")
            p.add_argument("--state-dir", default=".reconciler")
            p.add_argument("--cache", help="git cache directory for this command")
            _store_arg(p)
        p.add_argument("--daemon", default=DEFAULT_LISTEN, help="host:port of the daemon")
        p.add_argument("--webhook-secret-file", help="the daemon's webhook secret (signs the request)")
        p.set_defaults(func=cmd_rollback if name == "rollback" else cmd_sync)


def _add_hooks(sub: argparse._SubParsersAction) -> None:
    hp = sub.add_parser("hooks", help="git server hooks for the intents repo")
    hsub = hp.add_subparsers(dest="hooks_command", required=True)
    p = hsub.add_parser("install", help="install pre-receive (validate) and post-receive (notify) hooks")
    p.add_argument("bare_repo")
    p.add_argument("--webhook", help="daemon webhook URL, e.g. http://127.0.0.1:8686/hooks/git")
    p.add_argument("--webhook-secret-file")
    p.add_argument("--branch", help="only check/notify this branch (default: every branch)")
    p.add_argument("--keyring", help="reject commits not signed by a key in this keyring (needs gpg)")
    p.add_argument("--inventory", help="inventory override for validation")
    p.add_argument("--force", action="store_true", help="replace existing hooks that are not ours")
    p.set_defaults(func=cmd_hooks)
