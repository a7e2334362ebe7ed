"""The daemon's small HTTP server (stdlib `http.server` in threads) and the request signing it checks.

Contract:
  POST /hooks/git   a signed request (below) triggers a sync at once (202).
  POST /sync        a signed request asks for a manual sync (allowed inside deny windows) (202).
                    A body `{"app": NAME}` re-applies only that app when no new revision is due.
  GET  /metrics     Prometheus text format.
  GET  /healthz     200 JSON {"ok", "leader", "store", "source", "revision", ...}; 503 if the
                    daemon's loop is not running.
  GET  /report      the compliance report from the store (`?format=json|csv|html&app=NAME&since=DATE`,
                    see reconciler/compliance/serve.py), signed like the POSTs with the raw query string
                    in place of the body (`signed_get`), so a signature covers exactly one query.
Signed requests bind time, identity and endpoint, so a captured request is worth nothing later:
  X-Netintent-Timestamp: <unix seconds>      X-Netintent-Delivery: <random id, 16-64 of [A-Za-z0-9_-]>
  X-Netintent-Signature: v1=<hex HMAC-SHA256(key, "METHOD\\nPATH\\nTS\\nDELIVERY\\n" + body)>
  key = HMAC-SHA256(secret, "netintent/v1/" + PATH without its leading "/"): one key per endpoint,
  so a webhook signature is never valid for /sync. `signed_request` builds such a request.
  A timestamp more than `WINDOW_S` (5 min) away from the daemon's clock, or a delivery id already
  accepted inside that window, is refused (401); the ids are kept in a bounded cache that refuses
  (429) rather than forgets while full. A GitHub-style `X-Hub-Signature-256` (body only) cannot
  be bound to a time and is refused (401) with a message saying so. Missing headers or a wrong
  signature: 401, nothing triggered. Malformed or non-ASCII signature headers: 400. No secret
  configured: both POST endpoints and GET /report are disabled (403).
Limits: each connection's socket reads time out after `read_timeout_s` (10 s) and the whole
request must arrive within `deadline_s` (30 s), else the connection is dropped; at most
`max_connections` (64) are served at once, one more gets 503 and is closed without a thread; bodies
over 1 MiB get 413, chunked bodies 411. A failing handler logs one line, never a traceback to
stderr. The server never logs request bodies or headers.
"""
from __future__ import annotations

import hashlib
import heapq
import hmac
import json
import logging
import re
import secrets
import socket
import sys
import threading
import time
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

log = logging.getLogger("reconciler.service.http")

MAX_BODY = 1 << 20
WINDOW_S = 300
TS_HEADER = "X-Netintent-Timestamp"
DELIVERY_HEADER = "X-Netintent-Delivery"
SIG_HEADER = "X-Netintent-Signature"
LEGACY_HEADER = "X-Hub-Signature-256"
SIGNED_PATHS = ("/hooks/git", "/sync")
REPORT_PATH = "/report"
READ_TIMEOUT_S = 10.0
DEADLINE_S = 30.0
MAX_CONNECTIONS = 64
REPLAY_CACHE_MAX = 10_000
_DELIVERY = re.compile(r"[A-Za-z0-9_-]{16,64}")
_SIGNATURE = re.compile(r"v1=[0-9a-f]{64}")
_TIMESTAMP = re.compile(r"[0-9]{1,12}")
_LENGTH = re.compile(r"[0-9]{1,12}")


# ---- signing ------------------------------------------------------------------------------
def purpose_key(secret: bytes, path: str) -> bytes:
    """The HMAC key of one endpoint: a signature made for one path never verifies on another."""
    return hmac.new(secret, b"netintent/v1/" + path.lstrip("/").encode(), hashlib.sha256).digest()


def canonical(method: str, path: str, ts: str, delivery: str, body: bytes) -> bytes:
    return f"{method}\n{path}\n{ts}\n{delivery}\n".encode() + body


def sign(secret: bytes, method: str, path: str, body: bytes, *, ts: int | None = None,
         delivery: str | None = None) -> dict[str, str]:
    """The headers that sign one request (fresh timestamp and random delivery id unless given)."""
    ts_s = str(int(time.time() if ts is None else ts))
    delivery = delivery or secrets.token_hex(16)
    mac = hmac.new(purpose_key(secret, path), canonical(method, path, ts_s, delivery, body), hashlib.sha256)
    return {TS_HEADER: ts_s, DELIVERY_HEADER: delivery, SIG_HEADER: "v1=" + mac.hexdigest()}


def signed_get(url: str, secret: bytes) -> urllib.request.Request:
    """A GET of `url`, signed for its path with its raw query string standing in for the body."""
    parts = urllib.parse.urlsplit(url)
    return urllib.request.Request(url, method="GET", headers=sign(secret, "GET", parts.path or "/",
                                                                  parts.query.encode()))


def signed_request(url: str, secret: bytes, body: bytes) -> urllib.request.Request:
    """A POST of `body` to `url`, signed for the path of `url` (what every client of the daemon sends)."""
    path = urllib.parse.urlsplit(url).path or "/"
    headers = {"Content-Type": "application/json", **sign(secret, "POST", path, body)}
    return urllib.request.Request(url, data=body, method="POST", headers=headers)


class ReplayCache:
    """Delivery ids accepted inside the window, each kept until its timestamp leaves the window.
    Bounded: while full of live ids it refuses new ones instead of forgetting one that could
    then be replayed. Thread-safe."""

    def __init__(self, max_entries: int = REPLAY_CACHE_MAX) -> None:
        self.max_entries = max_entries
        self._expiry: dict[str, float] = {}
        self._heap: list[tuple[float, str]] = []
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._expiry)

    def add(self, delivery: str, expires: float, now: float) -> str:
        """'ok' (first time), 'replayed' (seen before) or 'full'."""
        with self._lock:
            while self._heap and self._heap[0][0] <= now:
                _, old = heapq.heappop(self._heap)
                if self._expiry.get(old, now + 1) <= now:
                    del self._expiry[old]
            if delivery in self._expiry:
                return "replayed"
            if len(self._expiry) >= self.max_entries:
                return "full"
            self._expiry[delivery] = expires
            heapq.heappush(self._heap, (expires, delivery))
            return "ok"


def _ascii(value: str | None) -> str | None:
    """The header as ASCII, or None when it holds anything else (latin-1 decoded bytes >= 0x80)."""
    if not isinstance(value, str):
        return None
    value = value.strip()
    return value if value.isascii() else None


def verify(secret: bytes | None, method: str, path: str, body: bytes, headers: Any,
           replay: ReplayCache, now: float | None = None) -> tuple[int, str]:
    """(0, "") for a fresh, correctly signed request (its delivery id is then remembered), else
    (HTTP status, reason). Never raises for what a client sent."""
    if not secret:
        return 403, "webhook disabled: no secret configured (--webhook-secret-file)"
    raw = {h: headers.get(h) for h in (TS_HEADER, DELIVERY_HEADER, SIG_HEADER, LEGACY_HEADER)}
    vals = {h: _ascii(v) for h, v in raw.items()}
    if any(raw[h] is not None and vals[h] is None for h in raw):
        return 400, "signature headers must be ASCII"
    ts, delivery, sig = vals[TS_HEADER], vals[DELIVERY_HEADER], vals[SIG_HEADER]
    if ts is None and delivery is None and sig is None:
        if vals[LEGACY_HEADER] is not None:
            return 401, (f"{LEGACY_HEADER} alone is not accepted: it signs only the body and can be replayed; "
                         f"sign with {TS_HEADER}, {DELIVERY_HEADER} and {SIG_HEADER}")
        return 401, "unsigned request"
    if ts is None or delivery is None or sig is None:
        return 401, f"incomplete signature: {TS_HEADER}, {DELIVERY_HEADER} and {SIG_HEADER} are all needed"
    if not _TIMESTAMP.fullmatch(ts) or not _DELIVERY.fullmatch(delivery) or not _SIGNATURE.fullmatch(sig):
        return 400, "malformed signature headers"
    now = time.time() if now is None else now
    if abs(now - int(ts)) > WINDOW_S:
        return 401, f"timestamp outside the {WINDOW_S}s window (replayed, or the clocks disagree)"
    want = sign(secret, method, path, body, ts=int(ts), delivery=delivery)[SIG_HEADER]
    if not hmac.compare_digest(want.encode(), sig.encode()):
        return 401, "bad signature"
    seen = replay.add(delivery, int(ts) + WINDOW_S, now)
    if seen == "replayed":
        return 401, "delivery already seen (replayed request)"
    if seen == "full":
        return 429, "too many deliveries inside the replay window"
    return 0, ""


# ---- server -------------------------------------------------------------------------------
class _Server(ThreadingHTTPServer):
    """Threads capped by a semaphore (over the cap: 503 from the accepting thread, no handler
    thread); a reaper drops connections whose request is not done by its deadline."""

    daemon_threads = True
    block_on_close = False  # stalled connections must never hold up stop()
    request_queue_size = 128  # listen backlog: a burst is accepted (and maybe refused 503), not left half-open

    def __init__(self, addr: tuple[str, int], handler: type, *, max_connections: int, deadline_s: float) -> None:
        self._slots = threading.BoundedSemaphore(max_connections)
        self._deadline_s = deadline_s
        self._live: dict[socket.socket, float] = {}
        self._live_lock = threading.Lock()
        super().__init__(addr, handler)

    @property
    def active(self) -> int:
        with self._live_lock:
            return len(self._live)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self._refuse(request)
            return
        with self._live_lock:
            self._live[request] = time.monotonic() + self._deadline_s
        try:
            super().process_request(request, client_address)
        except Exception:
            self._done(request)
            self.shutdown_request(request)
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._done(request)

    def _done(self, request: Any) -> None:
        with self._live_lock:
            if self._live.pop(request, None) is not None:
                self._slots.release()

    def _refuse(self, request: socket.socket) -> None:
        body = b'{"error": "too many connections"}\n'
        try:
            request.settimeout(1.0)
            request.sendall(b"HTTP/1.0 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                            b"Connection: close\r\nRetry-After: 1\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
            request.setblocking(False)
            request.recv(65536)  # what already arrived: closing with unread data would reset the reply away
        except OSError:
            pass
        self.shutdown_request(request)

    def reap(self) -> int:
        """Shut down connections past their deadline (their handler then sees EOF and ends)."""
        now = time.monotonic()
        with self._live_lock:
            late = [s for s, t in self._live.items() if t <= now]
        for s in late:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        return len(late)

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        log.warning("http: request from %s failed: %s", client_address[0] if client_address else "?",
                    exc.__class__.__name__ if exc else "error")
        log.debug("http: handler error", exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    """One request; everything it needs comes from its server's `app` (the HttpServer)."""

    server_version = "netintent-reconciler"

    def setup(self) -> None:
        self.app: HttpServer = self.server.app  # type: ignore[attr-defined]
        self.timeout = self.app.read_timeout_s  # type: ignore[misc]  # per connection: socketserver's knob is a class attribute
        super().setup()

    def log_message(self, fmt: str, *args: Any) -> None:  # no request lines with query strings
        log.debug("http %s %s", getattr(self, "command", ""), getattr(self, "path", "").split("?")[0])

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
            self._send(200, self.app.metrics(), "text/plain; version=0.0.4; charset=utf-8")
        elif path == "/healthz":
            h = self.app.health()
            self._json(200 if h.get("ok") else 503, h)
        elif path == REPORT_PATH:
            self._report(self.path.partition("?")[2])
        else:
            self._json(404, {"error": "not found"})

    def _report(self, query: str) -> None:
        """GET /report: refused like an unsigned POST; the query is what the signature covers."""
        code, why = verify(self.app.secret, "GET", REPORT_PATH, query.encode(), self.headers, self.app.replay)
        if code:
            log.warning("http: %s refused (%d): %s", REPORT_PATH, code, why)
            self._json(code, {"error": why})
        elif self.app.report is None:
            self._json(404, {"error": "this daemon serves no report"})
        else:
            status, body, ctype = self.app.report(query)
            self._send(status, body, ctype)

    def do_POST(self) -> None:  # noqa: N802
        path = self.path.split("?")[0]
        if path not in SIGNED_PATHS:
            self._json(404, {"error": "not found"})
            return
        body = self._body()
        if body is None:
            return
        code, why = verify(self.app.secret, "POST", path, body, self.headers, self.app.replay)
        if code:
            log.warning("http: %s refused (%d): %s", path, code, why)
            self._json(code, {"error": why})
            return
        try:
            payload = json.loads(body or b"{}")
            if not isinstance(payload, dict):
                payload = {}
        except ValueError:
            payload = {}
        manual = path == "/sync"
        self.app.on_sync("manual" if manual else "webhook", manual, payload)
        self._json(202, {"accepted": True})

    def _body(self) -> bytes | None:
        """The request body, or None after answering 411/413/400 (or when the client went away)."""
        if "chunked" in str(self.headers.get("Transfer-Encoding") or "").lower():
            self._json(411, {"error": "chunked bodies are not accepted; send Content-Length"})
            return None
        length = str(self.headers.get("Content-Length") or "0").strip()
        if not _LENGTH.fullmatch(length):
            self._json(400, {"error": "bad Content-Length"})
            return None
        n = int(length)
        if n > MAX_BODY:
            self._json(413, {"error": f"body too large (limit {MAX_BODY} bytes)"})
            return None
        body = self.rfile.read(n) if n else b""
        if len(body) != n:  # the client closed early, or the reaper dropped it at its deadline
            self.close_connection = True
            return None
        return body


class HttpServer:
    def __init__(self, host: str, port: int, *, secret: bytes | None, on_sync: Callable[[str, bool, dict], None],
                 metrics: Callable[[], bytes], health: Callable[[], dict[str, Any]],
                 read_timeout_s: float = READ_TIMEOUT_S, deadline_s: float = DEADLINE_S,
                 max_connections: int = MAX_CONNECTIONS, replay: ReplayCache | None = None,
                 report: Callable[[str], tuple[int, bytes, str]] | None = None) -> None:
        self.secret = secret
        self.on_sync, self.metrics, self.health = on_sync, metrics, health
        self.report = report   # raw query string -> (status, body, media type); None: no /report
        self.read_timeout_s = read_timeout_s
        self.replay = replay or ReplayCache()
        self._server = _Server((host, port), _Handler, max_connections=max_connections, deadline_s=deadline_s)
        self._server.app = self  # type: ignore[attr-defined]
        self._stopped = threading.Event()
        self._reap_every = max(0.05, min(1.0, deadline_s / 4))
        self._thread: threading.Thread | None = None
        self._reaper: threading.Thread | None = None

    @property
    def active(self) -> int:
        """Connections being served now (each holds one handler thread); never above the cap."""
        return self._server.active

    @property
    def address(self) -> tuple[str, int]:
        return self._server.server_address[:2]  # type: ignore[return-value]

    def start(self) -> None:
        self._thread = threading.Thread(target=self._server.serve_forever, name="reconciler-http", daemon=True)
        self._thread.start()
        self._reaper = threading.Thread(target=self._reap_loop, name="reconciler-http-reaper", daemon=True)
        self._reaper.start()

    def _reap_loop(self) -> None:
        while not self._stopped.wait(self._reap_every):
            self._server.reap()

    def stop(self) -> None:
        self._stopped.set()
        self._server.shutdown()
        self._server.server_close()
