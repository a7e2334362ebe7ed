"""Request signing of the daemon's HTTP API (reconciler/service/http.py), as pure functions.

The wire format is re-implemented here on purpose: the tests pin the contract (what the
docs tell operators to send), not just that `sign` and `verify` agree with each other.
"""
from __future__ import annotations

import hashlib
import hmac

import pytest

from reconciler.service.http import ReplayCache, purpose_key, sign, signed_request, verify

SECRET = b"unit-secret-0123456789abcdef"
BODY = b'{"source": "cli"}'
NOW = 1_800_000_000.0
DELIVERY = "d" * 32


def wire(secret: bytes, method: str, path: str, ts: int, delivery: str, body: bytes, key_path: str | None = None,
         ) -> dict[str, str]:
    """The documented format: key = HMAC(secret, "netintent/v1/" + path),
    MAC = HMAC(key, METHOD\\nPATH\\nTS\\nDELIVERY\\n + body)."""
    key = hmac.new(secret, b"netintent/v1/" + (key_path or path).lstrip("/").encode(), hashlib.sha256).digest()
    mac = hmac.new(key, f"{method}\n{path}\n{ts}\n{delivery}\n".encode() + body, hashlib.sha256).hexdigest()
    return {"X-Netintent-Timestamp": str(ts), "X-Netintent-Delivery": delivery, "X-Netintent-Signature": "v1=" + mac}


def check(headers: dict, path: str = "/sync", body: bytes = BODY, now: float = NOW, cache: ReplayCache | None = None,
          method: str = "POST") -> tuple[int, str]:
    return verify(SECRET, method, path, body, headers, cache if cache is not None else ReplayCache(), now=now)


def test_sign_matches_the_documented_wire_format():
    assert sign(SECRET, "POST", "/sync", BODY, ts=int(NOW), delivery=DELIVERY) == \
        wire(SECRET, "POST", "/sync", int(NOW), DELIVERY, BODY)
    assert check(wire(SECRET, "POST", "/sync", int(NOW), DELIVERY, BODY)) == (0, "")


def test_fresh_headers_per_request():
    a, b = sign(SECRET, "POST", "/sync", BODY), sign(SECRET, "POST", "/sync", BODY)
    assert a["X-Netintent-Delivery"] != b["X-Netintent-Delivery"]
    assert a["X-Netintent-Signature"] != b["X-Netintent-Signature"]
    req = signed_request("http://127.0.0.1:1/hooks/git", SECRET, BODY)
    headers = {k.title(): v for k, v in req.header_items()}
    assert req.get_method() == "POST" and req.data == BODY
    sent = {k: headers[k.title()] for k in a}
    assert check(sent, path="/hooks/git", now=float(sent["X-Netintent-Timestamp"])) == (0, "")


def test_replayed_delivery_is_refused_inside_the_window():
    cache = ReplayCache()
    h = wire(SECRET, "POST", "/sync", int(NOW), DELIVERY, BODY)
    assert check(h, cache=cache) == (0, "")
    code, why = check(h, cache=cache, now=NOW + 30)
    assert code == 401 and "already seen" in why


@pytest.mark.parametrize("skew", [-301, 301, -10_000])
def test_timestamps_outside_five_minutes_are_refused(skew):
    code, why = check(wire(SECRET, "POST", "/sync", int(NOW) + skew, DELIVERY, BODY))
    assert code == 401 and "window" in why


@pytest.mark.parametrize("skew", [-299, 0, 299])
def test_timestamps_inside_five_minutes_are_accepted(skew):
    assert check(wire(SECRET, "POST", "/sync", int(NOW) + skew, DELIVERY, BODY)) == (0, "")


def test_a_webhook_signature_is_never_valid_for_sync():
    hooks = wire(SECRET, "POST", "/hooks/git", int(NOW), DELIVERY, BODY)
    assert check(hooks, path="/sync")[0] == 401
    # even with the path line rewritten to /sync, the hooks key does not verify there
    crossed = wire(SECRET, "POST", "/sync", int(NOW), DELIVERY, BODY, key_path="/hooks/git")
    assert check(crossed, path="/sync")[0] == 401
    assert purpose_key(SECRET, "/sync") != purpose_key(SECRET, "/hooks/git")


def test_everything_signed_is_bound():
    good = wire(SECRET, "POST", "/sync", int(NOW), DELIVERY, BODY)
    assert check(good, body=BODY + b" ")[0] == 401
    assert check(good, method="PUT")[0] == 401
    assert check({**good, "X-Netintent-Delivery": "e" * 32})[0] == 401
    assert check({**good, "X-Netintent-Timestamp": str(int(NOW) + 1)})[0] == 401
    assert check(good, path="/sync") == (0, "")
    assert verify(b"another-secret-0123456789", "POST", "/sync", BODY, good, ReplayCache(), now=NOW)[0] == 401


def test_body_only_github_signature_is_refused_with_a_reason():
    legacy = {"X-Hub-Signature-256": "sha256=" + hmac.new(SECRET, BODY, hashlib.sha256).hexdigest()}
    code, why = check(legacy)
    assert code == 401 and "X-Hub-Signature-256" in why and "replayed" in why


def test_missing_malformed_and_non_ascii_headers():
    good = wire(SECRET, "POST", "/sync", int(NOW), DELIVERY, BODY)
    assert check({})[0] == 401
    assert check({k: v for k, v in good.items() if k != "X-Netintent-Delivery"})[0] == 401
    assert check({**good, "X-Netintent-Signature": "v1=" + "\xff" * 64})[0] == 400
    assert check({**good, "X-Hub-Signature-256": "sha256=\xe9"})[0] == 400
    assert check({**good, "X-Netintent-Timestamp": "soon"})[0] == 400
    assert check({**good, "X-Netintent-Delivery": "short"})[0] == 400
    assert check({**good, "X-Netintent-Signature": "sha256=abc"})[0] == 400
    assert verify(None, "POST", "/sync", BODY, good, ReplayCache(), now=NOW)[0] == 403


def test_replay_cache_is_bounded_and_fails_closed():
    cache = ReplayCache(max_entries=3)
    for i in range(3):
        assert cache.add(f"id{i}", expires=NOW + 300, now=NOW) == "ok"
    assert cache.add("id3", expires=NOW + 300, now=NOW + 1) == "full", "never forgets a live id to make room"
    assert cache.add("id0", expires=NOW + 300, now=NOW + 1) == "replayed"
    assert cache.add("id3", expires=NOW + 700, now=NOW + 301) == "ok", "expired ids make room"
    assert len(cache) == 1
    # verify reports a full cache as 429, after the signature checked out
    full = ReplayCache(max_entries=0)
    assert check(wire(SECRET, "POST", "/sync", int(NOW), DELIVERY, BODY), cache=full)[0] == 429
