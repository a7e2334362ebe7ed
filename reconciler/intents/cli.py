"""`reconciler validate REPO_DIR [--inventory PATH] [--json] [--store URL]`.

Contract: prints every error of the repo, sorted, one per line as `file:line: path: message`
(or one JSON object with `--json`), and exits 0 when the repo is valid, 1 when it has errors,
2 on a usage error (missing directory, bad arguments) or an internal error. IPAM allocations
to keep are read from the store (`--store`, RECONCILER_STORE, `.reconciler/state.db`; never
written, never created: docs/ipam.md), so validate accepts exactly what apply would. It never prints a
traceback: anything unexpected becomes one line naming the file that was being validated.
Wire it with `add_cli(subparsers)`; `main(argv)` runs it stand-alone (`python -m reconciler.intents.cli`).
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Sequence, TextIO

from reconciler.intents.bounds import total_errors
from reconciler.intents.validate import InternalError, UsageError, check_repo

EXIT_VALID, EXIT_INVALID, EXIT_USAGE = 0, 1, 2


def add_cli(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "validate", help="check an intents repo (schema and semantics) and list all errors",
        description="Check reconciler.yaml, the inventory and every apps/*.yaml of REPO_DIR against the "
                    "JSON Schemas and the cross-application rules. Exit 0 valid, 1 invalid, 2 usage error.")
    p.add_argument("repo_dir", metavar="REPO_DIR", help="intents repo checkout")
    p.add_argument("--inventory", metavar="PATH",
                   help="use this Ansible YAML inventory instead of the one reconciler.yaml names")
    p.add_argument("--json", action="store_true", help="print one JSON object {valid, errors, apps}")
    p.add_argument("--store", help="store holding IPAM allocations to keep: database URL or SQLite file "
                                   "(env RECONCILER_STORE; default .reconciler/state.db; read, never written)")
    p.set_defaults(func=run_validate)
    return p


def run_validate(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    try:
        repo, errors = check_repo(args.repo_dir, args.inventory, previous=_previous(args))
        if args.json:
            doc = {"valid": not errors, "errors": [e.to_json() for e in errors],
                   "apps": sorted(repo.apps) if repo is not None else []}
            out.write(json.dumps(doc, indent=2, ensure_ascii=True) + "\n")
        else:
            for e in errors:
                out.write(f"{e}\n")
            if errors:
                err.write(f"{total_errors(errors)} error(s) in {args.repo_dir}\n")
            elif repo is not None:
                out.write(f"OK: {len(repo.apps)} application(s), {len(repo.inventory.hosts)} inventory host(s)\n")
        return EXIT_INVALID if errors else EXIT_VALID
    except UsageError as e:
        err.write(f"reconciler validate: {e}\n")
        return EXIT_USAGE
    except InternalError as e:
        err.write(f"reconciler validate: {_one_line(str(e))}\n")
        return EXIT_USAGE
    except BrokenPipeError:
        return EXIT_USAGE
    except Exception as e:  # the boundary: never a traceback
        err.write(f"reconciler validate: internal error: {_one_line(f'{type(e).__name__}: {e}')}\n")
        return EXIT_USAGE


def _previous(args: argparse.Namespace) -> Any:
    """IPAM allocations to keep, from the store `apply` and the daemon record them in
    (reconciler.ipam.binding); nothing when there is no store yet."""
    from reconciler.ipam.binding import StoreBinding, default_store_url
    return StoreBinding(default_store_url(getattr(args, "store", None))).previous()


def _one_line(text: str) -> str:
    return text.replace("\r", " ").replace("\n", " ")[:500]


def main(argv: Sequence[str] | None = None, out: TextIO | None = None, err: TextIO | None = None) -> int:
    parser = argparse.ArgumentParser(prog="reconciler")
    sub = parser.add_subparsers(dest="command", required=True)
    add_cli(sub)
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # argparse's usage errors exit 2 after printing usage
        return int(e.code or 0)
    return args.func(args, out, err)


if __name__ == "__main__":
    sys.exit(main())
