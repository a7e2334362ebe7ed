"""Loading an intents repo for a command: validated, with IPAM allocations from the store.

Contract: `load(repo_dir, inventory, store=, record=)` returns the validated `IntentRepo` or
raises `RepoInvalid` (each error names its file and line; `print_invalid` prints them) or
`UserError` (one line the user can act on). Every command (plan, diff, apply, verify, report,
telemetry, txn recovery) loads through here, so they all see the same repo and allocations.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


class UserError(Exception):
    """An error the user can fix; printed as one line, exit 2."""


def load(repo_dir: str, inventory: str | None = None, *, store: str | None = None, record: bool = False):
    """Load and validate an intents repo or raise RepoInvalid (printed by the caller). IPAM
    allocations come from the store (`store`, else RECONCILER_STORE, else the default) and are
    recorded there when `record` (apply), through reconciler.ipam.binding like the daemon."""
    from reconciler.intents.validate import load_repo
    from reconciler.ipam.binding import StoreBinding, default_store_url, load_with_ipam
    if not Path(repo_dir).is_dir():
        raise UserError(f"{repo_dir}: not a directory")
    binding = StoreBinding(default_store_url(store), record=record)
    return load_with_ipam(lambda previous: load_repo(repo_dir, inventory_override=inventory, previous=previous),
                          binding, head_revision(repo_dir))


def print_invalid(exc: Exception) -> None:
    """Every validation error of `exc` (RepoInvalid), one per line, then their count, on stderr."""
    errors = getattr(exc, "errors", [exc])
    for e in errors:
        print(str(e), file=sys.stderr)
    print(f"{len(errors)} error(s); nothing was planned or applied.", file=sys.stderr)


def inventory_path(args: argparse.Namespace, repo) -> str:
    """The inventory file a command uses: --inventory, else the one reconciler.yaml names."""
    if args.inventory:
        return str(Path(args.inventory).resolve())
    return str((Path(args.repo) / repo.config.inventory).resolve())


def head_revision(repo_dir: str) -> str:
    """The commit checked out in `repo_dir`, or "" when it is not a Git work tree."""
    try:
        import git
        return git.Repo(repo_dir, search_parent_directories=False).head.commit.hexsha
    except Exception:
        return ""
