"""Daemon behaviour with real git repos, the real HTTP server and the offline snapshot driver.

Not about devices: the snapshot driver stands in for them (it can be slowed down, made to
reject a change, and edited by hand to simulate drift).
"""
from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from svc_helpers import IntentsRepo, daemon_config, empty_snapshot, snapshot_edit, start_daemon, wait_until

from reconciler.drivers.snapshot import read_snapshot
from reconciler.service.daemon import Daemon
from reconciler.service.http import sign
from reconciler.status import Phase, Sync

SECRET = b"test-webhook-secret-0123456789"


@pytest.fixture
def env(tmp_path):
    repo = IntentsRepo(tmp_path)
    snapshot = empty_snapshot(tmp_path / "snap.json")
    daemons: list[Daemon] = []

    def start(**over) -> Daemon:
        d = start_daemon(daemon_config(tmp_path, repo, snapshot, **{
            "webhook_secret": SECRET, "driver_factory": "svc_helpers:slow_factory", "retry_base_s": 0.3,
            "retry_max_s": 2.0, **over}))
        daemons.append(d)
        return d

    class Env:
        pass
    e = Env()
    e.repo, e.snapshot, e.start, e.tmp = repo, snapshot, start, tmp_path
    try:
        yield e
    finally:
        for d in daemons:
            d.stop(wait_s=10)
            d.store.close()


def post(d: Daemon, path: str, body: bytes = b"{}", secret: bytes | None = SECRET) -> int:
    host, port = d.http.address
    headers = {"Content-Type": "application/json"}
    if secret is not None:
        headers.update(sign(secret, "POST", path, body))
    req = urllib.request.Request(f"http://{host}:{port}{path}", data=body, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status
    except urllib.error.HTTPError as exc:
        return exc.code


def get(d: Daemon, path: str) -> tuple[int, str]:
    host, port = d.http.address
    try:
        with urllib.request.urlopen(f"http://{host}:{port}{path}", timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def applied(d: Daemon, sha: str) -> bool:
    return d.current is not None and d.current.revision == sha and not d._sync_running


def commit_runs(d: Daemon) -> list:
    return [r for r in reversed(d.store.runs(limit=500)) if not r.dry_run and r.trigger not in ("drift-scan",)]


def wait_idle(d: Daemon) -> None:
    wait_until(lambda: not d._sync_running and not d.run_lock.locked(), what="daemon idle")


def test_startup_converges_and_history_records_it(env):
    d = env.start()
    wait_until(lambda: applied(d, env.repo.first), what="initial sync")
    runs = commit_runs(d)
    assert [(r.trigger, r.phase, r.revision) for r in runs] == [("startup", "succeeded", env.repo.first)]
    apps = {a.app: a for a in d.store.apps()}
    assert set(apps) == {"shop", "billing", "analytics"}
    assert all(a.sync is Sync.SYNCED and a.revision == env.repo.first for a in apps.values())
    assert read_snapshot(env.snapshot)["resources"], "the snapshot driver received the desired state"
    code, body = get(d, "/healthz")
    assert code == 200 and json.loads(body)["leader"] is True
    code, metrics = get(d, "/metrics")
    assert 'reconciler_last_successful_sync_timestamp_seconds{app="shop"}' in metrics
    assert 'reconciler_reconcile_duration_seconds_count{trigger="startup"} 1.0' in metrics


def test_webhook_needs_a_valid_signature(env):
    d = env.start()
    wait_until(lambda: applied(d, env.repo.first))
    sha = env.repo.set_web_port(8081)
    env.repo.push()
    assert post(d, "/hooks/git", secret=None) == 401
    assert post(d, "/hooks/git", secret=b"wrong-secret-wrong-secret") == 401
    # the handler asks for a sync before it answers (request_sync sets _sync_running at once):
    # had a refused webhook triggered one, it would show now, running or recorded
    assert not d._sync_running and d.current.revision == env.repo.first, "an unsigned webhook triggered nothing"
    assert [r.trigger for r in commit_runs(d)] == ["startup"]
    assert post(d, "/hooks/git") == 202
    wait_until(lambda: applied(d, sha), what="webhook sync")
    assert commit_runs(d)[-1].trigger == "webhook"


def test_burst_of_pushes_is_coalesced_to_the_newest(env):
    d = env.start()
    wait_until(lambda: applied(d, env.repo.first))
    Path(str(env.snapshot) + ".delay").write_text("1.5")
    marker = Path(str(env.snapshot) + ".applying")
    marker.unlink(missing_ok=True)
    first = env.repo.set_web_port(8001)
    env.repo.push()
    assert post(d, "/hooks/git") == 202
    wait_until(marker.exists, what="first apply under way")
    shas = []
    for port in (8002, 8003, 8004, 8005):
        shas.append(env.repo.set_web_port(port))
        env.repo.push()
        assert post(d, "/hooks/git") == 202
    wait_until(lambda: applied(d, shas[-1]), timeout=30, what="newest applied")
    wait_idle(d)
    revs = [r.revision for r in commit_runs(d) if r.trigger == "webhook"]
    assert revs == [first, shas[-1]], "the burst collapsed into one run of the newest commit"
    assert "8005" in env.snapshot.read_text() and "8003" not in env.snapshot.read_text()
    # the commits changed shop only (narrowed syncs): every app is recorded at the newest revision
    wait_until(lambda: {a.revision for a in d.store.apps()} == {shas[-1]}, what="every app at the newest revision")


def test_bad_commit_is_refused_and_last_good_stays_applied(env):
    d = env.start(drift_interval_s=3600)
    wait_until(lambda: applied(d, env.repo.first))
    env.repo.edit_yaml("apps/shop.yaml", lambda y: y["spec"]["services"]["web"]["ports"][0].update(port=99999))
    bad = env.repo.commit("bad port")
    env.repo.push()
    assert post(d, "/hooks/git") == 202
    wait_until(lambda: d.refused and d.refused["sha"] == bad, what="refusal")
    wait_idle(d)
    assert d.current.revision == env.repo.first
    refused_runs = [r for r in commit_runs(d) if r.revision == bad]
    assert len(refused_runs) == 1 and refused_runs[0].phase == Phase.FAILED.value
    assert "apps/shop.yaml:" in refused_runs[0].error and "99999" in refused_runs[0].error
    from reconciler.service.hooks import check_revision
    hook_errors = check_revision(env.repo.bare, bad)
    assert hook_errors and refused_runs[0].error == "refused: " + "\n".join(hook_errors), "same errors as the hook"
    assert d.store.service("refused")["sha"] == bad
    # another poll does not record the same refusal again (request_sync marks the sync running
    # before it returns, so wait_idle waits for this poll's sync to end)
    d.request_sync("poll")
    wait_idle(d)
    assert len([r for r in commit_runs(d) if r.revision == bad]) == 1
    # the last good revision keeps being healed
    gone: list = []
    snapshot_edit(env.snapshot, _drop("shop", gone))
    d._drift_job()
    assert _has(env.snapshot, gone[0])
    heal = [r for r in commit_runs(d) if r.trigger == "self-heal"][-1]
    assert heal.revision == env.repo.first and heal.phase == "succeeded"
    # a fixed commit is applied and clears the refusal
    good = env.repo.set_web_port(8090)
    env.repo.push()
    post(d, "/hooks/git")
    wait_until(lambda: applied(d, good))
    assert d.refused is None and d.store.service("refused") is None


def _drop(app: str, dropped: list):
    """Delete one host resource of `app` from the snapshot (manual drift); its key goes to `dropped`."""
    def fn(s):
        keep = []
        for r in s["resources"]:
            if r["app"] == app and r["key"].startswith("host/") and len(dropped) == 0:
                dropped.append(r["key"])
                continue
            keep.append(r)
        s["resources"] = keep
    return fn


def _has(path: Path, key: str) -> bool:
    return any(r["key"] == key for r in read_snapshot(path)["resources"])


def test_self_heal_per_app_versus_report_only(env):
    d = env.start()
    wait_until(lambda: applied(d, env.repo.first))
    d.store.set_self_heal("billing", False)  # the repo policy says self_heal: true
    shop_gone, billing_gone = [], []
    snapshot_edit(env.snapshot, _drop("shop", shop_gone))
    snapshot_edit(env.snapshot, _drop("billing", billing_gone))
    d._drift_job()
    assert _has(env.snapshot, shop_gone[0]), "shop healed"
    assert not _has(env.snapshot, billing_gone[0]), "billing only reported"
    apps = {a.app: a for a in d.store.apps()}
    assert apps["billing"].sync is Sync.OUT_OF_SYNC and apps["billing"].drift_count == 1
    assert apps["shop"].sync is Sync.SYNCED
    assert d.store.drift_events("billing", limit=5)[0].action == "create"
    heals = [r for r in commit_runs(d) if r.trigger == "self-heal"]
    assert len(heals) == 1 and json.loads(heals[0].apps) == ["shop"]
    code, metrics = get(d, "/metrics")
    assert 'reconciler_drift_resources{app="billing"} 1.0' in metrics


def test_self_heal_within_one_drift_interval(env):
    d = env.start(drift_interval_s=1.0)
    wait_until(lambda: applied(d, env.repo.first))
    gone: list = []
    t0 = time.monotonic()
    snapshot_edit(env.snapshot, _drop("shop", gone))
    wait_until(lambda: _has(env.snapshot, gone[0]), timeout=5, what="self-heal")
    assert time.monotonic() - t0 < 2.5


def test_deny_window_blocks_auto_sync_but_not_manual(env):
    d = env.start()
    wait_until(lambda: applied(d, env.repo.first))
    env.repo.edit_yaml("reconciler.yaml", lambda y: y["sync"].update(
        windows=[{"kind": "deny", "schedule": "* * * * *", "duration": "2h"}]))
    sha = env.repo.set_web_port(8123)
    env.repo.push()
    assert post(d, "/hooks/git") == 202
    wait_until(lambda: d.window_reason, what="window denial")
    wait_idle(d)
    assert d.current.revision == env.repo.first
    assert "deny window" in json.loads(get(d, "/healthz")[1])["window"]
    gone: list = []
    snapshot_edit(env.snapshot, _drop("shop", gone))
    assert post(d, "/sync") == 202  # manual sync is allowed
    wait_until(lambda: applied(d, sha), what="manual sync")
    assert commit_runs(d)[-1].trigger == "manual"
    assert _has(env.snapshot, gone[0]) and "8123" in env.snapshot.read_text()
    # drift is still scanned in a deny window, but not healed
    gone = []
    snapshot_edit(env.snapshot, _drop("shop", gone))
    d._drift_job()
    assert not _has(env.snapshot, gone[0]), "self-heal denied by the window"
    assert {a.app: a for a in d.store.apps()}["shop"].sync is Sync.OUT_OF_SYNC


def test_failing_app_is_retried_with_backoff_and_never_holds_healthy_ones(env):
    from reconciler.compile import Compiler
    from reconciler.intents.validate import load_repo
    desired = Compiler().compile(load_repo(str(env.repo.work)))
    bad_key = next(str(r.key) for r in desired if r.app == "analytics" and r.key.target == "h4" and r.key.layer.value == "host")
    snapshot_edit(env.snapshot, lambda s: s.update(reject=[bad_key]))
    d = env.start()
    wait_until(lambda: applied(d, env.repo.first))
    sha = env.repo.set_web_port(8200)
    env.repo.push()
    post(d, "/hooks/git")
    wait_until(lambda: applied(d, sha), what="healthy app applied despite the failing one")
    apps = {a.app: a for a in d.store.apps()}
    assert apps["shop"].sync is Sync.SYNCED and apps["shop"].revision == sha
    assert apps["analytics"].health.value == "Degraded"
    # four retries: the last wait (>= 2.0 s) could not pass with a constant 0.3 s delay and the 1 s retry tick
    wait_until(lambda: len([r for r in commit_runs(d) if r.trigger == "retry"]) >= 4, timeout=30, what="retries")
    retries = [r for r in commit_runs(d) if r.trigger == "retry"]
    # h4 rejects its whole change set, so the node's own xDS files there (the fabric, app "")
    # are not written either and are retried with analytics; no healthy app is ever retried
    assert all("analytics" in json.loads(r.apps) and set(json.loads(r.apps)) <= {"analytics", ""} for r in retries)
    # The wait between a retry's end and the next retry's start is at least the backoff delay of
    # the failures so far (0.3 s doubling, at most 2 s): 0.6, 1.2, 2.0 s. Measured from the end of
    # a run, not its start, so slow runs on a loaded machine do not hide the growth.
    waits = [b.started - a.finished for a, b in zip(retries, retries[1:])]
    least = [min(2.0, 0.3 * 2 ** (i + 1)) for i in range(len(waits))]
    assert all(w >= m - 0.05 for w, m in zip(waits, least)), f"backoff grows: waits {waits}, at least {least}"
    snapshot_edit(env.snapshot, lambda s: s.update(reject=[]))
    wait_until(lambda: {a.app: a for a in d.store.apps()}["analytics"].sync is Sync.SYNCED, timeout=10)
    wait_until(lambda: not d.retries, what="retry cleared")


def test_rollback_holds_until_a_new_commit(env):
    from reconciler.cli import main
    d = env.start()
    wait_until(lambda: applied(d, env.repo.first))
    second = env.repo.set_web_port(8300)
    env.repo.push()
    post(d, "/hooks/git")
    wait_until(lambda: applied(d, second))
    secret_file = env.tmp / "secret"
    secret_file.write_bytes(SECRET)
    host, port = d.http.address
    rc = main(["rollback", env.repo.first[:10], "--repo", str(env.repo.bare), "--store", str(env.tmp / "db.sqlite"),
               "--state-dir", str(env.tmp / "cli"), "--daemon", f"{host}:{port}",
               "--webhook-secret-file", str(secret_file)])
    assert rc == 0
    wait_until(lambda: applied(d, env.repo.first), what="rollback applied")
    last = commit_runs(d)[-1]
    assert last.trigger == "rollback" and last.rollback
    assert all(a.held_revision == env.repo.first for a in d.store.apps())
    d.request_sync("poll")           # marks the sync running before it returns: wait_idle waits for it
    wait_idle(d)
    assert d.current.revision == env.repo.first, "auto-sync holds at the rollback"
    third = env.repo.set_web_port(8301)
    env.repo.push()
    post(d, "/hooks/git")
    wait_until(lambda: applied(d, third), what="new commit releases the hold")
    assert d.store.hold() is None and all(not a.held for a in d.store.apps())


def test_rollback_release_and_status_output(env, capsys):
    from reconciler.cli import main
    d = env.start()
    wait_until(lambda: applied(d, env.repo.first))
    second = env.repo.set_web_port(8400)
    env.repo.push()
    post(d, "/hooks/git")
    wait_until(lambda: applied(d, second))
    store = ["--store", str(env.tmp / "db.sqlite")]
    assert main(["rollback", env.repo.first, "--repo", str(env.repo.bare), "--state-dir", str(env.tmp / "cli"), *store]) == 0
    d.request_sync("manual", True)
    wait_until(lambda: applied(d, env.repo.first))
    capsys.readouterr()
    main(["status", *store])
    out = capsys.readouterr().out
    assert f"ROLLBACK HOLD: auto-sync held at {env.repo.first[:12]}" in out
    assert main(["rollback", "--release", *store]) == 0
    d.request_sync("poll")
    wait_until(lambda: applied(d, second), what="release follows the branch again")
    main(["history", "--app", "shop", *store])
    out = capsys.readouterr().out
    assert "rollback" in out and second[:12] in out


def test_unreachable_repo_is_survived(env):
    d = env.start()
    wait_until(lambda: applied(d, env.repo.first))
    moved = env.tmp / "moved.git"
    env.repo.bare.rename(moved)
    d.request_sync("poll")
    wait_until(lambda: d.source_error, what="source error reported")
    health = json.loads(get(d, "/healthz")[1])
    assert health["ok"] and not health["source"]["ok"] and "cannot fetch" in health["source"]["error"]
    moved.rename(env.repo.bare)
    sha = env.repo.set_web_port(8500)
    env.repo.push()
    d.request_sync("poll")
    wait_until(lambda: applied(d, sha), what="sync after the repo came back")
    assert not d.source_error


def test_manual_sync_of_one_app_repairs_only_that_app(env):
    d = env.start()
    wait_until(lambda: applied(d, env.repo.first))
    for app in ("shop", "billing"):
        d.store.set_self_heal(app, False)
    shop_gone, billing_gone = [], []
    snapshot_edit(env.snapshot, _drop("shop", shop_gone))
    snapshot_edit(env.snapshot, _drop("billing", billing_gone))
    assert post(d, "/sync", json.dumps({"app": "billing"}).encode()) == 202
    wait_until(lambda: _has(env.snapshot, billing_gone[0]), what="billing synced")
    wait_idle(d)
    assert not _has(env.snapshot, shop_gone[0]), "shop untouched"
    last = commit_runs(d)[-1]
    assert last.trigger == "manual" and json.loads(last.apps) == ["billing"]
    # the 202 comes after the handler's request_sync, which marks the sync running: wait_idle waits for it
    assert post(d, "/sync", json.dumps({"app": "nosuchapp"}).encode()) == 202
    wait_idle(d)
    assert commit_runs(d)[-1].run_id == last.run_id, "an unknown app syncs nothing"
    assert post(d, "/sync") == 202
    wait_until(lambda: _has(env.snapshot, shop_gone[0]), what="full manual sync")


def test_restart_with_a_bad_head_reconciles_the_last_good_revision(env):
    d = env.start()
    wait_until(lambda: applied(d, env.repo.first))
    env.repo.edit_yaml("apps/shop.yaml", lambda y: y["spec"]["segment"].update(subnet="not-a-subnet"))
    bad = env.repo.commit("bad subnet")
    env.repo.push()
    d.request_sync("poll")
    wait_until(lambda: d.refused and d.refused["sha"] == bad)
    wait_idle(d)
    d.stop(wait_s=10)
    gone: list = []
    snapshot_edit(env.snapshot, _drop("shop", gone))  # drift while the daemon was down
    d2 = env.start()
    wait_until(lambda: d2.refused and d2.refused["sha"] == bad, what="refused again after restart")
    wait_until(lambda: _has(env.snapshot, gone[0]), what="last good revision reconciled at startup")
    wait_idle(d2)
    assert d2.current.revision == env.repo.first
    last = commit_runs(d2)[-1]
    assert last.trigger == "startup" and last.revision == env.repo.first and last.phase == "succeeded"


def test_unreachable_target_is_reported_and_survived(env):
    snapshot_edit(env.snapshot, lambda s: s.update(unreachable=["h4"]))
    d = env.start()
    wait_until(lambda: applied(d, env.repo.first))
    apps = {a.app: a for a in d.store.apps()}
    assert apps["analytics"].sync is Sync.UNKNOWN and apps["analytics"].health.value == "Degraded"
    assert "unreachable" in apps["analytics"].message
    assert apps["shop"].sync is Sync.SYNCED and apps["billing"].sync is Sync.SYNCED
    wait_until(lambda: len([r for r in commit_runs(d) if r.trigger == "retry"]) >= 2, timeout=10, what="retries")
    code, body = get(d, "/healthz")
    assert code == 200 and "analytics" in json.loads(body)["retrying"]
    assert 'reconciler_apply_failures_total{app="analytics",layer="host"}' in get(d, "/metrics")[1]
    snapshot_edit(env.snapshot, lambda s: s.update(unreachable=[]))
    wait_until(lambda: {a.app: a for a in d.store.apps()}["analytics"].sync is Sync.SYNCED, timeout=10,
               what="analytics converged once the target is back")
