"""The daemon's small HTTP server (stdlib `http.server` in a thread).

Contract:
  POST /hooks/git   body signed with the webhook secret: header `X-Hub-Signature-256:
                    sha256=<hex HMAC-SHA256 of the body>` (GitHub/Gitea style). A good
                    signature triggers a sync at once (202); a bad or missing one is 401 and
                    triggers nothing. With no secret configured the endpoint is disabled (403).
  POST /sync        same signature; a manual sync (allowed inside deny windows) (202). A body
                    `{"app": NAME}` re-applies only that app when no new revision is due.
  GET  /metrics     Prometheus text format.
  GET  /healthz     200 JSON {"ok", "leader", "store", "source", "revision", ...}; 503 if the
                    daemon's loop is not running.
Bodies are limited to 1 MiB; the server never logs request bodies or headers.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

log = logging.getLogger("reconciler.service.http")

MAX_BODY = 1 << 20


def sign(secret: bytes, body: bytes) -> str:
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def verify(secret: bytes | None, body: bytes, header: str | None) -> bool:
    if not secret or not header:
        return False
    return hmac.compare_digest(sign(secret, body), header.strip())


class HttpServer:
    def __init__(self, host: str, port: int, *, secret: bytes | None, on_sync: Callable[[str, bool, dict], None],
                 metrics: Callable[[], bytes], health: Callable[[], dict[str, Any]]) -> None:
        self.secret = secret
        outer = self

        class Handler(BaseHTTPRequestHandler):
            server_version = "netintent-reconciler"

            def log_message(self, fmt: str, *args: Any) -> None:  # no request lines with query strings
                log.debug("http %s %s", self.command, self.path.split("?")[0])

            def _send(self, code: int, body: bytes, ctype: str = "application/json") -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _json(self, code: int, obj: Any) -> None:
                self._send(code, (json.dumps(obj) + "\n").encode())

            def do_GET(self) -> None:  # noqa: N802
                path = self.path.split("?")[0]
                if path == "/metrics":
                    self._send(200, metrics(), "text/plain; version=0.0.4; charset=utf-8")
                elif path == "/healthz":
                    h = health()
                    self._json(200 if h.get("ok") else 503, h)
                else:
                    self._json(404, {"error": "not found"})

            def do_POST(self) -> None:  # noqa: N802
                path = self.path.split("?")[0]
                if path not in ("/hooks/git", "/sync"):
                    self._json(404, {"error": "not found"})
                    return
                try:
                    n = int(self.headers.get("Content-Length") or 0)
                except ValueError:
                    n = -1
                if n < 0 or n > MAX_BODY:
                    self._json(413, {"error": "body too large"})
                    return
                body = self.rfile.read(n) if n else b""
                if not outer.secret:
                    self._json(403, {"error": "webhook disabled: no secret configured (--webhook-secret-file)"})
                    return
                if not verify(outer.secret, body, self.headers.get("X-Hub-Signature-256")):
                    log.warning("http: %s with a bad or missing signature refused", path)
                    self._json(401, {"error": "bad signature"})
                    return
                try:
                    payload = json.loads(body or b"{}")
                    if not isinstance(payload, dict):
                        payload = {}
                except ValueError:
                    payload = {}
                manual = path == "/sync"
                on_sync("manual" if manual else "webhook", manual, payload)
                self._json(202, {"accepted": True})

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> tuple[str, int]:
        return self._server.server_address[:2]  # type: ignore[return-value]

    def start(self) -> None:
        self._thread = threading.Thread(target=self._server.serve_forever, name="reconciler-http", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
