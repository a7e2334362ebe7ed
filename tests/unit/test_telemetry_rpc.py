"""Sidecar telemetry, pure stages: xds:/// targets attributed from the compiled desired state, the
workload's Stats answer (labs/workloads/agent.py) accepted by the reader's shape check, reset-safe
totals, unknown (never zero) for an unreadable workload, and the exported series."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from reconciler.compile import compile_repo
from reconciler.intents.validate import load_repo
from reconciler.telemetry.export import TelemetryExport
from reconciler.telemetry.model import Sample
from reconciler.telemetry.rpc import RpcRead, RpcTotals, _check, rpc_index, status
from reconciler.telemetry.totals import Totals

ROOT = Path(__file__).resolve().parents[2]
API = "xds:///api.shop:8080"


@pytest.fixture(scope="module")
def index():
    return rpc_index(compile_repo(load_repo(ROOT / "examples" / "intents")))


@pytest.fixture(scope="module")
def agent():
    spec = importlib.util.spec_from_file_location("ni_lab_agent", ROOT / "labs" / "workloads" / "agent.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def stats(started: float, ok: int, unavailable: int, target: str = API, lat: float = 0.02) -> dict:
    nb = 15
    counts = [0] * nb
    for i in range(nb):
        counts[i] = ok + unavailable if i >= 2 else 0     # all calls in the 0.025 bucket and above
    return {"started": started, "pid": 1, "buckets": [0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0,
                                                      2.5, 5.0, 7.5, 10.0],
            "targets": {target: {"codes": {"OK": ok, "UNAVAILABLE": unavailable},
                                 "latency": {"counts": counts, "sum": lat * (ok + unavailable),
                                             "count": ok + unavailable}}}, "served": {}}


def exported(rt: RpcTotals, totals: Totals | None = None) -> dict[tuple, float]:
    out = {}
    for fam in TelemetryExport(totals or Totals(), rt.families).collect():
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_xds_targets_map_to_the_callee_app_and_service(index):
    assert index[("h1", API)] == ("shop", "api")
    assert all(t == f"xds:///{s}.{a}:{t.rsplit(':', 1)[1]}" for (_n, t), (a, s) in index.items())
    assert not any(node == "h3" and t == API for node, t in index)    # h3 serves api, calls nothing there


def test_the_agent_stats_answer_is_what_the_reader_accepts(agent):
    st = agent.Stats()
    st.call(API, "OK", 0.003)
    st.call(API, "OK", 0.2)
    st.call(API, "UNAVAILABLE", 20.0)
    st.served("api-v1-h3", "OK")
    doc = json.loads(st.snapshot())
    _check(doc)
    t = doc["targets"][API]
    assert t["codes"] == {"OK": 2, "UNAVAILABLE": 1}
    assert t["latency"]["counts"][0] == 1 and t["latency"]["counts"][-2] == 2 and t["latency"]["count"] == 3
    assert doc["served"] == {"api-v1-h3": {"OK": 1}}


def test_totals_are_reset_safe_and_never_decrease(index):
    rt = RpcTotals()
    rt.add([RpcRead("h1", True, stats(100.0, 10, 2))], index)
    rt.add([RpcRead("h1", True, stats(100.0, 15, 3))], index)
    rt.add([RpcRead("h1", True, stats(200.0, 4, 1))], index)        # the workload restarted
    rows = exported(rt)
    key = ("netintent_app_rpc_total", (("app", "shop"), ("code", "OK"), ("service", "api"), ("target", "h1")))
    assert rows[key] == 19 and rt.resets == 1
    assert rows[key[:1] + ((("app", "shop"), ("code", "UNAVAILABLE"), ("service", "api"), ("target", "h1")),)] == 4
    hist = {dict(ls).get("le"): v for (m, ls), v in rows.items() if m == "netintent_app_rpc_latency_seconds_bucket"}
    assert hist["0.01"] == 0 and hist["0.025"] == 23 and hist["+Inf"] == 23
    assert rows[("netintent_app_rpc_latency_seconds_count", (("app", "shop"), ("service", "api"),
                                                              ("target", "h1")))] == 23


def test_an_unreadable_workload_is_unknown_not_zero(index):
    rt = RpcTotals()
    rt.add([RpcRead("h1", True, stats(100.0, 10, 2))], index)
    down = [RpcRead("h1", False, error="UNAVAILABLE: connection refused")]
    rt.add(down, index)
    treads, unknown = status(down, index)
    totals = Totals()
    totals.add(Sample(0.0, targets=tuple(treads), unknown=tuple(unknown)))
    rows = exported(rt, totals)
    assert not any(m.startswith("netintent_app_rpc") for m, _ in rows)
    assert rows[("netintent_telemetry_target_up", (("layer", "sidecar"), ("target", "h1")))] == 0
    assert rows[("netintent_app_telemetry_unknown_targets", (("app", "shop"), ("layer", "sidecar")))] == 1
    rt.add([RpcRead("h1", True, stats(100.0, 11, 2))], index)       # back: totals carry on
    assert exported(rt)[("netintent_app_rpc_total", (("app", "shop"), ("code", "OK"), ("service", "api"),
                                                     ("target", "h1")))] == 11


def test_targets_the_desired_state_does_not_name_are_not_attributed(index):
    rt = RpcTotals()
    rt.add([RpcRead("h1", True, stats(1.0, 5, 0, target="xds:///evil.shop:8080")),
            RpcRead("h3", True, stats(1.0, 5, 0))], index)           # h3 holds no listener for it
    assert not any(m.startswith("netintent_app_rpc") for m, _ in exported(rt))


def test_a_malformed_answer_is_rejected():
    bad = stats(1.0, 1, 0)
    bad["targets"][API]["latency"]["counts"] = [1, 2]
    with pytest.raises(ValueError):
        _check(bad)


def test_the_cached_exposition_text_carries_the_rpc_series(index):
    rt, totals = RpcTotals(), Totals()
    rt.add([RpcRead("h1", True, stats(1.0, 3, 1))], index)
    totals.add(Sample(0.0))
    text = TelemetryExport(totals, rt.families).text().decode()
    assert 'netintent_app_rpc_total{app="shop",code="UNAVAILABLE",service="api",target="h1"} 1.0' in text
    assert 'netintent_app_rpc_latency_seconds_bucket{app="shop",le="+Inf",service="api",target="h1"} 4.0' in text


def test_the_tui_shows_rpc_calls_per_service_and_mean_latency_from_the_exported_text(index):
    from tui.telemetrymodel import TelemetryFeed
    from tui.widgets.traffic_view import summary_text
    rt, totals = RpcTotals(), Totals()
    rt.add([RpcRead("h1", True, stats(1.0, 30, 10, lat=0.02))], index)
    totals.add(Sample(0.0))
    text = TelemetryExport(totals, rt.families).text().decode()
    feed = TelemetryFeed(lambda: text, min_interval_s=0)
    feed.poll(1.0)
    t = feed.traffic("shop")
    assert t is not None
    assert set(t.rpc) == {("api", "OK", 30), ("api", "UNAVAILABLE", 10)}
    (svc, mean_s, n), = t.rpc_latency
    assert svc == "api" and n == 40 and mean_s == pytest.approx(0.02)
    assert "mean latency" in summary_text(t).plain and "20.0 ms over 40 call(s)" in summary_text(t).plain
