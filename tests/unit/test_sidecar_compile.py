"""Pure tests of the sidecar compiler and the spec <-> proto conversion.

Table-driven over the example intents: which node gets which kinds, RBAC principals from
policy (by identity with mTLS, by source address without), weighted clusters from split,
timeouts/retries; every compiled spec survives to_proto/from_proto unchanged and passes
lint (no silent failure mode is ever compiled); lint catches the hand-made bad ones.
"""
from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.compile.context import CompileContext
from reconciler.compile.sidecar import compile_app
from reconciler.intents.validate import load_repo
from reconciler.model import Layer, thaw
from reconciler.names import SERVER_LISTENER_TEMPLATE
from reconciler.xds import resources as R
from reconciler.xds.bootstrap import bootstrap
from reconciler.xds.ca import CA, spiffe_ids_of

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "intents"


@pytest.fixture(scope="module")
def compiled():
    repo = load_repo(EXAMPLES)
    ctx = CompileContext.of(repo)
    return {name: compile_app(app, ctx) for name, app in repo.apps.items()}


def _by(res, target=None, kind=None):
    return {r.key.name: thaw(r.spec) for r in res
            if (target is None or r.key.target == target) and (kind is None or r.key.kind == kind)}


def test_all_sidecar_layer_and_tagged(compiled):
    for app, res in compiled.items():
        assert res, app
        assert all(r.key.layer is Layer.SIDECAR and r.app == app for r in res)


@pytest.mark.parametrize("app,target,kinds", [
    # shop/api is called by shop/web (h1) and billing/invoicer (h2): client side on both,
    # server listeners on h3 (v1) and h5 (v2); web's own listener on h1
    ("shop", "h1", {"listener", "route", "cluster", "endpoints", "server-listener"}),
    ("shop", "h2", {"listener", "route", "cluster", "endpoints"}),
    ("shop", "h3", {"server-listener"}),
    ("shop", "h5", {"server-listener"}),
    ("billing", "h6", {"server-listener"}),
])
def test_kinds_per_node(compiled, app, target, kinds):
    assert {r.key.kind for r in compiled[app] if r.key.target == target} == kinds


def test_split_timeout_retries_and_tls(compiled):
    route = _by(compiled["shop"], "h1", "route")["api.shop:8080"]
    assert route == {"domains": ["api.shop:8080"],
                     "clusters": [{"name": "api.shop:8080/v1", "weight": 90},
                                  {"name": "api.shop:8080/v2", "weight": 10}],
                     "timeout_ms": 5000, "retries": {"num": 2, "on": ["unavailable"]}}
    clusters = _by(compiled["shop"], "h2", "cluster")
    assert clusters["api.shop:8080/v1"]["tls"] == {
        "cert_provider": "invoicer.billing", "ca_provider": "invoicer.billing",
        "peer_ids": ["spiffe://corp.example/shop/api"]}
    eps = _by(compiled["shop"], "h1", "endpoints")["api.shop:8080/v2"]
    assert eps == {"localities": [{"weight": 1, "endpoints": [{"address": "10.50.1.22", "port": 8080}]}]}


def test_rbac_from_policy(compiled):
    strict = _by(compiled["shop"], "h3", "server-listener")[
        "grpc/server?xds.resource.listening_address=10.50.1.21:8080"]
    assert strict["tls"] == {"cert_provider": "api.shop", "ca_provider": "api.shop",
                             "require_client_cert": True}
    assert strict["rbac"] == {"principals": ["spiffe://corp.example/billing/invoicer",
                                             "spiffe://corp.example/shop/web"], "source_ips": []}
    plain = _by(compiled["billing"], "h6", "server-listener")[
        "grpc/server?xds.resource.listening_address=10.50.2.21:5432"]
    assert plain["tls"] is None
    assert plain["rbac"] == {"principals": [], "source_ips": ["10.50.2.11/32"]}
    # nobody may call web: default deny
    web = _by(compiled["shop"], "h1", "server-listener")[
        "grpc/server?xds.resource.listening_address=10.50.1.11:80"]
    assert web["rbac"] == {"principals": [], "source_ips": []}


def test_no_split_single_cluster(compiled):
    route = _by(compiled["billing"], "h2", "route")["ledger.billing:5432"]
    assert route["clusters"] == [{"name": "ledger.billing:5432", "weight": 1}]
    assert route["timeout_ms"] == 500 and route["retries"] is None


def test_round_trip_and_lint_clean(compiled):
    for res in compiled.values():
        for r in res:
            spec = thaw(r.spec)
            msg = R.to_proto(r.key.kind, r.key.name, spec)
            assert R.from_proto(msg) == (r.key.kind, r.key.name, spec), r.key
        for target in {r.key.target for r in res}:
            assert R.lint((r.key.kind, r.key.name, thaw(r.spec))
                          for r in res if r.key.target == target) == []


def test_locality_weight_always_on_the_wire(compiled):
    for r in compiled["shop"]:
        if r.key.kind == "endpoints":
            cla = R.to_proto("endpoints", r.key.name, thaw(r.spec))
            assert all(l.HasField("load_balancing_weight") and l.load_balancing_weight.value > 0
                       for l in cla.endpoints)


def test_lint_finds_silent_failures():
    good = [("listener", "a.b:1", {"route": "a.b:1", "config_source": "ads", "http_filters": ["router"]}),
            ("route", "a.b:1", {"domains": ["a.b:1"], "clusters": [{"name": "c", "weight": 1}],
                                "timeout_ms": None, "retries": None}),
            ("cluster", "c", {"eds": "c", "lb": "round_robin", "tls": None}),
            ("endpoints", "c", {"localities": [{"weight": 1, "endpoints": [{"address": "1.2.3.4", "port": 1}]}]})]
    assert R.lint(good) == []
    bad = [list(x) for x in good]
    bad[1] = ("route", "a.b:1", dict(good[1][2], domains=["a.b"]))
    bad[3] = ("endpoints", "c", {"localities": [{"weight": None, "endpoints": [{"address": "1.2.3.4", "port": 1}]}]})
    bad[0] = ("listener", "a.b:1", dict(good[0][2], http_filters=["rbac"]))
    found = R.lint(bad)
    assert any("domains" in p for p in found)
    assert any("load_balancing_weight" in p for p in found)
    assert any("router" in p for p in found)


names = st.from_regex(r"[a-z][a-z0-9-]{0,10}", fullmatch=True)


@settings(max_examples=60, deadline=None)
@given(name=names, weights=st.lists(st.integers(1, 1000), min_size=1, max_size=4),
       timeout=st.one_of(st.none(), st.integers(1, 600_000)),
       retries=st.one_of(st.none(), st.integers(1, 5)))
def test_route_round_trip_property(name, weights, timeout, retries):
    spec = {"domains": [f"{name}:80"], "clusters": [{"name": f"{name}/v{i}", "weight": w}
                                                    for i, w in enumerate(weights)],
            "timeout_ms": timeout, "retries": {"num": retries, "on": ["unavailable"]} if retries else None}
    assert R.from_proto(R.to_proto("route", name, spec)) == ("route", name, spec)


@settings(max_examples=40, deadline=None)
@given(addr=st.ip_addresses(v=4).map(str), port=st.integers(1, 65535),
       principals=st.lists(names.map(lambda n: f"spiffe://t/{n}"), max_size=3),
       ips=st.lists(st.ip_addresses(v=4).map(lambda a: f"{a}/32"), max_size=3),
       mode=st.sampled_from([None, True, False]))
def test_server_listener_round_trip_property(addr, port, principals, ips, mode):
    tls = None if mode is None else {"cert_provider": "p", "ca_provider": "p", "require_client_cert": mode}
    name = R.server_listener_name(addr, port)
    spec = {"address": addr, "port": port, "http_filters": ["rbac", "router"], "tls": tls,
            "rbac": {"principals": principals, "source_ips": ips}}
    assert R.from_proto(R.to_proto("server-listener", name, spec)) == ("server-listener", name, spec)


def test_bootstrap_never_omits_what_grpc_needs(tmp_path):
    ca = CA.create("t.example")
    ident = ca.write_identity(tmp_path, "api.shop", "spiffe://t.example/shop/api")
    doc = bootstrap("h1", "127.0.0.1:1", {"api.shop": ident})
    assert doc["xds_servers"][0]["channel_creds"] == [{"type": "insecure"}]
    assert doc["server_listener_resource_name_template"] == SERVER_LISTENER_TEMPLATE
    assert doc["node"]["id"] == "h1"
    prov = doc["certificate_providers"]["api.shop"]
    assert prov["plugin_name"] == "file_watcher"
    assert spiffe_ids_of(Path(prov["config"]["certificate_file"]).read_bytes()) == \
        ["spiffe://t.example/shop/api"]
    assert (Path(prov["config"]["private_key_file"]).stat().st_mode & 0o777) == 0o600
    tls = bootstrap("h1", "x:1", ads_tls={"ca": "/ca.pem"})
    assert tls["xds_servers"][0]["channel_creds"][0]["type"] == "tls"
