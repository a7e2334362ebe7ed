"""grpcio's silent xDS failure modes (see DESIGN.md, sidecars) against real clients.

For each mode: the compiled config works; a deliberately wrong variant is ACKed by grpcio
yet its RPCs fail (that is what makes it silent); the driver refuses to push it; and when
some other writer serves it anyway, observe detects it (lint finding in Observation.error,
drift against the desired spec). Also: RPCs to a target no intent provides hang (grpc's
15 s does-not-exist timer) and observe names the target the workload asks for; an xDS
server whose bootstrap lacks `server_listener_resource_name_template` never asks for its
listener, which observe reports as a missing resource.
"""
from __future__ import annotations

import json

import pytest
from xds_helpers import compile_nodes, loopback_addr, shop_app, wait_until

from reconciler.model import Layer, Resource, ResourceKey, thaw
from reconciler.status import Outcome
from reconciler.xds import resources as R
from reconciler.xds.server import AckState

HOSTS = ("w1", "a1", "a2")


@pytest.fixture
def running(mesh):
    net, port = loopback_addr()
    nodes = compile_nodes({"shop": shop_app(net, port, web_address="127.0.0.1")}, HOSTS)
    mesh.push(nodes)
    target = f"xds:///api.shop:{port}"
    mesh.start_api(net, port)
    mesh.start("w1", warm=[target])
    assert wait_until(lambda: _works(mesh, target), 15), "compiled config never worked"
    yield mesh, nodes, target, net, port


def _works(m, target, n=20) -> bool:
    t = m.workloads["w1"].run(target, n=n, timeout_s=2)
    return not t["errors"] and sum(t["servers"].values()) == n


def _broken(nodes, kind, mutate):
    out = []
    for r in nodes["w1"]:
        spec = thaw(r.spec)
        if r.key.kind == kind:
            mutate(spec)
        out.append(Resource(r.key, spec, r.app))
    return out


def _serve_raw(m, resources):
    """Serve resources bypassing the driver's guard (another writer / a buggy compiler)."""
    snap = {t: {} for t in R.TYPE_URLS}
    for r in resources:
        snap[R.KIND_TYPE[r.key.kind]][r.key.name] = R.to_proto(r.key.kind, r.key.name, thaw(r.spec))
    return m.cache.set_node("w1", snap)


@pytest.mark.parametrize("kind,mutate,finding", [
    ("route", lambda s: s.__setitem__("domains", [s["domains"][0].split(":")[0]]), "do not match the target"),
    ("endpoints", lambda s: [loc.__setitem__("weight", None) for loc in s["localities"]],
     "no load_balancing_weight"),
])
def test_silent_failure_is_refused_and_detected(running, kind, mutate, finding):
    m, nodes, target, net, port = running
    assert R.lint((r.key.kind, r.key.name, thaw(r.spec)) for r in nodes["w1"]) == []
    broken = _broken(nodes, kind, mutate)

    # the driver refuses to push it: nothing reaches the node
    before = m.cache.versions("w1")
    res = m.driver.apply(m.plans({"w1": broken}))["w1"]
    assert res.outcome is Outcome.FAILED and finding in res.error, res
    assert res.failed_keys and all(f"/{kind}/" in k for k in res.failed_keys)
    assert m.cache.versions("w1") == before

    # served anyway: grpcio ACKs it, and RPCs fail
    versions = _serve_raw(m, broken)
    changed = {t: v for t, v in versions.items() if before.get(t) != v}
    st = m.cache.wait_for({"w1": changed}, 5)["w1"]
    assert all(s.state is AckState.ACKED for s in st.values()), st
    assert wait_until(lambda: not _works(m, target, 5), 5), "broken config kept working"
    t = m.workloads["w1"].run(target, n=5, timeout_s=1)
    assert t["servers"] == {} and set(t["errors"]) <= {"UNAVAILABLE", "DEADLINE_EXCEEDED"}, t

    # observe detects it: lint finding + drift against the desired spec
    obs = m.driver.observe([m.target("w1")])["w1"]
    assert finding in obs.error, obs.error
    desired = {r.key: thaw(r.spec) for r in nodes["w1"]}
    drift = [r.key for r in obs.resources if r.key in desired and thaw(r.spec) != desired[r.key]]
    assert drift and all(k.kind == kind for k in drift)

    # the reconciler repairs it
    res = m.driver.apply(m.plans({"w1": nodes["w1"]}))["w1"]
    assert res.outcome is Outcome.APPLIED, res
    assert wait_until(lambda: _works(m, target), 5)


def test_unknown_target_hangs_and_is_reported(running):
    """A target no intent provides: RPCs don't fail, they hang (grpc's 15 s does-not-exist
    timer); observe names the target the workload asks for."""
    m, nodes, target, net, port = running
    t = m.workloads["w1"].run(f"xds:///nope.shop:{port}", n=1, timeout_s=1)
    assert t["errors"] == {"DEADLINE_EXCEEDED": 1}, t
    obs = m.driver.observe([m.target("w1")])["w1"]
    assert f"LDS nope.shop:{port} is asked for but not served" in obs.error, obs.error
    assert _works(m, target)  # the other target is unaffected


def test_server_without_listener_template_is_reported_missing(running, tmp_path):
    m, nodes, target, net, port = running
    key = ResourceKey(Layer.SIDECAR, "a1", "server-listener",
                      R.server_listener_name(net + "21", port))
    obs = m.driver.observe([m.target("a1")])["a1"]
    assert key in {r.key for r in obs.resources}

    def drop_template(path):
        doc = json.loads(path.read_text())
        del doc["server_listener_resource_name_template"]
        path.write_text(json.dumps(doc))

    m.workloads["a1"].stop()
    m.start("a1", serve=[("v1", net + "21", port)], bootstrap_hook=drop_template)
    obs = m.driver.observe([m.target("a1")])["a1"]
    assert obs.ok, obs.error
    assert key not in {r.key for r in obs.resources}, "a plain server was taken for an xDS one"
