"""Read intents out of Git objects, and plan the effect of a commit range.

Contract: `tree_files(repo_dir, rev)` returns `{posix path: bytes | Symlink}` for the tree
of `rev` without touching the work tree (blobs read from the object store; symlinks kept
as `Symlink` so the loader can refuse ones that leave the repo). `plan_range` compiles the
intents at both revisions and returns the plan that turns the first into the second, with
deletes (prune=True), so a reviewer sees per application and target what a merge does.
No device is touched.
"""
from __future__ import annotations

from pathlib import Path

import git

from .compile import Compiler
from .loader import Symlink
from .plan import Plan, make_plan


class RevisionError(Exception):
    pass


def resolve(repo_dir: str | Path, rev: str) -> str:
    try:
        return git.Repo(repo_dir).commit(rev).hexsha
    except (git.BadName, ValueError, git.InvalidGitRepositoryError, git.NoSuchPathError) as exc:
        raise RevisionError(f"{repo_dir}: cannot resolve revision {rev!r}: {exc.__class__.__name__}") from None


def tree_files(repo_dir: str | Path, rev: str) -> dict[str, bytes | Symlink]:
    try:
        commit = git.Repo(repo_dir).commit(rev)
    except (git.BadName, ValueError, git.InvalidGitRepositoryError, git.NoSuchPathError) as exc:
        raise RevisionError(f"{repo_dir}: cannot resolve revision {rev!r}: {exc.__class__.__name__}") from None
    out: dict[str, bytes | Symlink] = {}
    for item in commit.tree.traverse():
        if item.type != "blob":
            continue
        data = item.data_stream.read()
        if item.mode == 0o120000:
            out[item.path] = Symlink(data.decode("utf-8", "replace"))
        else:
            out[item.path] = data
    return out


def load_revision(repo_dir: str | Path, rev: str, inventory: str | None = None):
    from .validate import load_tree
    sha = resolve(repo_dir, rev)
    return load_tree(tree_files(repo_dir, sha), inventory_override=inventory, revision=sha)


def plan_range(repo_dir: str | Path, from_rev: str, to_rev: str, inventory: str | None = None) -> Plan:
    before = load_revision(repo_dir, from_rev, inventory)
    after = load_revision(repo_dir, to_rev, inventory)
    compiler = Compiler()
    old = compiler.compile(before)
    new = compiler.compile(after)
    return make_plan(new, old, prune=True, ignore=after.config.ignore)
