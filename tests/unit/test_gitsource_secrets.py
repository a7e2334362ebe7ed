"""The git cache keeps no credentials at rest and is private (reconciler/service/gitsource.py).

Fetches go to a closed loopback port (nothing listens, nothing leaves the host) or to a local
bare repo. That the credentials still reach an HTTP remote is tests/integration/test_gitsource_credentials.py.
"""
from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

from reconciler.service.gitsource import GitSource, SourceError, split_credentials

SECRET = "s3cr3t-T0ken-4417"


@pytest.mark.parametrize("url,stored,user,password", [
    (f"https://{SECRET}@git.example/x.git", "https://git.example/x.git", SECRET, ""),
    (f"https://bot:{SECRET}@git.example:8443/x.git", "https://git.example:8443/x.git", "bot", SECRET),
    ("https://bot:p%40ss@git.example/x.git", "https://git.example/x.git", "bot", "p@ss"),
    (f"ssh://git:{SECRET}@git.example/x.git", "ssh://git@git.example/x.git", None, None),
    ("ssh://git@git.example/x.git", "ssh://git@git.example/x.git", None, None),
    ("git@git.example:x.git", "git@git.example:x.git", None, None),
    ("/srv/git/x.git", "/srv/git/x.git", None, None),
    ("https://git.example/x.git", "https://git.example/x.git", None, None),
])
def test_split_credentials(url: str, stored: str, user: str | None, password: str | None):
    assert split_credentials(url) == (stored, user, password)


def _files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*")]


def _assert_private_and_clean(cache: Path) -> None:
    assert stat.S_IMODE(cache.stat().st_mode) == 0o700
    for p in _files(cache):
        mode = stat.S_IMODE(p.lstat().st_mode)
        if p.is_symlink():
            continue
        # directories 0700; files 0600, or 0400 (git keeps objects read-only)
        assert (mode == 0o700) if p.is_dir() else (mode & 0o077 == 0 and mode & 0o400), (p, oct(mode))
        if p.is_file():
            assert SECRET.encode() not in p.read_bytes(), p


def _closed_port() -> int:
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_a_token_url_leaves_no_secret_in_the_cache(tmp_path: Path):
    cache = tmp_path / "cache"
    src = GitSource(f"https://bot:{SECRET}@127.0.0.1:{_closed_port()}/x.git", "main", cache, timeout_s=10)
    with pytest.raises(SourceError) as exc:
        src.fetch()
    assert SECRET not in str(exc.value) and "***@" in str(exc.value)
    _assert_private_and_clean(cache)
    assert "url = https://127.0.0.1:" in (cache / "config").read_text()


def test_an_older_cache_with_the_token_in_its_config_is_cleaned(tmp_path: Path):
    cache = tmp_path / "cache"
    url = f"https://{SECRET}@127.0.0.1:{_closed_port()}/x.git"
    subprocess.run(["git", "init", "-q", "--bare", str(cache)], check=True)
    subprocess.run(["git", "-C", str(cache), "remote", "add", "origin", url], check=True)
    os.chmod(cache / "config", 0o644)
    os.chmod(cache, 0o755)
    assert SECRET in (cache / "config").read_text()
    with pytest.raises(SourceError):
        GitSource(url, "main", cache, timeout_s=10).fetch()
    _assert_private_and_clean(cache)


def test_a_local_remote_still_fetches_into_a_private_cache(tmp_path: Path):
    work, bare = tmp_path / "work", tmp_path / "origin.git"
    subprocess.run(["git", "init", "-q", "-b", "main", str(work)], check=True)
    (work / "f").write_text("x")
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@x", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@x"}
    subprocess.run(["git", "-C", str(work), "add", "f"], check=True)
    subprocess.run(["git", "-C", str(work), "commit", "-qm", "one"], check=True, env=env)
    subprocess.run(["git", "clone", "-q", "--bare", str(work), str(bare)], check=True)
    head = subprocess.run(["git", "-C", str(work), "rev-parse", "HEAD"], capture_output=True, text=True,
                          check=True).stdout.strip()
    cache = tmp_path / "cache"
    assert GitSource(str(bare), "main", cache).fetch() == head
    _assert_private_and_clean(cache)
