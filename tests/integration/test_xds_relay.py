"""The ADS relay (reconciler/xds/relay.py): a long-lived ADS server driven over its control
socket. A real workload (labs/workloads/agent.py) on loopback gets a snapshot set through the
RemoteCache, ACKs it, and keeps it when the client side (the driver) goes away."""
from __future__ import annotations

import subprocess
import sys
import threading
import time

import pytest

from reconciler.drivers.base import Target, TargetPlan
from reconciler.drivers.sidecar import SidecarDriver, factory
from reconciler.model import Layer
from reconciler.xds.bootstrap import write_workload_files
from reconciler.xds.ca import CA
from reconciler.xds.relay import RemoteCache, control_path, serve
from reconciler.xds.workload import Workload


@pytest.fixture
def relay(tmp_path, monkeypatch):
    monkeypatch.setenv("RECONCILER_ADS_RUN_DIR", str(tmp_path / "run"))
    stop = threading.Event()
    ready = tmp_path / "ready.json"
    t = threading.Thread(target=serve, args=("127.0.0.1:0", str(ready), stop), daemon=True)
    t.start()
    deadline = time.monotonic() + 10
    while not ready.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert ready.exists()
    import json
    info = json.loads(ready.read_text())
    yield info
    stop.set()
    t.join(10)


def test_control_socket_is_private(relay):
    sock = relay["control"]
    import os
    import stat
    assert stat.S_IMODE(os.stat(sock).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(os.path.dirname(sock)).st_mode) == 0o700


def test_a_snapshot_set_over_the_control_socket_reaches_a_workload(relay, tmp_path):
    from reconciler.xds.resources import LISTENER
    ca = CA.create("corp.example")
    boot = write_workload_files(tmp_path / "w", "n1", relay["address"], ca, {})
    cache = RemoteCache(relay["control"])
    assert cache.reachable() and not cache.has("n1")
    spec = {"address": "127.0.0.1", "port": 1, "http_filters": ["rbac", "router"], "tls": None,
            "rbac": {"principals": [], "source_ips": []}}
    from reconciler.model import Resource, ResourceKey
    name = "grpc/server?xds.resource.listening_address=127.0.0.1:1"
    want = Resource(ResourceKey(Layer.SIDECAR, "n1", "server-listener", name), spec, "app")
    with Workload("n1", tmp_path / "w", boot, serve=[("s", "127.0.0.1", 1)]):
        driver = SidecarDriver(cache=cache, ack_timeout=10)
        res = driver.apply([TargetPlan(Target("n1", Layer.SIDECAR, {}), (), (want,), (), True)])
        assert res["n1"].outcome.value == "applied", res["n1"]
        assert cache.status("n1")[LISTENER].state.value == "acked"
        assert cache.owners("n1") == {(LISTENER, name): "app"}


def test_the_factory_uses_a_relay_serving_the_address(relay, tmp_path):
    d = factory(xds_address=relay["address"])
    assert isinstance(d.cache, RemoteCache) and d.server is None
    assert control_path(relay["address"]).exists()


def test_relay_module_runs_and_stops_on_sigterm(tmp_path):
    import os
    env = dict(os.environ, RECONCILER_ADS_RUN_DIR=str(tmp_path / "run"))
    ready = tmp_path / "r.json"
    p = subprocess.Popen([sys.executable, "-m", "reconciler.xds.relay", "--listen", "127.0.0.1:0",
                          "--ready-file", str(ready)], env=env)
    try:
        deadline = time.monotonic() + 20
        while not ready.exists() and time.monotonic() < deadline and p.poll() is None:
            time.sleep(0.05)
        assert ready.exists()
    finally:
        p.terminate()
        assert p.wait(10) == 0
