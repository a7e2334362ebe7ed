"""Table-driven: the RPC plane. RBAC by identity (mTLS) versus by source address, TLS on one end
only, the caller's listener/route/cluster/endpoints; then the same on the example intents."""
from __future__ import annotations

import pytest
from verify_cases import change, find, resources, verify

from reconciler.model import Layer, Resource, ResourceKey
from reconciler.names import server_listener_name
from reconciler.verify.compare import LEAK, VIOLATION
from reconciler.verify.model import DENY, PERMIT, UNKNOWN, Model
from reconciler.verify.sidecar import AUTO, client_hop, server_hops
from reconciler.verify.wiring import Wiring

WEB_ID, BAD_ID = "spiffe://td/shop/web", "spiffe://td/other/x"
API_ID = "spiffe://td/shop/api"
CLIENT_TLS = {"cert_provider": "web.shop", "ca_provider": "web.shop", "peer_ids": [API_ID]}
STRICT = {"cert_provider": "api.shop", "ca_provider": "api.shop", "require_client_cert": True}
PERMISSIVE = {**STRICT, "require_client_cert": False}


def _server(tls, principals=(), source_ips=(), filters=("rbac", "router"), rbac=True):
    spec = {"address": "10.0.0.2", "port": 8080, "http_filters": list(filters), "tls": tls,
            "rbac": {"principals": list(principals), "source_ips": list(source_ips)} if rbac else None}
    return Resource(ResourceKey(Layer.SIDECAR, "n", "server-listener", server_listener_name("10.0.0.2", 8080)), spec)


def _check(server, client_tls, presented, src="10.0.0.5", unobserved=None):
    m = Model.build([server] if server else [], Wiring(), unobserved=unobserved or {})
    hops = server_hops(m, "n", "10.0.0.2", 8080, client_tls, presented, src, API_ID)
    return [(h.what, h.decision) for h in hops], hops[-1].rule + " " + hops[-1].detail


CASES = [
    # (name, server listener, client TLS, presented identity, source, expected (what, decision) list, text)
    ("mTLS, principal admitted", _server(STRICT, [WEB_ID]), CLIENT_TLS, WEB_ID, "10.0.0.5",
     [("tls", PERMIT), ("rbac", PERMIT)], f"principal {WEB_ID}"),
    ("mTLS, other principal refused", _server(STRICT, [WEB_ID]), CLIENT_TLS, BAD_ID, "10.0.0.5",
     [("tls", PERMIT), ("rbac", DENY)], BAD_ID),
    ("mTLS strict: an allowed address alone is not enough", _server(STRICT, [WEB_ID]), CLIENT_TLS, BAD_ID,
     "10.0.0.5", [("tls", PERMIT), ("rbac", DENY)], "source 10.0.0.5"),
    ("plaintext, source address admitted", _server(None, source_ips=["10.0.0.5/32"]), None, None, "10.0.0.5",
     [("tls", PERMIT), ("rbac", PERMIT)], "source_ips 10.0.0.5/32"),
    ("plaintext, identity cannot be presented", _server(None, [WEB_ID]), None, WEB_ID, "10.0.0.5",
     [("tls", PERMIT), ("rbac", DENY)], "no client identity"),
    ("plaintext, other source refused", _server(None, source_ips=["10.0.0.5/32"]), None, None, "10.0.0.6",
     [("tls", PERMIT), ("rbac", DENY)], "10.0.0.6"),
    ("permissive: identity or address", _server(PERMISSIVE, [WEB_ID], ["10.0.0.5/32"]), CLIENT_TLS, BAD_ID,
     "10.0.0.5", [("tls", PERMIT), ("rbac", PERMIT)], "source_ips"),
    ("TLS server, plaintext caller", _server(STRICT, [WEB_ID]), None, None, "10.0.0.5",
     [("tls", DENY), ("rbac", DENY)], ""),
    ("plaintext server, TLS caller", _server(None, source_ips=["10.0.0.5/32"]), CLIENT_TLS, WEB_ID, "10.0.0.5",
     [("tls", DENY), ("rbac", PERMIT)], ""),
    ("caller does not accept the server identity", _server(STRICT, [WEB_ID]), {**CLIENT_TLS, "peer_ids": [BAD_ID]},
     WEB_ID, "10.0.0.5", [("tls", DENY), ("rbac", PERMIT)], ""),
    ("no RBAC filter admits everyone", _server(None, filters=("router",)), None, None, "10.9.9.9",
     [("tls", PERMIT), ("rbac", PERMIT)], "every caller"),
    ("RBAC filter without policy admits no one", _server(None, rbac=False), None, None, "10.0.0.5",
     [("tls", PERMIT), ("rbac", DENY)], ""),
    ("direct dial with own certificate", _server(STRICT, [WEB_ID]), AUTO, WEB_ID, "10.0.0.5",
     [("tls", PERMIT), ("rbac", PERMIT)], ""),
    ("direct dial without certificate", _server(STRICT, [WEB_ID]), AUTO, None, "10.0.0.5",
     [("tls", DENY), ("rbac", DENY)], ""),
    ("server listener not observed", None, CLIENT_TLS, WEB_ID, "10.0.0.5", [("rbac", UNKNOWN)], "not an xDS server"),
]


@pytest.mark.parametrize("name,server,tls,presented,src,expected,text", CASES, ids=[c[0] for c in CASES])
def test_server(name, server, tls, presented, src, expected, text):
    got, last = _check(server, tls, presented, src)
    assert got == expected
    assert text in last


def test_node_not_observed_is_unknown():
    got, last = _check(_server(None), None, None, unobserved={("sidecar", "n"): "unreachable: no CSDS"})
    assert got == [("rbac", UNKNOWN)] and "no CSDS" in last


def test_client_follows_listener_route_clusters_endpoints():
    res = [r for r in resources() if r.key.layer is Layer.SIDECAR and r.key.target == "h1"]
    m = Model.build(res, Wiring())
    hop, tls = client_hop(m, "h1", "api.shop:8080", "10.50.1.22", 8080, True)
    assert hop.decision == PERMIT and "api.shop:8080/v2 (weight 10)" in hop.rule and tls["cert_provider"] == "web.shop"
    hop, _ = client_hop(m, "h1", "ledger.billing:5432", "10.50.2.21", 5432, True)
    assert hop.decision == DENY and "no listener" in hop.detail
    hop, _ = client_hop(m, "h1", "api.shop:8080", "10.50.1.99", 8080, False)
    assert hop.decision == PERMIT and "traffic split" in hop.detail


def test_weight_zero_split_is_not_a_violation_but_a_dropped_endpoint_is():
    # v2 removed from the caller's route (as if the split sent it nothing) while the intents send it 10%
    res = change(resources(), "sidecar/h1/route/api.shop:8080", lambda s: s.update(clusters=s["clusters"][:1]))
    cmp = verify(res)
    f = find(cmp, VIOLATION, "shop/web@10.50.1.11", "shop/api@10.50.1.22:8080")
    assert f.hops[0].layer == "sidecar" and "no weighted cluster" in f.hops[0].detail


def test_locality_without_weight_is_a_silent_failure():
    res = change(resources(), "sidecar/h2/endpoints/ledger.billing:5432",
                 lambda s: s["localities"][0].update(weight=None))
    f = find(verify(res), VIOLATION, "billing/invoicer@10.50.2.11", "billing/ledger@10.50.2.21:5432")
    assert "silent failure" in f.hops[0].detail


def test_rbac_by_address_admits_a_new_source_ip():
    key = "sidecar/h6/server-listener/grpc/server?xds.resource.listening_address=10.50.2.21:5432"
    res = change(resources(), key, lambda s: s["rbac"]["source_ips"].append("10.50.1.11/32"))
    f = find(verify(res), LEAK, "shop/web@10.50.1.11", "billing/ledger@10.50.2.21:5432")
    assert f.extent == "masked" and f.hops[0].rule == "source_ips 10.50.1.11/32"
    assert f.blocking[0].device == "h6" and f.blocking[0].what == "nftables"
