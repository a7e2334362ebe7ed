"""Pure pieces of the service: store on SQLite, schema check, redaction, windows, HMAC, metrics."""
from __future__ import annotations

import datetime as dt
import json
import sqlite3
from pathlib import Path

import pytest

from reconciler.compile import Compiler
from reconciler.drivers.registry import targets_of
from reconciler.drivers.snapshot import SnapshotDriver
from reconciler.engine import Engine
from reconciler.events import Event, EventKind
from reconciler.intents.validate import load_repo
from reconciler.model import Layer
from reconciler.redact import MASK, Redactor
from reconciler.service.http import ReplayCache, sign, verify
from reconciler.service.metrics import Metrics
from reconciler.service.store import SchemaMismatch, Store
from reconciler.service.windows import parse_duration, window_verdict
from reconciler.status import Health, Phase, Sync

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "intents"
UTC = dt.timezone.utc


@pytest.fixture
def run_env(tmp_path):
    repo = load_repo(str(EXAMPLE))
    desired = Compiler().compile(repo)
    snap = tmp_path / "snap.json"
    snap.write_text('{"resources": []}')
    store = Store(str(tmp_path / "db.sqlite"), owner="unit")
    metrics = Metrics()
    eng = Engine({l: SnapshotDriver(l, snap) for l in Layer}, publish_state=True)
    eng.bus.subscribe(store.observer)
    eng.bus.subscribe(metrics.observer)
    targets = targets_of(repo.inventory)
    yield eng, desired, targets, store, metrics, snap
    store.close()


def test_store_records_apply_scan_and_failures(run_env):
    eng, desired, targets, store, metrics, snap = run_env
    r1 = eng.run(desired, targets, revision="rev1", trigger="commit")
    assert r1.converged
    run = store.run(r1.run_id)
    assert run.phase == "succeeded" and run.writes == r1.writes and not run.dry_run
    assert len(store.results(r1.run_id)) == len(r1.initial.changes)
    assert len(store.drift_events()) == min(100, len(r1.initial.drift))
    assert {a.app for a in store.apps()} == {"shop", "billing", "analytics"}
    # a device rejects a change of one analytics resource; a scan sees shop drift
    key = next(r for r in desired if r.app == "analytics" and r.key.target == "h4" and r.key.layer is Layer.HOST)
    data = json.loads(snap.read_text())
    data["resources"] = [r for r in data["resources"] if r["key"] != str(key.key)]
    data["reject"] = [str(key.key)]
    snap.write_text(json.dumps(data))
    scan = eng.run(desired, targets, revision="rev1", dry_run=True, trigger="drift-scan")
    apps = {a.app: a for a in store.apps()}
    assert apps["analytics"].sync is Sync.OUT_OF_SYNC and apps["analytics"].drift_count == 1
    assert store.drift_events("analytics", 1)[0].run_id == scan.run_id
    assert [r.status for r in store.resources("analytics") if r.key == str(key.key)] == ["create"]
    r2 = eng.run(desired, targets, revision="rev2", trigger="retry", apps=["analytics"])
    assert not r2.converged
    apps = {a.app: a for a in store.apps()}
    assert apps["analytics"].health is Health.DEGRADED and apps["analytics"].revision == "rev1"
    assert "rejected" in apps["analytics"].message and store.run(r2.run_id).phase == "failed"
    assert store.runs(app="analytics", limit=1)[0].run_id == r2.run_id
    assert store.runs(app="nosuchapp") == []
    text = metrics.render().decode()
    assert 'reconciler_apply_failures_total{app="analytics",layer="host"} 1.0' in text
    assert 'reconciler_drift_resources{app="analytics"} 1.0' in text


def test_interrupted_runs_are_marked(tmp_path):
    store = Store(str(tmp_path / "db.sqlite"))
    store.observer(Event(EventKind.RUN_STARTED, "run1", message="commit", data={"revision": "abc"}))
    assert store.runs()[0].phase == Phase.RUNNING.value
    store.close()
    store = Store(str(tmp_path / "db.sqlite"))
    assert store.mark_interrupted() == ["run1"]
    assert store.run("run1").phase == "interrupted"
    assert store.mark_interrupted() == []


def test_quiet_drift_scans_are_pruned_but_not_runs_with_drift(run_env):
    eng, desired, targets, store, metrics, snap = run_env
    applied = eng.run(desired, targets, revision="r", trigger="commit")
    quiet = [eng.run(desired, targets, revision="r", dry_run=True, trigger="drift-scan").run_id for _ in range(4)]
    data = json.loads(snap.read_text())
    data["resources"] = data["resources"][1:]
    snap.write_text(json.dumps(data))
    noisy = eng.run(desired, targets, revision="r", dry_run=True, trigger="drift-scan").run_id
    assert store.prune_history(keep_quiet_scans=2) == 3
    left = {r.run_id for r in store.runs(limit=100)}
    assert applied.run_id in left and noisy in left and quiet[-1] in left and quiet[0] not in left


def test_schema_version_is_checked(tmp_path):
    db = tmp_path / "db.sqlite"
    Store(str(db)).close()
    with sqlite3.connect(db) as c:
        c.execute("UPDATE schema_version SET version = 42")
    with pytest.raises(SchemaMismatch, match="newer"):
        Store(str(db))
    with sqlite3.connect(db) as c:
        c.execute("UPDATE schema_version SET version = 0")
    with pytest.raises(SchemaMismatch, match="no migration"):
        Store(str(db))
    with sqlite3.connect(db) as c:
        c.execute("DROP TABLE schema_version")
    with pytest.raises(SchemaMismatch, match="no schema_version"):
        Store(str(db))


def test_hold_and_self_heal_override(tmp_path):
    store = Store(str(tmp_path / "db.sqlite"))
    store.set_self_heal("shop", False)
    store.set_hold("a" * 40, "b" * 40)
    (shop,) = store.apps()
    assert shop.self_heal is False and shop.held and shop.held_revision == "a" * 40
    store.release_hold()
    assert store.hold() is None and not store.apps()[0].held


def test_redactor_masks_values_and_secret_fields():
    r = Redactor()
    r.add_vars({"ansible_password": "hunter2-long", "ansible_host": "10.0.0.1",
                "nested": {"api_token": "tok-123456"}, "ansible_become_pass": "sudo-pass-1"})
    assert r.text("ssh -p hunter2-long to 10.0.0.1 with tok-123456") == f"ssh -p {MASK} to 10.0.0.1 with {MASK}"
    assert r.value({"password": "x-other-1", "key": "host/h1/nft/t", "list": ["sudo-pass-1"]}) == \
        {"password": MASK, "key": "host/h1/nft/t", "list": [MASK]}


def test_windows():
    deny = [{"kind": "deny", "schedule": "0 22 * * *", "duration": "1h30m"}]
    assert window_verdict(deny, dt.datetime(2026, 1, 1, 22, 10, tzinfo=UTC))[0] is False
    assert window_verdict(deny, dt.datetime(2026, 1, 1, 23, 29, tzinfo=UTC))[0] is False
    assert window_verdict(deny, dt.datetime(2026, 1, 1, 23, 31, tzinfo=UTC))[0] is True
    allow = [{"kind": "allow", "schedule": "0 8 * * 1-5", "duration": "10h"}]
    assert window_verdict(allow, dt.datetime(2026, 1, 5, 9, 0, tzinfo=UTC))[0] is True   # Monday
    assert window_verdict(allow, dt.datetime(2026, 1, 4, 9, 0, tzinfo=UTC)) == (False, "outside every allow window")
    assert window_verdict(allow, dt.datetime(2026, 1, 9, 17, 59, tzinfo=UTC))[0] is True  # Friday
    sunday = [{"kind": "deny", "schedule": "0 0 * * 0", "duration": "24h"}]
    assert window_verdict(sunday, dt.datetime(2026, 1, 4, 12, 0, tzinfo=UTC))[0] is False  # Sunday
    assert window_verdict(sunday, dt.datetime(2026, 1, 5, 12, 0, tzinfo=UTC))[0] is True
    zurich = [{"kind": "deny", "schedule": "0 22 * * *", "duration": "1h", "timezone": "Europe/Zurich"}]
    assert window_verdict(zurich, dt.datetime(2026, 1, 1, 21, 30, tzinfo=UTC))[0] is False
    assert parse_duration("1h30m") == dt.timedelta(minutes=90)
    with pytest.raises(ValueError):
        parse_duration("soon")


def test_hmac_signature():
    body = b'{"ref": "refs/heads/main"}'
    key = b"s3cret-s3cret-s3cret"

    def ok(secret, b, headers):  # noqa: ANN001
        return verify(secret, "POST", "/hooks/git", b, headers, ReplayCache()) == (0, "")
    sig = sign(key, "POST", "/hooks/git", body)
    assert sig["X-Netintent-Signature"].startswith("v1=") and ok(key, body, sig)
    assert not ok(key, body + b" ", sig)
    assert not ok(b"other", body, sig) and not ok(None, body, sig) and not ok(b"x", body, {})
