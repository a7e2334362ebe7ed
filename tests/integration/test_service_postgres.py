"""Store and leader lock against a real PostgreSQL server started by the test.

Skips cleanly when the PostgreSQL server binaries are not installed (Debian: postgresql).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from pg_helpers import PgServer, available
from sqlalchemy import text
from svc_helpers import EXAMPLE, IntentsRepo, empty_snapshot, free_port, wait_until

from reconciler.compile import Compiler
from reconciler.drivers.registry import targets_of
from reconciler.drivers.snapshot import SnapshotDriver
from reconciler.engine import Engine
from reconciler.intents.validate import load_repo
from reconciler.model import Layer
from reconciler.service.store import SchemaMismatch, Store
from reconciler.status import Sync

pytestmark = pytest.mark.skipif(bool(available()), reason=available() or "ok")
HERE = Path(__file__).resolve().parent


@pytest.fixture
def pg():
    server = PgServer()
    try:
        yield server
    finally:
        server.destroy()


def _engine(tmp: Path, store: Store) -> tuple[Engine, object]:
    repo = load_repo(str(EXAMPLE))
    snap = empty_snapshot(tmp / "snap.json")
    eng = Engine({l: SnapshotDriver(l, snap) for l in Layer}, publish_state=True)
    eng.bus.subscribe(store.observer)
    return eng, repo


def test_store_on_postgres_records_runs_and_checks_the_schema_version(pg, tmp_path):
    store = Store(pg.url, owner="t")
    eng, repo = _engine(tmp_path, store)
    desired = Compiler().compile(repo)
    rep = eng.run(desired, targets_of(repo.inventory), revision="r1", trigger="commit")
    assert rep.converged
    assert store.runs()[0].phase == "succeeded" and store.runs(app="shop")[0].run_id == rep.run_id
    assert {a.app for a in store.apps()} == {"shop", "billing", "analytics"}
    assert all(a.sync is Sync.SYNCED for a in store.apps())
    assert store.resources("shop") and store.drift_events("shop", 3)
    assert store.target_revisions()["host/h1"] == "r1"
    store.set_self_heal("shop", False)
    assert {a.app: a.self_heal for a in store.apps()}["shop"] is False
    with store.engine.begin() as c:
        c.execute(text("UPDATE schema_version SET version = 99"))
    store.close()
    with pytest.raises(SchemaMismatch, match="newer"):
        Store(pg.url)


def test_events_are_kept_while_postgres_is_down_and_written_when_it_is_back(pg, tmp_path):
    store = Store(pg.url, owner="t")
    eng, repo = _engine(tmp_path, store)
    desired = Compiler().compile(repo)
    pg.stop()
    rep = eng.run(desired, targets_of(repo.inventory), revision="r-outage", trigger="commit")
    assert rep.converged, "the run goes on without its database"
    assert not store.available and store.pending > 0
    assert not store.flush()
    pg.start()
    wait_until(lambda: store.flush(), timeout=30, interval=0.5, what="flush after restart")
    assert store.available and store.pending == 0
    run = store.run(rep.run_id)
    assert run is not None and run.phase == "succeeded" and run.revision == "r-outage"
    assert len(store.results(rep.run_id)) == len(rep.initial.changes)
    store.close()


def _serve(tmp: Path, name: str, repo: IntentsRepo, url: str, snapshot: Path, port: int) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": f"{HERE}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    secret = tmp / "secret"
    secret.write_text("pg-test-webhook-secret-0123456789")
    cmd = [sys.executable, "-m", "reconciler.cli", "serve", "--repo", str(repo.bare), "--store", url,
           "--state-dir", str(tmp / name), "--observed", str(snapshot), "--driver-factory", "svc_helpers:slow_factory",
           "--interval", "3600", "--drift-interval", "3600", "--listen", f"127.0.0.1:{port}",
           "--webhook-secret-file", str(secret), "--log-file", str(tmp / f"{name}.log")]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=open(tmp / f"{name}.err", "w"),
                            start_new_session=True)


def _health(port: int) -> dict:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=3) as r:
            return json.loads(r.read())
    except Exception:
        return {}


def _kill(p: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    if p.poll() is None:
        p.send_signal(sig)
        try:
            p.wait(20)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(5)


def _log_logins(pg: PgServer) -> None:
    """The server logs every login from now on, with its application_name (leader-lock attempts)."""
    import psycopg
    with psycopg.connect(pg.url.replace("+psycopg", ""), autocommit=True) as c:
        c.execute("ALTER SYSTEM SET log_connections = on")
        c.execute("SELECT pg_reload_conf()")


def _leader_logins(pg: PgServer) -> int:
    return pg.log.read_text(errors="replace").count("application_name=netintent-reconciler-leader")


def test_two_daemons_one_leader_and_failover_on_kill_9(pg, tmp_path):
    _log_logins(pg)
    repo = IntentsRepo(tmp_path)
    snapshot = empty_snapshot(tmp_path / "snap.json")
    ports = {"a": free_port(), "b": free_port()}
    procs = {"a": _serve(tmp_path, "a", repo, pg.url, snapshot, ports["a"])}
    try:
        wait_until(lambda: _health(ports["a"]).get("leader"), timeout=30, what="a leads")
        procs["b"] = _serve(tmp_path, "b", repo, pg.url, snapshot, ports["b"])
        wait_until(lambda: _health(ports["b"]).get("ok"), timeout=30, what="b up")
        # b asks for the lock every second: see it refused twice (its logins, in the server log)
        seen = _leader_logins(pg)
        wait_until(lambda: _leader_logins(pg) >= seen + 2, timeout=30, what="b asked for the leader lock twice")
        hb = _health(ports["b"])
        assert hb["leader"] is False, "only one daemon leads"
        # a commit reaches both: only the leader applies it
        sha = repo.set_web_port(8600)
        repo.push()
        for port in ports.values():
            urllib.request.urlopen(urllib.request.Request(
                f"http://127.0.0.1:{port}/hooks/git", data=b"{}", method="POST",
                headers=_sig(tmp_path, "/hooks/git", b"{}")), timeout=5)
        store = Store(pg.url)
        wait_until(lambda: any(r.revision == sha and r.phase == "succeeded" for r in store.runs()), timeout=30)
        owners = {r.owner.rsplit(":", 1)[1] for r in store.runs(limit=100) if not r.dry_run}
        assert owners == {str(procs["a"].pid)}, f"only the leader applied: {owners}"
        # kill -9 the leader: b takes over and reconciles
        os.kill(procs["a"].pid, signal.SIGKILL)
        procs["a"].wait(10)
        t0 = time.monotonic()
        wait_until(lambda: _health(ports["b"]).get("leader"), timeout=30, what="b takes over")
        takeover = time.monotonic() - t0
        wait_until(lambda: any(r.owner.endswith(f":{procs['b'].pid}") and r.trigger == "startup" and
                               r.phase == "succeeded" for r in store.runs()), timeout=30, what="b reconciles")
        assert takeover < 10, f"takeover took {takeover:.1f}s"
        # b now applies new commits
        sha2 = repo.set_web_port(8601)
        repo.push()
        urllib.request.urlopen(urllib.request.Request(
            f"http://127.0.0.1:{ports['b']}/hooks/git", data=b"{}", method="POST",
            headers=_sig(tmp_path, "/hooks/git", b"{}")), timeout=5)
        wait_until(lambda: any(r.revision == sha2 and r.owner.endswith(f":{procs['b'].pid}") for r in store.runs()))
        store.close()
    finally:
        for p in procs.values():
            _kill(p)


def test_daemon_survives_postgres_outage(pg, tmp_path):
    repo = IntentsRepo(tmp_path)
    snapshot = empty_snapshot(tmp_path / "snap.json")
    port = free_port()
    p = _serve(tmp_path, "a", repo, pg.url, snapshot, port)
    try:
        wait_until(lambda: _health(port).get("revision") == repo.first, timeout=30, what="initial sync")
        pg.stop()
        wait_until(lambda: _health(port).get("leader") is False, timeout=30, what="leadership dropped")
        h = _health(port)
        assert h["ok"] and p.poll() is None
        sha = repo.set_web_port(8700)
        repo.push()
        urllib.request.urlopen(urllib.request.Request(   # asks for a sync at once: refused without the lock
            f"http://127.0.0.1:{port}/hooks/git", data=b"{}", method="POST",
            headers=_sig(tmp_path, "/hooks/git", b"{}")), timeout=5)
        pg.start()
        wait_until(lambda: _health(port).get("leader"), timeout=30, what="leadership back")
        wait_until(lambda: _health(port).get("revision") == sha, timeout=30, what="new commit applied")
        store = Store(pg.url)
        wait_until(lambda: any(r.revision == sha and r.phase == "succeeded" for r in store.runs()), timeout=30)
        # applied once the lock was back, not on the webhook: a run made without the lock would be in the
        # store too (the daemon keeps its events while the database is down and writes them later, in order)
        assert [r.trigger for r in store.runs() if r.revision == sha and not r.dry_run] == ["startup"], \
            "no apply without the leader lock"
        store.close()
    finally:
        _kill(p)


def _sig(tmp: Path, path: str, body: bytes) -> dict[str, str]:
    from reconciler.service.http import sign
    return sign((tmp / "secret").read_bytes().strip(), "POST", path, body)
