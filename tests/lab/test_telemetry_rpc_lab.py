"""Sidecar telemetry on the reference lab (labs/app-fabric.clab.yml, shared fixture): K gRPC calls
made through a workload's admin Run (servers failing every k-th call) must show up, exactly, in
`netintent_app_rpc_total{app,service,code,target}` and the latency histogram's count, read from the
workloads' `/netintent.lab.Admin/Stats` at their admin (CSDS) address and attributed through the
compiled desired state. Marked `lab`.

All four layers are applied first (`reconciler apply`, a private CA dir): the calls need the hosts'
xDS bootstrap and certificates and the sidecars' config. h1 (shop/web) calls xds:///api.shop:8080,
served by shop/api on h3 and h5; h2 also holds that target and must not move. Counters are
cumulative on a shared lab: the test compares deltas.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import grpc
import pytest

from reconciler.compile import compile_repo
from reconciler.drivers.registry import targets_of
from reconciler.intents.validate import load_repo
from reconciler.lab.grpc_checks import admin_address
from reconciler.model import Layer
from reconciler.telemetry.export import TelemetryExport
from reconciler.telemetry.model import Sample
from reconciler.telemetry.rpc import RpcCollector, RpcTotals, rpc_index, rpc_round
from reconciler.telemetry.totals import Totals

pytestmark = pytest.mark.lab
REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples" / "intents"
API = "xds:///api.shop:8080"
K, FAIL_EVERY = 60, 4


@pytest.fixture(scope="module")
def sidecars(app_fabric_lab, tmp_path_factory):
    lab = app_fabric_lab
    env = dict(os.environ, RECONCILER_CA_DIR=str(tmp_path_factory.mktemp("rpc-ca")))
    cp = subprocess.run([sys.executable, "-m", "reconciler.cli", "apply", str(EXAMPLES), "--inventory",
                         str(lab.inventory_path)], capture_output=True, text=True, timeout=300, env=env, cwd=REPO)
    assert cp.returncode == 0, cp.stdout[-3000:] + cp.stderr[-1000:]
    repo = load_repo(str(EXAMPLES), inventory_override=str(lab.inventory_path))
    return lab, rpc_index(compile_repo(repo)), targets_of(repo.inventory)[Layer.SIDECAR]


def sample(rt: RpcTotals, totals: Totals, index, targets) -> dict[tuple, float]:
    """One collection round of the sidecar layer; the series as exported."""
    totals.add(rpc_round(RpcCollector(timeout_s=5.0), targets, index, rt, Sample(0.0)))
    out = {}
    for fam in TelemetryExport(totals, rt.families).collect():
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(rows: dict[tuple, float], metric: str, **labels: str) -> float:
    return sum(v for (m, ls), v in rows.items() if m == metric and labels.items() <= dict(ls).items())


def run(lab, node: str, n: int, fail_every: int) -> dict:
    req = json.dumps({"target": API, "n": n, "timeout_s": 5.0, "concurrency": 10, "fail_every": fail_every})
    with grpc.insecure_channel(admin_address(lab, node)) as ch:
        return json.loads(ch.unary_unary("/netintent.lab.Admin/Run")(req.encode(), timeout=60.0))


def test_k_grpc_calls_some_failing_are_exported_per_app_service_and_code(sidecars):
    lab, index, targets = sidecars
    rt, totals = RpcTotals(), Totals()
    before = sample(rt, totals, index, targets)
    assert not totals.down, totals.down          # every workload's stats were read
    tally = run(lab, "h1", K, FAIL_EVERY)
    after = sample(rt, totals, index, targets)
    assert not totals.down, totals.down
    ok, failed = sum(tally["servers"].values()), sum(tally["errors"].values())
    assert ok + failed == K and set(tally["errors"]) == {"UNAVAILABLE"} and failed > 0, tally

    def delta(metric: str, **labels: str) -> float:
        return value(after, metric, **labels) - value(before, metric, **labels)
    mine = {"app": "shop", "service": "api", "target": "h1"}
    assert delta("netintent_app_rpc_total", code="OK", **mine) == ok
    assert delta("netintent_app_rpc_total", code="UNAVAILABLE", **mine) == failed
    assert delta("netintent_app_rpc_total", **mine) == K
    assert delta("netintent_app_rpc_latency_seconds_count", **mine) == K
    assert delta("netintent_app_rpc_latency_seconds_bucket", le="+Inf", **mine) == K
    assert delta("netintent_app_rpc_latency_seconds_bucket", le="5.0", **mine) == K    # within the 5 s deadline
    assert delta("netintent_app_rpc_total", target="h2") == 0                         # another caller: untouched
    assert value(after, "netintent_telemetry_target_up", layer="sidecar", target="h1") == 1
