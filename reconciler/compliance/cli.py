"""`reconciler report`: compliance per application, layer and target, as json, csv or html.

    reconciler report [REPO] [--app NAME]... [--format json|csv|html] [--since DATE] [--cached]
                      [--store URL] [--inventory INV] [--observed SNAPSHOT.json] [--layers L,...]
                      [--timeout S] [--output FILE]

Contract: reads the history store (never writes it) and, unless `--cached`, observes the devices
of REPO once, read-only (the registry's drivers through the engine's observe path; the snapshot
driver with --observed), comparing them with REPO's intents and verifying reachability on the
same observation. Prints the report (or writes it to --output). Exit 0 when every application
reported is in sync, 1 otherwise, 2 on an error: an unknown --app, a bad --since or --format,
a missing store, bad intents; each such error is one line on stderr.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

EXIT_OK, EXIT_NOT_COMPLIANT, EXIT_ERROR = 0, 1, 2


def _fail(msg: str) -> int:
    print(f"error: {msg}", file=sys.stderr)
    return EXIT_ERROR


def _store_url(args: argparse.Namespace) -> str:
    from reconciler.service.cli import DEFAULT_STORE
    return args.store or os.environ.get("RECONCILER_STORE") or DEFAULT_STORE


def cmd_report(args: argparse.Namespace) -> int:
    from reconciler.compile import CompileConflicts
    from reconciler.compliance.build import UnknownApp
    from reconciler.compliance.params import BadParameter
    from reconciler.intents.validate import RepoInvalid
    from reconciler.service.store import SchemaMismatch
    try:
        return _report(args)
    except (BadParameter, UnknownApp, SchemaMismatch) as exc:
        return _fail(f"{'--app: ' if isinstance(exc, UnknownApp) else '--' if isinstance(exc, BadParameter) else ''}"
                     f"{exc}")
    except RepoInvalid as exc:      # bad intents are an error here (2), as for plan, diff and verify
        from reconciler.loading import print_invalid
        print_invalid(exc)
        return EXIT_ERROR
    except CompileConflicts as exc:
        print("\n".join(exc.lines()), file=sys.stderr)
        return EXIT_ERROR


def _report(args: argparse.Namespace) -> int:
    from reconciler.compliance.build import build_report
    from reconciler.compliance.params import check_format, parse_since
    from reconciler.compliance.records import read_store
    from reconciler.compliance.render import render
    from reconciler.service.store import Store

    fmt = check_format(args.format)
    since = parse_since(args.since) if args.since is not None else None
    if not args.cached and not args.repo:
        return _fail("report needs REPO to observe the devices, or --cached to report from the store only")
    if args.repo and not Path(args.repo).is_dir():
        return _fail(f"{args.repo}: not a directory")
    url = _store_url(args)
    if "://" not in url and not Path(url).is_file():
        return _fail(f"no store at {url} (--store URL, or RECONCILER_STORE)")
    store = Store(url)
    try:
        records = read_store(store, since)
    finally:
        store.close()
    fresh = None
    if not args.cached:
        from reconciler.compliance.observe import observe_now
        layers = [n.strip() for n in args.layers.split(",") if n.strip()] if args.layers else None
        fresh = observe_now(args.repo, inventory=args.inventory, observed=args.observed, timeout=args.timeout,
                            layers=layers)
    report = build_report(records, now=time.time(), since=since, apps=args.app, fresh=fresh)
    text, _ = render(report, fmt)
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
        print(f"{args.output}: {len(report.apps)} application(s), {len(text.encode())} bytes", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return EXIT_OK if all(a.status.compliant for a in report.apps) else EXIT_NOT_COMPLIANT


def add_cli(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("report", help="compliance per application, layer and target (json, csv, html)")
    p.add_argument("repo", nargs="?", help="intents repo directory (for the fresh observe; not with --cached)")
    p.add_argument("--app", action="append", metavar="NAME", help="only this application (repeatable)")
    p.add_argument("--format", default="json", metavar="json|csv|html", help="output format (default json)")
    p.add_argument("--since", metavar="DATE", help="count changes from this date on (ISO 8601; UTC unless given)")
    p.add_argument("--cached", action="store_true", help="from the store only: observe nothing")
    p.add_argument("--store", help="database URL or SQLite file (env RECONCILER_STORE; default .reconciler/state.db)")
    p.add_argument("--inventory", help="inventory file (default: the one named in reconciler.yaml)")
    p.add_argument("--observed", metavar="SNAPSHOT.json", help="observe a snapshot file instead of the devices")
    p.add_argument("--layers", metavar="L,...", help="layers to observe (default all)")
    p.add_argument("--timeout", type=float, default=60.0, help="per-target observe timeout in seconds")
    p.add_argument("-o", "--output", metavar="FILE", help="write the report here instead of stdout")
    p.set_defaults(func=cmd_report)
