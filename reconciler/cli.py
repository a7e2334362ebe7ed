"""Command line: `reconciler validate|plan|diff|apply|demo|lab|serve|...`.

Contract: every command catches errors at this boundary and prints one clear message
(file, line and path for bad intents; target for device trouble); no traceback reaches
the user unless RECONCILER_DEBUG=1. Exit codes:
  validate      0 valid, 1 invalid, 2 usage error
  plan, diff    0 no change/drift, 1 changes/drift, 2 error   (as `flux diff`)
  apply         0 converged, 1 not converged (a target failed or drift remains), 2 error
Commands from other modules register themselves through `add_cli(subparsers)`.
"""
from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import sys
from typing import Sequence

from reconciler.assembly import build_engine, layer_targets
from reconciler.compile import CompileConflicts, Compiler
from reconciler.loading import UserError, head_revision, inventory_path, load, print_invalid
from reconciler.model import Layer

log = logging.getLogger("reconciler")

EXIT_OK, EXIT_CHANGES, EXIT_ERROR = 0, 1, 2

# Modules that contribute subcommands through `add_cli(subparsers)`.
CLI_MODULES = ("reconciler.intents.cli", "reconciler.lab.cli", "reconciler.service.xds_cli", "reconciler.service.cli",
               "tui.cli", "reconciler.demo", "reconciler.verify.cli", "reconciler.txn.cli",
               "reconciler.compliance.cli", "reconciler.ipam.cli", "reconciler.telemetry.cli")


def _colour(args: argparse.Namespace) -> bool:
    if getattr(args, "no_color", False) or os.environ.get("NO_COLOR"):
        return False
    return sys.stdout.isatty()


def cmd_plan(args: argparse.Namespace) -> int:
    from reconciler.ipam.model import preview_lines
    from reconciler.plan import make_plan, render_text
    if args.from_rev or args.to_rev:
        from reconciler.ipam.binding import StoreBinding, default_store_url
        from reconciler.revision import preview_range
        plan, ipam = preview_range(args.repo, args.from_rev or "HEAD~1", args.to_rev or "HEAD", args.inventory,
                                   ipam=StoreBinding(default_store_url(args.store)))
    else:
        repo = load(args.repo, args.inventory, store=args.store)
        ipam = repo.allocations
        desired = Compiler().compile(repo)
        observed = _snapshot_state(args.observed) if args.observed else None
        from reconciler.model import State
        plan = make_plan(desired, observed or State(), prune=args.prune, ignore=repo.config.ignore)
    if args.json:
        print(json.dumps({**plan.to_json(), "ipam": preview_lines(ipam)}, indent=2, sort_keys=True))
    else:
        sys.stdout.write(render_text(plan, colour=_colour(args)))
        sys.stdout.write("".join(f"{ln}\n" for ln in preview_lines(ipam)))
    return EXIT_CHANGES if plan.drift else EXIT_OK


def _snapshot_state(path: str):
    from reconciler.drivers.snapshot import read_snapshot
    from reconciler.model import State
    try:
        return State.from_json(read_snapshot(path).get("resources", []))
    except FileNotFoundError:
        raise UserError(f"{path}: snapshot file not found") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise UserError(f"{path}: not a valid snapshot: {exc}") from None


# ---- diff / apply -------------------------------------------------------------------------
def cmd_diff(args: argparse.Namespace) -> int:
    repo = load(args.repo, args.inventory, store=args.store)
    args.inventory_path = inventory_path(args, repo)
    desired = Compiler().compile(repo)
    targets = layer_targets(repo)
    engine, _ = build_engine(args, targets)
    report = engine.run(desired, targets, prune=args.prune, dry_run=True,
                        apps=args.app or None, ignore=repo.config.ignore, revision=head_revision(args.repo),
                        trigger="diff")
    if args.json:
        print(json.dumps(report.to_json(), indent=2, sort_keys=True))
    else:
        sys.stdout.write(render_observed(report, colour=_colour(args)))
        _print_target_problems(report)
    if unobserved(report):
        return EXIT_ERROR
    return EXIT_CHANGES if report.initial.drift else EXIT_OK


def cmd_apply(args: argparse.Namespace) -> int:
    # A real apply (also offline, --observed) records the repo's IPAM allocations; a dry run does not.
    repo = load(args.repo, args.inventory, store=args.store, record=not args.dry_run)
    if args.prune and not repo.apps and not args.allow_empty:
        # An empty or missing apps/ is valid, but pruning against it deletes everything owned.
        raise UserError(f"{args.repo}: no applications; --prune would delete everything the reconciler owns "
                        "(add --allow-empty if that is what you want)")
    args.inventory_path = inventory_path(args, repo)
    desired = Compiler().compile(repo)
    targets = layer_targets(repo)
    engine, _ = build_engine(args, targets)
    from reconciler.txn.apply import transactional_apply, txn_exit, txn_line
    # every real apply is a transaction
    txn = transactional_apply(args, repo, desired, targets, engine, revision=head_revision(args.repo))
    if txn is not None and txn.report is None:
        print(txn_line(txn), file=sys.stderr)
        return txn_exit(txn)
    report = txn.report if txn is not None and txn.report is not None else engine.run(
        desired, targets, prune=args.prune, dry_run=args.dry_run, apps=args.app or None, ignore=repo.config.ignore,
        revision=head_revision(args.repo), trigger="cli")
    if args.json:
        print(json.dumps({**report.to_json(), **({"transaction": txn.to_json()} if txn else {})},
                         indent=2, sort_keys=True))
        ok = report.converged or (args.dry_run and all(t.ok for t in report.targets.values()))
        return txn_exit(txn) if txn is not None else (EXIT_OK if ok else EXIT_CHANGES)
    sys.stdout.write(render_observed(report, colour=_colour(args)))
    print(format_report(report))
    if txn is not None:
        print(txn_line(txn))
        return txn_exit(txn)
    if args.dry_run:
        return EXIT_OK if all(t.ok for t in report.targets.values()) else EXIT_CHANGES
    return EXIT_OK if report.converged else EXIT_CHANGES


def unobserved(report) -> list[tuple[Layer, str]]:
    """Targets whose state is not known after this run, in layer order: in a dry run (diff)
    every target that failed (its observation, or its plan, did); else those left unreachable."""
    keys = set(report.unknown or {})
    if report.dry_run:
        keys |= {k for k, t in report.targets.items() if not t.ok}
    return sorted(keys, key=lambda k: (k[0].create_rank, k[1]))


def render_observed(report, colour: bool = False) -> str:
    """The run's initial plan as text. An empty plan reads "No changes" only when every target
    was observed and none failed; otherwise a header names the targets whose drift is unknown."""
    from reconciler.plan import render_lines, render_text
    unknown = unobserved(report)
    failed = [k for k, t in sorted(report.targets.items(), key=lambda kt: (kt[0][0].create_rank, kt[0][1]))
              if not t.ok and k not in unknown]
    if not unknown and not failed:
        return render_text(report.initial, colour=colour)
    head = (f"Drift unknown: {len(unknown)} target(s) could not be observed: "
            + ", ".join(f"{layer.value}/{target}" for layer, target in unknown) + "\n") if unknown else ""
    if render_lines(report.initial):
        return head + render_text(report.initial, colour=colour)
    tail = (f"; {len(failed)} target(s) failed: " + ", ".join(f"{l.value}/{t}" for l, t in failed)) if failed else ""
    return head + f"No drift on the {len(report.targets) - len(unknown)} observed target(s){tail}.\n"


def format_report(report) -> str:
    """Per application: each of its targets with that application's changes there and the
    target's outcome in this run."""
    lines = []
    changes: dict[tuple[str, Layer, str], int] = {}
    for c in report.initial.drift:
        k = (c.app, c.key.layer, c.key.target)
        changes[k] = changes.get(k, 0) + 1
    by_app: dict[str, set] = {}
    for t in report.targets.values():
        for app in t.apps:
            by_app.setdefault(app, set()).add((t.layer, t.target))
    for app, layer, target in changes:
        by_app.setdefault(app, set()).add((layer, target))
    for app in sorted(by_app):
        n = sum(v for (a, _, _), v in changes.items() if a == app)
        lines.append(f"{app or '(fabric)'}: {n} change(s)")
        for layer, target in sorted(by_app[app], key=lambda lt: (lt[0].create_rank, lt[1])):
            t = report.targets.get((layer, target))
            mine = changes.get((app, layer, target), 0)
            if t is None:
                continue
            if not mine and t.ok:
                status = "in sync"
            else:
                status = t.outcome.value if (mine or not t.ok) else "in sync"
            err = f"  {t.error}" if t.error and not t.ok else ""
            rb = " rolled-back" if t.rolled_back else ""
            lines.append(f"  {layer.value:<10} {target:<12} {status:<11} {mine:>3} change(s){rb}{err}")
    verdict = "converged" if report.converged else ("dry run" if report.dry_run else "NOT converged")
    lines.append(f"run {report.run_id}: {verdict} in {report.duration_s:.2f}s, {report.attempts} round(s), "
                 f"{report.writes} write(s)")
    return "\n".join(lines)


def _print_target_problems(report) -> None:
    for t in sorted(report.targets.values(), key=lambda t: (t.layer.create_rank, t.target)):
        if not t.ok:
            print(f"{t.layer.value} {t.target}: {t.outcome.value}: {t.error}", file=sys.stderr)


# ---- parser -------------------------------------------------------------------------------
def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--inventory", help="inventory file (default: the one named in reconciler.yaml)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--no-color", action="store_true", help="no ANSI colours (also NO_COLOR=1)")
    p.add_argument("--store", help="store holding IPAM allocations: database URL or SQLite file "
                                   "(env RECONCILER_STORE; default .reconciler/state.db)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="reconciler", description="GitOps reconciler for application networks")
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("plan", help="compile intents and show the changes (offline)")
    p.add_argument("repo", help="intents repo directory")
    _common(p)
    p.add_argument("--observed", metavar="SNAPSHOT.json", help="observed state from a snapshot file")
    p.add_argument("--from", dest="from_rev", metavar="REV", help="plan the effect of a commit range: start")
    p.add_argument("--to", dest="to_rev", metavar="REV", help="end of the commit range (default HEAD)")
    p.add_argument("--prune", action="store_true", help="delete owned resources no intent wants")
    p.set_defaults(func=cmd_plan)

    for name, func, helptext in (("diff", cmd_diff, "observe the devices and show drift per application"),
                                 ("apply", cmd_apply, "converge the devices to the intents")):
        p = sub.add_parser(name, help=helptext)
        p.add_argument("repo", help="intents repo directory")
        _common(p)
        p.add_argument("--observed", metavar="SNAPSHOT.json", help="use a snapshot file instead of devices")
        p.add_argument("--prune", action="store_true", help="delete owned resources no intent wants")
        p.add_argument("--app", action="append", metavar="NAME", help="only this application (repeatable)")
        p.add_argument("--timeout", type=float, default=60.0, help="per-target timeout in seconds")
        p.add_argument("--attempts", type=int, default=3, help="converge attempts (apply + verify)")
        if name == "apply":
            p.add_argument("--dry-run", action="store_true", help="plan against observed state, write nothing")
            p.add_argument("--allow-empty", action="store_true", help="allow --prune with no applications")
            p.add_argument("--confirm-within", type=float, metavar="SECONDS",
                           help="commit-confirm: roll back every layer unless `reconciler confirm TXID` in time")
            p.add_argument("--layer", dest="layers", action="append",
                           choices=["switch", "hypervisor", "host", "sidecar"], help="only this layer (repeatable)")
            # fault-injection tests build drivers with their own factory; not an operator option, so not in --help
            p.add_argument("--driver-factory", metavar="MODULE:FUNC", help=argparse.SUPPRESS)
        p.set_defaults(func=func)

    for modname in CLI_MODULES:
        importlib.import_module(modname).add_cli(sub)
    return parser


def _user_errors() -> tuple[type[BaseException], ...]:
    from reconciler.drivers.registry import DriverLoadError
    from reconciler.intents.validate import UsageError
    from reconciler.ipam.binding import IpamBusy
    from reconciler.revision import RevisionError
    return (RevisionError, UsageError, DriverLoadError, IpamBusy)


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: usage errors are 2
        return int(exc.code or 0)
    if args.verbose:
        logging.getLogger().setLevel(logging.INFO)
    from reconciler.intents.validate import RepoInvalid
    try:
        return int(args.func(args) or 0)
    except RepoInvalid as exc:
        print_invalid(exc)
        return EXIT_ERROR if args.command in ("plan", "diff", "apply") else 1
    except CompileConflicts as exc:
        print("\n".join(exc.lines()), file=sys.stderr)  # at most LIMIT conflicts, then "and N more"
        return EXIT_ERROR
    except (UserError,) + _user_errors() as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        if os.environ.get("RECONCILER_DEBUG"):
            raise
        print(f"internal error: {exc!r} (set RECONCILER_DEBUG=1 for a traceback)", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
