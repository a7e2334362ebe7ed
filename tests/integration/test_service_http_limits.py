"""The daemon's HTTP server on loopback: signed requests are good once and for one endpoint,
stalled or oversized requests cannot exhaust it, a bad header is a 400 (never a traceback),
and every signer (`reconciler sync`, the TUI's DaemonActions) sends what the server checks.

Real parts: the stdlib server of reconciler/service/http.py on 127.0.0.1, raw sockets for the
misbehaving clients. Time-based checks wait for the event (EOF on the socket) with a bound.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import select
import selectors
import socket
import threading
import time
import urllib.error
import urllib.request
from types import SimpleNamespace

import pytest

from reconciler.service.http import HttpServer, sign, signed_request

SECRET = b"http-test-secret-0123456789abcdef"


class Server:
    def __init__(self, **kw) -> None:  # noqa: ANN003
        self.calls: list[tuple[str, bool, dict]] = []
        self.http = HttpServer("127.0.0.1", 0, secret=SECRET, on_sync=lambda *a: self.calls.append(a),
                               metrics=lambda: b"# metrics\n", health=lambda: {"ok": True}, **kw)
        self.http.start()
        self.host, self.port = self.http.address
        self.base = f"http://{self.host}:{self.port}"

    def post(self, path: str, body: bytes = b"{}", headers: dict | None = None) -> int:
        req = urllib.request.Request(self.base + path, data=body, method="POST",
                                     headers={"Content-Type": "application/json", **(headers or {})})
        try:
            with urllib.request.urlopen(req, timeout=5) as r:
                return r.status
        except urllib.error.HTTPError as exc:
            return exc.code

    def healthz(self) -> int:
        try:
            with urllib.request.urlopen(self.base + "/healthz", timeout=5) as r:
                return r.status
        except urllib.error.HTTPError as exc:
            return exc.code

    def raw(self, data: bytes, timeout: float = 5.0) -> bytes:
        """Send `data` on a fresh connection, return everything the server answers until it closes."""
        with socket.create_connection((self.host, self.port), timeout=timeout) as s:
            s.sendall(data)
            return read_to_eof(s, timeout)

    def connect(self) -> socket.socket:
        return socket.create_connection((self.host, self.port), timeout=5)


def read_to_eof(s: socket.socket, timeout: float) -> bytes:
    s.settimeout(timeout)
    out = b""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            chunk = s.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        out += chunk
    return out


def wait_for(pred, bound: float) -> bool:  # noqa: ANN001
    end = time.monotonic() + bound
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.05)
    return bool(pred())


def handler_threads() -> int:
    return sum(1 for t in threading.enumerate() if "process_request_thread" in t.name)


@pytest.fixture
def server():
    made: list[Server] = []

    def make(**kw) -> Server:  # noqa: ANN003
        s = Server(**kw)
        made.append(s)
        return s
    try:
        yield make
    finally:
        for s in made:
            s.http.stop()


# ---- replay -------------------------------------------------------------------------------
def test_a_captured_signed_request_is_accepted_once(server):
    srv = server()
    headers = sign(SECRET, "POST", "/hooks/git", b"{}")
    assert srv.post("/hooks/git", headers=headers) == 202
    assert srv.post("/hooks/git", headers=headers) == 401, "the same delivery again is a replay"
    assert len(srv.calls) == 1


def test_a_body_only_signature_is_refused_so_it_cannot_be_replayed(server):
    """The old format: HMAC(secret, body) in X-Hub-Signature-256, accepted again and again."""
    srv = server()
    legacy = {"X-Hub-Signature-256": "sha256=" + hmac.new(SECRET, b"{}", hashlib.sha256).hexdigest()}
    assert [srv.post("/sync", headers=legacy) for _ in range(3)] == [401, 401, 401]
    assert srv.calls == []


def test_a_webhook_signature_cannot_trigger_a_manual_sync(server):
    """/sync ignores deny windows: a captured /hooks/git request must never reach it."""
    srv = server()
    hooks = sign(SECRET, "POST", "/hooks/git", b"{}")
    assert srv.post("/sync", headers=hooks) == 401
    assert srv.post("/hooks/git", headers=hooks) == 202
    assert srv.calls == [("webhook", False, {})]


def test_old_and_future_timestamps_are_refused(server):
    srv = server()
    now = int(time.time())
    assert srv.post("/sync", headers=sign(SECRET, "POST", "/sync", b"{}", ts=now - 400)) == 401
    assert srv.post("/sync", headers=sign(SECRET, "POST", "/sync", b"{}", ts=now + 400)) == 401
    assert srv.post("/sync", headers=sign(SECRET, "POST", "/sync", b"{}", ts=now - 200)) == 202
    assert len(srv.calls) == 1


def test_cli_and_tui_sign_every_request_afresh(server, tmp_path):
    from reconciler.cli import main
    from tui.http_actions import DaemonActions
    srv = server()
    secret = tmp_path / "secret"
    secret.write_bytes(SECRET)
    for _ in range(2):  # constant bodies, yet each request is its own delivery
        assert main(["sync", "--daemon", f"{srv.host}:{srv.port}", "--webhook-secret-file", str(secret)]) == 0
    actions = DaemonActions(srv.base, SECRET, SimpleNamespace(read_only=True))
    assert [actions._post_sync("shop"), actions._post_sync("shop")] == [202, 202]
    cli, tui = ("manual", True, {"source": "cli"}), ("manual", True, {"source": "tui", "app": "shop"})
    assert srv.calls == [cli, cli, tui, tui]
    # and what they sign is bound to /sync: the same request to /hooks/git is refused
    req = signed_request(srv.base + "/sync", SECRET, b"{}")
    assert srv.post("/hooks/git", headers=dict(req.header_items())) == 401


# ---- bad input ----------------------------------------------------------------------------
def test_a_non_ascii_signature_header_is_a_400_not_a_traceback(server, caplog):
    srv = server()
    reply = srv.raw(b"POST /sync HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n"
                    b"X-Hub-Signature-256: sha256=\xff\xfe\xe9\r\n"
                    b"X-Netintent-Timestamp: 1\r\nX-Netintent-Delivery: \xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\r\n"
                    b"X-Netintent-Signature: v1=\xff\r\n\r\n{}")
    assert reply.startswith(b"HTTP/1.0 400 "), reply[:200]
    assert b"ASCII" in reply
    assert not any(r.exc_info for r in caplog.records), "no traceback logged"
    assert srv.calls == [] and srv.healthz() == 200


def test_oversized_and_chunked_bodies_are_refused_unread(server):
    srv = server()
    headers = sign(SECRET, "POST", "/sync", b"")
    hdr = b"".join(f"{k}: {v}\r\n".encode() for k, v in headers.items())
    reply = srv.raw(b"POST /sync HTTP/1.1\r\nHost: x\r\nContent-Length: 2000000\r\n" + hdr + b"\r\n")
    assert reply.startswith(b"HTTP/1.0 413 "), reply[:200]
    reply = srv.raw(b"POST /sync HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n" + hdr + b"\r\n0\r\n\r\n")
    assert reply.startswith(b"HTTP/1.0 411 "), reply[:200]
    reply = srv.raw(b"POST /sync HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n" + hdr + b"\r\n")
    assert reply.startswith(b"HTTP/1.0 400 "), reply[:200]
    assert srv.calls == []


# ---- stalled clients ----------------------------------------------------------------------
def drain(socks: list[socket.socket], bound: float) -> list[tuple[bytes, float]]:
    """Read every socket until the server closes it (bounded): (what it sent, seconds until EOF)."""
    sel = selectors.DefaultSelector()
    got: dict[socket.socket, bytes] = {s: b"" for s in socks}
    closed: dict[socket.socket, float] = {}
    t0 = time.monotonic()
    for s in socks:
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ)
    while len(closed) < len(socks) and time.monotonic() - t0 < bound:
        for key, _ in sel.select(timeout=0.2):
            s = key.fileobj
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                chunk = b""
            if chunk:
                got[s] += chunk
            else:
                closed[s] = time.monotonic() - t0
                sel.unregister(s)
    sel.close()
    return [(got[s], closed.get(s, float("inf"))) for s in socks]


def test_stalled_connections_are_capped_and_dropped_by_the_read_timeout(server):
    cap, timeout = 8, 1.0
    srv = server(max_connections=cap, read_timeout_s=timeout, deadline_s=30.0)
    base_threads = handler_threads()
    stalled = [srv.connect() for _ in range(cap - 2)]  # nothing sent: each holds a handler thread
    assert srv.healthz() == 200, "the server still answers beside stalled connections"
    stalled += [srv.connect() for _ in range(2)]
    over = [srv.connect() for _ in range(20)]
    results = drain(stalled + over, bound=timeout + 15)
    assert all(t < timeout + 15 for _, t in results), "every connection was closed by the server"
    refused = [t for data, t in results if data.startswith(b"HTTP/1.0 503 ")]
    dropped = [t for data, t in results if data == b""]
    # over the cap: answered 503 at once by the accepting thread, never queued behind the stalled ones
    assert len(refused) == 20 and max(refused) < timeout
    # the stalled ones: closed by the server after the read timeout, without an answer
    assert len(dropped) == cap and min(dropped) >= timeout * 0.5
    assert handler_threads() - base_threads <= cap
    assert wait_for(lambda: srv.http.active == 0, 5), "every slot was given back"
    for s in stalled + over:
        s.close()
    assert srv.healthz() == 200, "the slots came back"


def test_two_hundred_stalled_connections_hold_at_most_the_cap(server):
    """The reported incident: 200 stalled requests held 200 threads (default cap: 64)."""
    srv = server(read_timeout_s=3.0)
    base_threads = handler_threads()
    socks = [srv.connect() for _ in range(200)]
    try:
        assert wait_for(lambda: srv.http.active == 64, 5) and handler_threads() - base_threads <= 64
        assert srv.healthz() == 503, "a full server answers at once instead of hanging"
        results = drain(socks, bound=20)
        assert sum(data.startswith(b"HTTP/1.0 503 ") for data, _ in results) == 200 - 64
        assert sum(data == b"" for data, _ in results) == 64
        assert handler_threads() - base_threads <= 64
    finally:
        for s in socks:
            s.close()
    assert srv.healthz() == 200


def test_a_slow_drip_is_dropped_at_the_request_deadline(server):
    """Bytes trickling in under the read timeout do not keep a connection forever."""
    srv = server(read_timeout_s=1.0, deadline_s=2.0)
    s = srv.connect()
    t0 = time.monotonic()
    dropped = False
    try:
        s.sendall(b"POST /sync HTTP/1.1\r\n")
        for _ in range(60):  # one header byte every 0.25 s: 15 s at most
            readable, _, _ = select.select([s], [], [], 0.25)
            if readable and s.recv(4096) == b"":
                dropped = True
                break
            s.sendall(b"X")
    except (BrokenPipeError, ConnectionResetError):
        dropped = True
    finally:
        s.close()
    took = time.monotonic() - t0
    assert dropped and 1.5 <= took < 6.0, took
    assert srv.healthz() == 200


def test_server_json_bodies(server):
    """The refusal reasons are JSON the operator can read."""
    srv = server()
    req = urllib.request.Request(srv.base + "/sync", data=b"{}", method="POST")
    try:
        urllib.request.urlopen(req, timeout=5)
    except urllib.error.HTTPError as exc:
        assert exc.code == 401 and json.loads(exc.read())["error"] == "unsigned request"
