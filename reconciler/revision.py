"""The ONE load-validate-compile of a git revision of the intents repo.

Contract (no device is touched; the work tree is never read):
- `tree_files(repo_dir, rev)` returns `{posix path: bytes | Symlink}` for the tree of `rev`
  (blobs read from the object store, so it works inside git's push quarantine; symlinks kept
  as `Symlink` so the loader can refuse ones that leave the repo).
- `load_revision(repo_dir, rev, inventory=, keyring=, compiler=)` resolves `rev`, checks the
  signature when a keyring is given, validates and compiles: a `CompiledRevision`, or one of
  `RevisionError` (no such revision), `RevisionRefused` (unsigned), `RepoInvalid` (bad
  intents, with file:line) or `CompileConflicts`.
- `refusal_lines(exc)` turns those refusals into the printable lines that the daemon
  records and the pre-receive hook prints; `check_revision` is load_revision -> lines.
- `plan_range(repo_dir, from, to)` is the plan that turns the first revision into the
  second, with deletes (prune=True), so a reviewer sees per app and target what a merge does;
  `preview_range` also returns the IPAM allocations the merge would make.
- IPAM: `load_revision(..., ipam=binding)` loads through reconciler.ipam.binding (previous
  allocations from the store; recorded by compare-and-swap when the binding records). Without
  a binding nothing was allocated before (the pre-receive hook's view).
The daemon, the git hooks and `plan --from/--to` all go through here.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import git

from reconciler.compile import CompileConflicts, Compiler
from reconciler.intents.models import IntentRepo
from reconciler.intents.sources import Symlink
from reconciler.intents.validate import RepoInvalid, load_tree
from reconciler.ipam.binding import Binding, FixedBinding, load_with_ipam
from reconciler.ipam.model import IpamResult
from reconciler.model import DesiredState
from reconciler.plan import Plan, make_plan


class RevisionError(Exception):
    """The revision cannot be read (unknown name, not a git repository)."""


class RevisionRefused(Exception):
    """The revision is readable but must not be applied (e.g. not signed by an allowed key)."""

    def __init__(self, errors: list[str]):
        super().__init__("; ".join(errors))
        self.errors = errors


@dataclass(frozen=True)
class CompiledRevision:
    revision: str
    files: Mapping[str, "bytes | Symlink"]
    repo: IntentRepo
    desired: DesiredState


def _commit(repo_dir: str | os.PathLike, rev: str) -> "git.Commit":
    try:
        return git.Repo(repo_dir).commit(rev)
    except (git.BadName, ValueError, git.InvalidGitRepositoryError, git.NoSuchPathError) as exc:
        raise RevisionError(f"{repo_dir}: cannot resolve revision {rev!r}: {exc.__class__.__name__}") from None


def resolve(repo_dir: str | os.PathLike, rev: str) -> str:
    return _commit(repo_dir, rev).hexsha


def tree_files(repo_dir: str | os.PathLike, rev: str) -> dict[str, bytes | Symlink]:
    out: dict[str, bytes | Symlink] = {}
    for item in _commit(repo_dir, rev).tree.traverse():
        if not isinstance(item, git.Blob):
            continue
        data = item.data_stream.read()
        if item.mode == 0o120000:
            out[str(item.path)] = Symlink(data.decode("utf-8", "replace"))
        else:
            out[str(item.path)] = data
    return out


def load_revision(repo_dir: str | os.PathLike, rev: str, inventory: str | None = None, *, keyring: str | None = None,
                  compiler: Compiler | None = None, ipam: Binding | None = None) -> CompiledRevision:
    sha = resolve(repo_dir, rev)
    if keyring:
        ok, why = verify_signature(repo_dir, sha, keyring)
        if not ok:
            raise RevisionRefused([f"{sha[:12]}: {why}"])
    files = tree_files(repo_dir, sha)
    repo = load_with_ipam(lambda previous: load_tree(files, inventory_override=inventory, revision=sha,
                                                     previous=previous), ipam, sha)
    desired = (compiler or Compiler()).compile(repo)
    return CompiledRevision(sha, files, repo, desired)


def refusal_lines(exc: Exception) -> list[str]:
    """Printable lines for a refused revision (`file:line: path: message`, `conflict: ...`)."""
    if isinstance(exc, RepoInvalid):
        return [str(e) for e in exc.errors]
    if isinstance(exc, CompileConflicts):
        return exc.lines()   # at most 100, then "and N more"
    if isinstance(exc, RevisionRefused):
        return list(exc.errors)
    return [str(exc)]


REFUSALS = (RepoInvalid, CompileConflicts, RevisionRefused)


def check_revision(repo_dir: str | os.PathLike, sha: str, inventory: str | None = None) -> list[str]:
    """The daemon's checks for one revision: errors as printable lines (empty = valid)."""
    try:
        load_revision(repo_dir, sha, inventory)
    except REFUSALS as exc:
        return refusal_lines(exc) or [f"{sha[:12]}: invalid intents"]
    return []


def verify_signature(git_dir: str | os.PathLike, sha: str, keyring: str) -> tuple[bool, str]:
    """Is `sha` signed by a key of `keyring` (exported public keys, armored or binary)?"""
    gpg = shutil.which("gpg")
    if not gpg:
        return False, "signed-commit policy needs gpg, which is not installed (apt package gnupg)"
    if not Path(keyring).is_file():
        return False, f"{keyring}: keyring file not found"
    with tempfile.TemporaryDirectory(prefix="netintent-gpg-") as home:
        os.chmod(home, 0o700)
        env = {**os.environ, "GNUPGHOME": home}
        imp = subprocess.run([gpg, "--batch", "--quiet", "--import", str(keyring)], env=env,
                             capture_output=True, text=True, timeout=30)
        if imp.returncode != 0:
            return False, f"{keyring}: cannot import keyring: {imp.stderr.strip()[:200]}"
        res = subprocess.run(["git", "-C", str(git_dir), "-c", f"gpg.program={gpg}", "verify-commit", "--raw", sha],
                             env=env, capture_output=True, text=True, timeout=30)
        subprocess.run(["gpgconf", "--kill", "all"], env=env, capture_output=True, timeout=10) \
            if shutil.which("gpgconf") else None
        if res.returncode == 0 and "[GNUPG:] GOODSIG" in res.stderr:
            return True, ""
        if "NO_PUBKEY" in res.stderr or "ERRSIG" in res.stderr:
            return False, "commit is signed by a key that is not in the allowed keyring"
        if "BADSIG" in res.stderr:
            return False, "commit signature is BAD"
        return False, "commit is not signed (policy requires a signature by a key in the allowed keyring)"


def plan_range(repo_dir: str | Path, from_rev: str, to_rev: str, inventory: str | None = None) -> Plan:
    return preview_range(repo_dir, from_rev, to_rev, inventory)[0]


def preview_range(repo_dir: str | Path, from_rev: str, to_rev: str, inventory: str | None = None,
                  ipam: Binding | None = None) -> tuple[Plan, IpamResult | None]:
    """The plan of a merge and the allocations it makes: `from` is loaded with the store's
    allocations (`ipam`, read only), `to` with the ones `from` ends up with."""
    compiler = Compiler()
    before = load_revision(repo_dir, from_rev, inventory, compiler=compiler, ipam=ipam)
    kept = before.repo.allocations.allocations if isinstance(before.repo.allocations, IpamResult) else None
    after = load_revision(repo_dir, to_rev, inventory, compiler=compiler,
                          ipam=FixedBinding(kept) if kept is not None else None)
    plan = make_plan(after.desired, before.desired, prune=True, ignore=after.repo.config.ignore)
    result = after.repo.allocations
    return plan, result if isinstance(result, IpamResult) else None
