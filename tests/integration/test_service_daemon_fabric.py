"""Daemon: fabric-owned drift (app "") is healed like an application's, and a layer whose
driver cannot be loaded is a recorded failure the daemon survives and retries.

Real parts: git repos, the daemon with its scheduler, store and HTTP server; the snapshot
driver stands in for the devices (edited by hand to simulate drift).
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from svc_helpers import (
    IntentsRepo,
    SlowSnapshot,
    daemon_config,
    empty_snapshot,
    snapshot_edit,
    start_daemon,
    wait_until,
)

from reconciler.drivers.registry import DriverLoadError
from reconciler.drivers.snapshot import read_snapshot
from reconciler.model import Layer
from reconciler.service.daemon import Daemon

SECRET = b"fabric-test-secret-0123456789"
FABRIC_KEYS = ("switch/leaf1/bgp/65001", "hypervisor/hv1/ovs-flow/priority=50,in_port=eth1")


def grpc_less_factory(layer, path, **_kw):  # noqa: ANN001
    """Snapshot drivers, except that while `<snapshot>.no-grpc` exists the sidecar layer fails to
    load the way the registry reports a missing module."""
    if layer is Layer.SIDECAR and Path(str(path) + ".no-grpc").exists():
        raise DriverLoadError("sidecar layer: cannot load reconciler.drivers.sidecar: module 'grpc' is not "
                              "installed (pip install the project again, or leave this layer out)")
    return SlowSnapshot(layer, path)


@pytest.fixture
def env(tmp_path):
    class Env:
        repo: IntentsRepo | None = None
    e = Env()
    e.tmp, e.snapshot = tmp_path, empty_snapshot(tmp_path / "snap.json")
    daemons: list[Daemon] = []

    def start(sync: dict | None = None, **over) -> Daemon:  # noqa: ANN003
        """The first call makes the intents repo (its `sync` policy from `sync`)."""
        if e.repo is None:
            (tmp_path / "repo").mkdir()
            e.repo = IntentsRepo(tmp_path / "repo", sync=sync)
        d = start_daemon(daemon_config(tmp_path, e.repo, e.snapshot, **{
            "webhook_secret": SECRET, "driver_factory": "svc_helpers:slow_factory", "retry_base_s": 0.3,
            "retry_max_s": 2.0, **over}))
        daemons.append(d)
        return d
    e.start = start
    try:
        yield e
    finally:
        for d in daemons:
            d.stop(wait_s=10)
            d.store.close()


def applied(d: Daemon, sha: str) -> bool:
    return d.current is not None and d.current.revision == sha and not d._sync_running


def runs(d: Daemon, trigger: str) -> list:
    return [r for r in reversed(d.store.runs(limit=500)) if r.trigger == trigger]


def drop(path: Path, keys: tuple[str, ...]) -> None:
    """Delete resources from the snapshot by hand (manual drift)."""
    snapshot_edit(path, lambda s: s.update(resources=[r for r in s["resources"] if r["key"] not in keys]))


def has(path: Path, key: str) -> bool:
    return any(r["key"] == key for r in read_snapshot(path)["resources"])


def test_fabric_drift_is_self_healed(env):
    d = env.start()
    wait_until(lambda: applied(d, env.repo.first), what="initial sync")
    owners = {r["key"]: r["app"] for r in read_snapshot(env.snapshot)["resources"]}
    assert all(owners[k] == "" for k in FABRIC_KEYS), "these are fabric resources (no application owns them)"
    drop(env.snapshot, FABRIC_KEYS)
    d._drift_job()
    assert all(has(env.snapshot, k) for k in FABRIC_KEYS), "the fabric was repaired"
    heals = runs(d, "self-heal")
    assert len(heals) == 1 and json.loads(heals[0].apps) == [""] and heals[0].phase == "succeeded"
    scan = runs(d, "drift-scan")[-1]
    assert scan.phase in ("succeeded", "failed")


def test_fabric_drift_is_healed_within_one_drift_interval(env):
    d = env.start(drift_interval_s=1.0)
    wait_until(lambda: applied(d, env.repo.first), what="initial sync")
    drop(env.snapshot, FABRIC_KEYS[1:])
    wait_until(lambda: has(env.snapshot, FABRIC_KEYS[1]), timeout=10, what="fabric self-heal")
    wait_until(lambda: runs(d, "self-heal"), what="self-heal run recorded")


def test_fabric_drift_is_only_reported_when_the_repo_says_so(env):
    d = env.start(sync={"self_heal": False})
    wait_until(lambda: applied(d, env.repo.first), what="initial sync")
    drop(env.snapshot, FABRIC_KEYS)
    d._drift_job()
    assert not any(has(env.snapshot, k) for k in FABRIC_KEYS), "self_heal: false leaves the drift to a sync"
    assert runs(d, "self-heal") == []
    d.request_sync("manual", True)
    wait_until(lambda: all(has(env.snapshot, k) for k in FABRIC_KEYS), what="manual sync repairs it")


def test_driver_load_error_is_a_recorded_failure_and_retried(env):
    broken = Path(str(env.snapshot) + ".no-grpc")
    broken.write_text("")
    d = env.start(driver_factory=f"{__name__}:grpc_less_factory")
    wait_until(lambda: runs(d, "startup"), what="startup run recorded")
    run = runs(d, "startup")[-1]
    assert run.phase == "failed" and "'grpc' is not installed" in run.error and run.revision == env.repo.first
    health = d.health()
    assert health["ok"] and not health["drivers"]["ok"] and "'grpc'" in health["drivers"]["error"]
    assert d.current is None and read_snapshot(env.snapshot)["resources"] == [], "nothing applied"
    # polls keep trying but do not flood the history with the same error
    for _ in range(3):
        d.request_sync("poll")
        wait_until(lambda: not d._sync_running, what="poll done")
    assert len([r for r in d.store.runs(limit=50) if "grpc" in r.error]) == 1
    d.request_sync("manual", True)  # someone asked: they get an answer in the store
    wait_until(lambda: runs(d, "manual"), what="manual run recorded")
    assert "'grpc' is not installed" in runs(d, "manual")[-1].error
    # the module is back: the next sync builds the drivers and applies
    broken.unlink()
    d.request_sync("poll")
    wait_until(lambda: applied(d, env.repo.first), what="sync after the drivers load again")
    assert d.health()["drivers"] == {"ok": True, "error": ""}
    assert [r.phase for r in runs(d, "poll")][-1] == "succeeded"


def test_missing_module_in_the_registry_is_survived(env, monkeypatch):
    """The real registry path: a layer whose module cannot be imported (as when grpc is missing)."""
    from reconciler.drivers import registry
    monkeypatch.setitem(registry.FACTORIES, Layer.SIDECAR, "netintent_missing_module_for_test:factory")
    d = env.start(observed=None, driver_factory=None, layers=("sidecar",))
    wait_until(lambda: runs(d, "startup"), what="startup run recorded")
    assert "netintent_missing_module_for_test" in runs(d, "startup")[-1].error
    assert "netintent_missing_module_for_test" in d.health()["drivers"]["error"]
    assert d.scheduler.running and d.health()["ok"]
