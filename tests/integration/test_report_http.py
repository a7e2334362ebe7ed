"""`GET /report` on the real daemon: real git repo, real engine runs (snapshot driver), real HTTP.

The report must be signed like the daemon's POSTs (timestamp, delivery id, HMAC over the
method, path and the raw query string), and its figures must be the runs the daemon recorded.
"""
from __future__ import annotations

import csv
import io
import json
import urllib.error
import urllib.request

import pytest
from svc_helpers import IntentsRepo, daemon_config, empty_snapshot, snapshot_edit, start_daemon, wait_until

from reconciler.service import store_verify
from reconciler.service.daemon import Daemon
from reconciler.service.http import HttpServer, sign, signed_get

SECRET = b"test-report-secret-0123456789"


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("report-http")
    repo = IntentsRepo(tmp)
    snapshot = empty_snapshot(tmp / "snap.json")
    d = start_daemon(daemon_config(tmp, repo, snapshot, webhook_secret=SECRET))
    try:
        try:
            wait_until(lambda: d.current is not None and d.current.revision == repo.first and not d._sync_running,
                       timeout=60, what="initial sync")
        except AssertionError as exc:   # say what the daemon was doing
            raise AssertionError(f"{exc}; health: {d.health()}; runs: "
                                 f"{[(r.trigger, r.phase, r.error[:200]) for r in d.store.runs(limit=5)]}") from None
        d.repo, d.snapshot = repo, snapshot
        yield d
    finally:
        d.stop(wait_s=10)
        d.store.close()


def _url(d: Daemon, query: str = "") -> str:
    host, port = d.http.address
    return f"http://{host}:{port}/report" + (f"?{query}" if query else "")


def _open(req) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.headers.get("Content-Type", ""), r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Content-Type", ""), exc.read().decode()


def get(d: Daemon, query: str = "", secret: bytes | None = SECRET) -> tuple[int, str, str]:
    url = _url(d, query)
    return _open(signed_get(url, secret) if secret is not None else url)


def test_report_needs_a_signed_request(daemon):
    code, _, body = get(daemon, "format=json", secret=None)
    assert code == 401 and json.loads(body)["error"] == "unsigned request"
    assert get(daemon, "", secret=b"wrong-secret-wrong-secret-0")[0] == 401
    # a signature covers one query: the same headers with another query are refused
    headers = sign(SECRET, "GET", "/report", b"app=shop")
    code, _, body = _open(urllib.request.Request(_url(daemon, "app=billing"), headers=headers))
    assert code == 401 and json.loads(body)["error"] == "bad signature"
    # and a signed request is good once
    req = signed_get(_url(daemon, "app=shop"), SECRET)
    assert _open(req)[0] == 200
    code, _, body = _open(req)
    assert code == 401 and "already seen" in json.loads(body)["error"]


def test_report_figures_are_the_daemons_runs(daemon):
    wait_until(lambda: store_verify.summaries(daemon.store), what="the daemon's reachability results")
    code, ctype, body = get(daemon, "format=json")
    assert code == 200 and ctype == "application/json"
    out = json.loads(body)
    assert out["source"] == "store" and out["applied_revision"] == daemon.repo.first
    apps = {a["app"]: a for a in out["apps"]}
    stored = {r.key: r for r in daemon.store.resources()}
    for name in ("shop", "billing", "analytics"):
        a = apps[name]
        assert a["status"] == "in-sync" and a["revision"] == daemon.repo.first
        assert a["resources"]["in_sync"] == sum(1 for r in stored.values() if r.app == name)
        assert a["last_change"]["commit"] == daemon.repo.first and a["last_change"]["trigger"] == "startup"
        assert a["seconds_since_converged"] is not None and a["seconds_since_converged"] >= 0
        assert a["violations"] == []    # verified by the daemon after its run, nothing open
    assert out["verification"]["available"] and out["verification"]["source"] == "store"


def test_report_formats_and_bad_parameters(daemon):
    code, ctype, body = get(daemon, "format=html&app=shop")
    assert code == 200 and ctype.startswith("text/html") and body.startswith("<!DOCTYPE html>")
    assert 'href="#app=shop"' in body and "#app=billing" not in body
    code, ctype, body = get(daemon, "format=csv&app=billing&app=shop")
    assert code == 200 and ctype.startswith("text/csv")
    assert {r["app"] for r in csv.DictReader(io.StringIO(body))} == {"billing", "shop"}
    code, _, body = get(daemon, "since=2026-01-01T00:00:00Z")
    assert code == 200 and json.loads(body)["since"] == 1767225600.0
    for query, want in (("format=xml", 400), ("since=soon", 400), ("app=nope", 404), ("colour=red", 400)):
        code, ctype, body = get(daemon, query)
        assert (code, ctype) == (want, "application/json"), query
        assert len(json.loads(body)["error"].splitlines()) == 1


def test_report_drift_shows_after_a_drift_scan(daemon):
    def drop(data):
        data["resources"] = [r for r in data["resources"] if r["key"] != "host/h3/nft-set/netintent_shop/local"]
    snapshot_edit(daemon.snapshot, drop)
    daemon._drift_job()   # the scan the scheduler would run (self-heal on: it repairs it too)
    wait_until(lambda: not daemon._sync_running and not daemon.run_lock.locked(), what="scan done")
    out = json.loads(get(daemon, "app=shop")[2])
    shop = out["apps"][0]
    last = daemon.store.runs(limit=1)[0]
    assert shop["last_change"]["run_id"] == last.run_id and last.trigger == "self-heal"
    assert shop["last_change"]["resources"] == 1 and shop["status"] == "in-sync"


def test_no_secret_or_no_report_is_refused():
    def noop(*_a):
        return None
    for secret, report, want in ((None, lambda q: (200, b"{}", "application/json"), 403), (SECRET, None, 404)):
        srv = HttpServer("127.0.0.1", 0, secret=secret, on_sync=noop, metrics=lambda: b"", health=dict,
                         report=report)
        srv.start()
        try:
            host, port = srv.address
            req = signed_get(f"http://{host}:{port}/report", SECRET)
            assert _open(req)[0] == want
        finally:
            srv.stop()
