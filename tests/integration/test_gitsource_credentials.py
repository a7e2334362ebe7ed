"""A token in the remote URL still authenticates, though the cache no longer stores it.

A loopback HTTP server runs `git http-backend` behind HTTP basic auth (binds a port: run
under the shared lock). The user's global git config names the `store` credential helper,
which would write the token to ~/.git-credentials: GitSource switches it off.
"""
from __future__ import annotations

import base64
import os
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from reconciler.service.gitsource import GitSource, SourceError

SECRET = "s3cr3t-T0ken-9921"


def _git(*args: str, cwd: Path | None = None) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@x", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@x"}
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout.strip()


def _server(root: Path, seen: list[str]) -> ThreadingHTTPServer:
    want = "Basic " + base64.b64encode(f"bot:{SECRET}".encode()).decode()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *a: object) -> None:
            pass

        def do_GET(self) -> None:
            self._cgi()

        def do_POST(self) -> None:
            self._cgi()

        def _cgi(self) -> None:
            auth = self.headers.get("Authorization") or ""
            seen.append(auth)
            if auth != want:
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Basic realm="git"')
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            path, _, query = self.path.partition("?")
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            env = {"GIT_PROJECT_ROOT": str(root), "GIT_HTTP_EXPORT_ALL": "1", "PATH_INFO": path, "QUERY_STRING": query,
                   "REQUEST_METHOD": self.command, "CONTENT_TYPE": self.headers.get("Content-Type") or "",
                   "REMOTE_USER": "bot", "PATH": os.environ["PATH"]}
            out = subprocess.run(["git", "http-backend"], input=body, env=env, capture_output=True, timeout=30).stdout
            head, _, payload = out.partition(b"\r\n\r\n")
            status, headers = 200, []
            for line in head.decode().split("\r\n"):
                k, _, v = line.partition(":")
                if k.lower() == "status":
                    status = int(v.split()[0])
                elif k:
                    headers.append((k, v.strip()))
            self.send_response(status)
            for k, v in headers:
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    return ThreadingHTTPServer(("127.0.0.1", 0), Handler)


@pytest.fixture
def remote(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    (home / ".gitconfig").write_text("[credential]\n\thelper = store\n")
    work, root = tmp_path / "work", tmp_path / "srv"
    _git("init", "-q", "-b", "main", str(work))
    (work / "f").write_text("x")
    _git("add", "f", cwd=work)
    _git("commit", "-qm", "one", cwd=work)
    _git("clone", "-q", "--bare", str(work), str(root / "origin.git"))
    seen: list[str] = []
    srv = _server(root, seen)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        yield f"127.0.0.1:{srv.server_address[1]}", _git("rev-parse", "HEAD", cwd=work), home, seen
    finally:
        srv.shutdown()
        srv.server_close()
        t.join(timeout=10)


def test_the_token_authenticates_and_is_kept_nowhere(remote, tmp_path: Path):
    hostport, head, home, seen = remote
    cache = tmp_path / "cache"
    src = GitSource(f"http://bot:{SECRET}@{hostport}/origin.git", "main", cache, timeout_s=30)
    assert src.fetch() == head
    assert src.fetch() == head       # again, from the cache's stored (token-free) remote
    assert any(s.startswith("Basic ") for s in seen)
    for p in cache.rglob("*"):
        if p.is_file():
            assert SECRET.encode() not in p.read_bytes(), p
    assert not (home / ".git-credentials").exists(), "the store helper kept the token"


def test_without_or_with_a_wrong_token_the_fetch_is_refused(remote, tmp_path: Path):
    hostport, _, _, _ = remote
    for i, url in enumerate((f"http://{hostport}/origin.git", f"http://bot:wrong@{hostport}/origin.git")):
        with pytest.raises(SourceError) as exc:
            GitSource(url, "main", tmp_path / f"cache{i}", timeout_s=30).fetch()
        assert "wrong" not in str(exc.value)
