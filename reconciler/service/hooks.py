"""Server-side git hooks for the intents repo: validate before accepting, notify after.

Contract:
- `install(bare_repo, ...)` writes `hooks/pre-receive`, `hooks/post-receive` (small sh
  scripts that exec `python -m reconciler.service.hooks <hook>`) and `hooks/netintent-hooks.json`
  (settings: branch, webhook URL, secret file path, keyring, inventory override). It
  refuses to overwrite hooks that are not ours unless `force`.
- pre-receive: for every pushed branch (or only the configured one), the pushed revision is
  read out of git objects (`intents.revision`, works inside git's push quarantine),
  validated and compiled exactly as the daemon does; any error rejects the whole push and
  prints `file:line: path: message` lines. With a keyring, every new commit must carry a
  good signature by a key of that keyring (`git verify-commit` against a private GNUPGHOME
  holding only those keys); without gpg installed that is a clear error, never a pass.
- post-receive: POSTs `{"ref", "before", "after"}` to the daemon's `/hooks/git`, signed with
  the secret as `reconciler.service.http.signed_request` does (timestamp, random delivery id,
  method and path bound; good once, within 5 minutes); a daemon that is down never fails the push.
"""
from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any, Sequence

CONFIG = "netintent-hooks.json"
MARK = "# netintent-reconciler hook"
ZERO = "0" * 40


class HookError(Exception):
    pass


def __getattr__(name: str) -> Any:
    """`check_revision` and `verify_signature` stay importable from here, loaded on first use."""
    if name in ("check_revision", "verify_signature"):
        import reconciler.revision
        return getattr(reconciler.revision, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def install(bare_repo: str | os.PathLike, *, webhook: str | None = None, secret_file: str | None = None,
            branch: str | None = None, keyring: str | None = None, inventory: str | None = None,
            force: bool = False, python: str = sys.executable) -> list[Path]:
    repo = Path(bare_repo)
    hooks = repo / "hooks"
    if not (repo / "HEAD").is_file() or not (repo / "objects").is_dir():
        raise HookError(f"{repo}: not a bare git repository (no HEAD/objects)")
    if keyring and not shutil.which("gpg"):
        raise HookError("signed-commit policy needs gpg, which is not installed (apt package gnupg)")
    if keyring and not Path(keyring).is_file():
        raise HookError(f"{keyring}: keyring file not found")
    if secret_file and not Path(secret_file).is_file():
        raise HookError(f"{secret_file}: webhook secret file not found")
    hooks.mkdir(exist_ok=True)
    written = []
    for name in ("pre-receive", "post-receive"):
        p = hooks / name
        if p.exists() and MARK not in p.read_text(errors="replace") and not force:
            raise HookError(f"{p}: a hook that is not ours exists; use --force to replace it")
    cfg = {"branch": branch, "webhook": webhook,
           "secret_file": str(Path(secret_file).resolve()) if secret_file else None,
           "keyring": str(Path(keyring).resolve()) if keyring else None,
           "inventory": str(Path(inventory).resolve()) if inventory else None}
    (hooks / CONFIG).write_text(json.dumps(cfg, indent=2) + "\n")
    written.append(hooks / CONFIG)
    for name in ("pre-receive", "post-receive"):
        p = hooks / name
        p.write_text(f"#!/bin/sh\n{MARK}\nexec {shlex.quote(python)} -m reconciler.service.hooks {name}\n")
        p.chmod(0o755)
        written.append(p)
    return written


def _config(git_dir: Path) -> dict[str, Any]:
    p = git_dir / "hooks" / CONFIG
    return json.loads(p.read_text()) if p.is_file() else {}


def _git_dir() -> Path:
    out = subprocess.run(["git", "rev-parse", "--absolute-git-dir"], capture_output=True, text=True, timeout=30)
    return Path(out.stdout.strip() or os.environ.get("GIT_DIR", "."))


def _updates(lines: Sequence[str], branch: str | None) -> list[tuple[str, str, str]]:
    out = []
    for line in lines:
        parts = line.split()
        if len(parts) != 3:
            continue
        old, new, ref = parts
        if new == ZERO or not ref.startswith("refs/heads/"):
            continue  # deletions and tags are not intents
        if branch and ref != f"refs/heads/{branch}":
            continue
        out.append((old, new, ref))
    return out


def pre_receive(stdin_lines: Sequence[str], git_dir: Path | None = None) -> int:
    # imported here, not at the top: post-receive must not pay ~1 s of imports (load, compile,
    # IPAM) before it notifies the daemon; that time is on every push's way to the network
    from reconciler.revision import check_revision, verify_signature
    git_dir = git_dir or _git_dir()
    cfg = _config(git_dir)
    rc = 0
    for old, new, ref in _updates(stdin_lines, cfg.get("branch")):
        problems: list[str] = []
        if cfg.get("keyring"):
            rng = [new, "--not", "--all"] if old == ZERO else [f"{old}..{new}"]
            revs = subprocess.run(["git", "rev-list", *rng], cwd=git_dir, capture_output=True, text=True,
                                  timeout=60).stdout.split()
            for c in revs[:1000]:
                ok, why = verify_signature(git_dir, c, cfg["keyring"])
                if not ok:
                    problems.append(f"{c[:12]}: {why}")
        try:
            problems.extend(check_revision(git_dir, new, cfg.get("inventory")))
        except Exception as exc:  # never let a bug accept a push silently
            problems.append(f"{new[:12]}: cannot check revision: {exc.__class__.__name__}: {exc}")
        if problems:
            rc = 1
            print(f"netintent: push to {ref} rejected: {len(problems)} error(s) in {new[:12]}", file=sys.stderr)
            for p in problems:
                print(f"  {p}", file=sys.stderr)
    return rc


def post_receive(stdin_lines: Sequence[str], git_dir: Path | None = None) -> int:
    from reconciler.service.http import signed_request
    git_dir = git_dir or _git_dir()
    cfg = _config(git_dir)
    url = cfg.get("webhook")
    if not url:
        return 0
    secret = Path(cfg["secret_file"]).read_bytes().strip() if cfg.get("secret_file") else b""
    for old, new, ref in _updates(stdin_lines, cfg.get("branch")):
        req = signed_request(url, secret, json.dumps({"ref": ref, "before": old, "after": new}).encode())
        try:
            with urllib.request.urlopen(req, timeout=3) as resp:
                print(f"netintent: daemon notified ({resp.status})", file=sys.stderr)
        except Exception as exc:
            print(f"netintent: daemon not notified ({exc.__class__.__name__}); it will find the commit "
                  "at its next poll", file=sys.stderr)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in ("pre-receive", "post-receive"):
        print("usage: python -m reconciler.service.hooks pre-receive|post-receive", file=sys.stderr)
        return 2
    lines = sys.stdin.read().splitlines()
    return (pre_receive if argv[0] == "pre-receive" else post_receive)(lines)


if __name__ == "__main__":
    sys.exit(main())
