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
- Credentials never rest in the cache: the remote is stored without the URL's password (and,
  for http(s), without its user, which often is the token); each fetch hands them to git
  through a credential helper defined in the environment of that git process only (readable
  by the same user alone), scoped to the remote's scheme://host, with every other configured
  helper (e.g. `store`, which would write them to ~/.git-credentials) switched off. A cache
  written by an older version with a token in its config is rewritten on the next fetch. The
  cache is created private: directory 0700, files 0600 (`core.sharedRepository=0600`).
"""
from __future__ import annotations

import os
import re
import shutil
import stat
import threading
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

import git

_USERINFO = re.compile(r"(?<=://)[^/@\s]+@")


class SourceError(Exception):
    pass


def mask_url(url: str) -> str:
    return _USERINFO.sub("***@", url)


def split_credentials(url: str) -> tuple[str, str | None, str | None]:
    """`(url to store, user, password)`: http(s) URLs lose their user and password (a token is
    often the user), other URLs only their password (an ssh user is not a secret, and ssh
    never reads a password from the URL). Paths and scp-like `git@host:repo` stay as they are."""
    if "://" not in url:
        return url, None, None
    p = urlsplit(url)
    userinfo, at, hostport = p.netloc.rpartition("@")
    if not at:
        return url, None, None
    user, colon, password = userinfo.partition(":")
    if p.scheme in ("http", "https"):
        stored = urlunsplit((p.scheme, hostport, p.path, p.query, p.fragment))
        return stored, unquote(user), unquote(password) if colon else ""
    if colon:
        return urlunsplit((p.scheme, f"{user}@{hostport}", p.path, p.query, p.fragment)), None, None
    return url, None, None


# Reads the secrets from its own environment (never from its command line or a file); git
# asks it with `get`, and tells it `store`/`erase` afterwards, which it ignores.
_HELPER = ('!f() { test "$1" = get || exit 0; '
           'printf "username=%s\\npassword=%s\\n" "$NI_GIT_USER" "$NI_GIT_PASSWORD"; }; f')


def _credential_env(url: str, user: str | None, password: str | None) -> dict[str, str]:
    if user is None:
        return {}
    p = urlsplit(url)
    return {"GIT_CONFIG_COUNT": "2",
            "GIT_CONFIG_KEY_0": "credential.helper", "GIT_CONFIG_VALUE_0": "",   # no other helper sees them
            "GIT_CONFIG_KEY_1": f"credential.{p.scheme}://{p.netloc}.helper", "GIT_CONFIG_VALUE_1": _HELPER,
            "NI_GIT_USER": user, "NI_GIT_PASSWORD": password or ""}


def _private_top_files(cache: Path) -> None:
    for p in cache.iterdir():
        if p.is_file() and not p.is_symlink() and stat.S_IMODE(p.stat().st_mode) != 0o600:
            os.chmod(p, 0o600)


def _make_private(cache: Path, always: bool = False) -> None:
    """Directories 0700 and files 0600. Walks the cache when its top directory is not private
    yet (a cache of an older version), or `always` (just created)."""
    if not always and stat.S_IMODE(cache.stat().st_mode) == 0o700:
        return
    for dirpath, dirnames, filenames in os.walk(cache):  # bounded by the cache's files
        os.chmod(dirpath, 0o700)
        for f in filenames:
            p = os.path.join(dirpath, f)
            if not os.path.islink(p):
                os.chmod(p, 0o600)


class GitSource:
    def __init__(self, url: str, branch: str = "main", cache_dir: str | os.PathLike = ".reconciler-cache",
                 timeout_s: float = 60.0) -> None:
        if "://" not in url and not url.startswith("git@") and Path(url).exists():
            url = str(Path(url).resolve())
        if not re.fullmatch(r"[A-Za-z0-9._/-]{1,200}", branch) or branch.startswith("-") or ".." in branch:
            raise SourceError(f"invalid branch name {branch!r}")
        self.url = url    # as given (masked wherever shown); the cache only ever sees remote_url
        self.remote_url, user, password = split_credentials(url)
        self.branch = branch
        self.cache = Path(cache_dir)
        self.timeout_s = timeout_s
        self.head: str = ""
        self._lock = threading.Lock()
        self._env = {"GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "/bin/true", "SSH_ASKPASS": "/bin/true",
                     **_credential_env(self.remote_url, user, password)}

    @property
    def repo_dir(self) -> str:
        return str(self.cache)

    @property
    def ref(self) -> str:
        return f"refs/remotes/origin/{self.branch}"

    def _repo(self) -> git.Repo:
        if (self.cache / "HEAD").exists():
            _make_private(self.cache)
            return git.Repo(self.cache)
        if self.cache.exists() and any(self.cache.iterdir()):
            raise SourceError(f"{self.cache}: exists and is not a git cache; remove it or choose another --cache")
        self.cache.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.cache, 0o700)
        r = git.Repo.init(self.cache, bare=True, shared="0600")
        r.create_remote("origin", self.remote_url)
        _make_private(self.cache, always=True)
        return r

    def fetch(self) -> str:
        """Fetch the branch; return its newest commit sha (raises SourceError)."""
        with self._lock:
            try:
                repo = self._repo()
                with repo.git.custom_environment(**self._env):
                    if repo.remotes.origin.url != self.remote_url:  # also drops a token an older cache kept
                        repo.git.remote("set-url", "origin", self.remote_url)
                    try:
                        repo.git.fetch("--prune", "--no-tags", "origin",
                                       f"+refs/heads/{self.branch}:{self.ref}", kill_after_timeout=self.timeout_s)
                    finally:  # git writes FETCH_HEAD with the umask's mode, whatever core.sharedRepository says
                        _private_top_files(self.cache)
                self.head = repo.commit(self.ref).hexsha
                return self.head
            except git.GitCommandError as exc:
                err = " ".join((exc.stderr or str(exc)).split())
                raise SourceError(f"cannot fetch {mask_url(self.url)} branch {self.branch}: "
                                  f"{mask_url(err)[:300]}") from None
            except (git.BadName, ValueError) as exc:
                raise SourceError(f"{mask_url(self.url)}: branch {self.branch} not found: "
                                  f"{exc.__class__.__name__}") from None
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
            raise SourceError(f"revision {rev!r} not found in {mask_url(self.url)} "
                              f"(fetched branch {self.branch})") from None

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
