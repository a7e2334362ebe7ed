"""Git source: a bare cache of the intents repo, fetched by URL or path and branch.

Contract:
- `GitSource(url, branch, cache_dir)`; `fetch()` clones on first use (bare, into
  `cache_dir`), then fetches the branch and returns the newest commit sha of it. A burst of
  pushes between two fetches is coalesced by construction: only the newest head is seen.
- Failures (unreachable remote, missing branch, timeout) raise `SourceError` with a one-line
  message in which any credentials of the URL are masked; git never prompts
  (GIT_TERMINAL_PROMPT=0) and every git call is bounded by `timeout_s`.
- `repo_dir` is the bare cache; `gitrange.tree_files(source.repo_dir, sha)` reads a revision
  out of it without a work tree. `contains(sha)` / `is_ancestor(a, b)` answer history questions.
"""
from __future__ import annotations

import os
import re
import shutil
import threading
from pathlib import Path

import git

_USERINFO = re.compile(r"(?<=://)[^/@\s]+@")


class SourceError(Exception):
    pass


def mask_url(url: str) -> str:
    return _USERINFO.sub("***@", url)


class GitSource:
    def __init__(self, url: str, branch: str = "main", cache_dir: str | os.PathLike = ".reconciler-cache",
                 timeout_s: float = 60.0) -> None:
        if "://" not in url and not url.startswith("git@") and Path(url).exists():
            url = str(Path(url).resolve())
        if not re.fullmatch(r"[A-Za-z0-9._/-]{1,200}", branch) or branch.startswith("-") or ".." in branch:
            raise SourceError(f"invalid branch name {branch!r}")
        self.url = url
        self.branch = branch
        self.cache = Path(cache_dir)
        self.timeout_s = timeout_s
        self.head: str = ""
        self._lock = threading.Lock()
        self._env = {"GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "/bin/true", "SSH_ASKPASS": "/bin/true"}

    @property
    def repo_dir(self) -> str:
        return str(self.cache)

    @property
    def ref(self) -> str:
        return f"refs/remotes/origin/{self.branch}"

    def _repo(self) -> git.Repo:
        if (self.cache / "HEAD").exists():
            return git.Repo(self.cache)
        if self.cache.exists() and any(self.cache.iterdir()):
            raise SourceError(f"{self.cache}: exists and is not a git cache; remove it or choose another --cache")
        self.cache.mkdir(parents=True, exist_ok=True)
        r = git.Repo.init(self.cache, bare=True)
        r.create_remote("origin", self.url)
        return r

    def fetch(self) -> str:
        """Fetch the branch; return its newest commit sha (raises SourceError)."""
        with self._lock:
            try:
                repo = self._repo()
                with repo.git.custom_environment(**self._env):
                    if repo.remotes.origin.url != self.url:
                        repo.git.remote("set-url", "origin", self.url)
                    repo.git.fetch("--prune", "--no-tags", "origin",
                                   f"+refs/heads/{self.branch}:{self.ref}", kill_after_timeout=self.timeout_s)
                self.head = repo.commit(self.ref).hexsha
                return self.head
            except git.GitCommandError as exc:
                err = " ".join((exc.stderr or str(exc)).split())
                raise SourceError(f"cannot fetch {mask_url(self.url)} branch {self.branch}: "
                                  f"{mask_url(err)[:300]}") from None
            except (git.BadName, ValueError) as exc:
                raise SourceError(f"{mask_url(self.url)}: branch {self.branch} not found: {exc.__class__.__name__}") from None
            except OSError as exc:
                raise SourceError(f"{self.cache}: {exc.strerror or exc}") from None

    def contains(self, sha: str) -> bool:
        try:
            git.Repo(self.cache).commit(sha)
            return True
        except Exception:
            return False

    def resolve(self, rev: str) -> str:
        """A revision name or sha of the cache (short sha, tag-like names) -> full sha."""
        if not re.fullmatch(r"[A-Za-z0-9._/~^-]{1,200}", rev) or rev.startswith("-"):
            raise SourceError(f"invalid revision {rev!r}")
        try:
            return git.Repo(self.cache).commit(rev).hexsha
        except Exception:
            raise SourceError(f"revision {rev!r} not found in {mask_url(self.url)} (fetched branch {self.branch})") from None

    def is_ancestor(self, older: str, newer: str) -> bool:
        try:
            git.Repo(self.cache).git.merge_base("--is-ancestor", older, newer)
            return True
        except git.GitCommandError:
            return False

    def commit_info(self, sha: str) -> dict:
        c = git.Repo(self.cache).commit(sha)
        return {"sha": c.hexsha, "summary": c.summary[:200], "author": c.author.name, "time": c.committed_date}

    def clear(self) -> None:
        shutil.rmtree(self.cache, ignore_errors=True)
