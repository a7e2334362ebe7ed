"""The pure parts of verify --probe's gRPC confirmation: which pairs go to which probe, how a
Run tally becomes model defects, and the probe node's direct-dial snapshot."""
from __future__ import annotations

from dataclasses import replace

from reconciler.verify.grpc_direct import authority, direct_pairs, snapshot
from reconciler.verify.grpc_probe import judge, rpc_groups
from reconciler.verify.model import Hop
from reconciler.verify.pairs import Dest, Source
from reconciler.verify.verdict import DELIVERED, DROPPED, Verdict
from reconciler.xds import resources as R

WEB = Source("shop", "web", "10.50.1.11", "h1", "eth1", "spiffe://corp.example/shop/web")
LEDGER = Source("billing", "ledger", "10.50.2.21", "h6", "eth1", "spiffe://corp.example/billing/ledger")
API1 = Dest("shop", "api", "10.50.1.21", "h3", "eth1", 8080, "grpc", "tcp", "spiffe://corp.example/shop/api",
            "api.shop:8080", True)
API2 = replace(API1, address="10.50.1.22", host="h5")
SERVERS = {("10.50.1.21", 8080): "api-v1-h3", ("10.50.1.22", 8080): "api-v2-h5"}
CLIENT = Hop("sidecar", "h1", "xds-client", "route api.shop:8080", "permit")
MTLS = Hop("sidecar", "h3", "tls", "mTLS x -> y", "permit")
RBAC_DENY = Hop("sidecar", "h3", "rbac", "grpc/server?...", "deny")


def v(l4: str, rpc: str | None, *hops: Hop) -> Verdict:
    return Verdict(l4, rpc, hops)


def test_allowed_pairs_are_grouped_per_caller_and_target():
    chosen = [(WEB, API1, True, v(DELIVERED, DELIVERED, CLIENT)), (WEB, API2, True, v(DELIVERED, DELIVERED, CLIENT)),
              (LEDGER, API1, False, v(DROPPED, DROPPED, RBAC_DENY)),      # no xDS client: direct dial
              (WEB, replace(API1, selected=False), True, v(DELIVERED, DELIVERED, CLIENT)),   # not in the split
              (WEB, replace(API1, port=9), True, v(DELIVERED, DELIVERED, CLIENT)),      # no workload serves it
              (WEB, API1, True, v(DELIVERED, None))]                                   # no RPC plane
    groups, skipped = rpc_groups(chosen, SERVERS, {"h1", "h6"})
    assert [(g.host, g.target, [n for _, n in g.pairs]) for g in groups] == [
        ("h1", "xds:///api.shop:8080", ["api-v1-h3", "api-v2-h5"])]
    assert skipped == 3
    assert rpc_groups(chosen, SERVERS, {"h6"})[0] == []        # h1 runs no workload: nothing to call from


def test_a_tally_that_disagrees_with_the_model_is_a_defect_with_both_verdicts():
    groups, _ = rpc_groups([(WEB, API1, True, v(DELIVERED, DELIVERED, CLIENT)),
                            (WEB, API2, True, v(DELIVERED, DROPPED, CLIENT))], SERVERS)
    g = groups[0]
    assert judge(g, {"servers": {"api-v1-h3": 90}, "errors": {}}) == []
    [d] = judge(g, {"servers": {"api-v1-h3": 90, "api-v2-h5": 10}, "errors": {}})
    assert (d.source, d.dest, d.model, d.probe) == (WEB.id, API2.id, "rpc dropped", "gRPC answered")
    [d] = judge(g, {"servers": {}, "errors": {"UNAVAILABLE": 100}, "first_error": "no healthy upstream"})
    assert d.dest == API1.id and d.model == "rpc delivered" and d.probe == "gRPC not answered"
    assert "UNAVAILABLE" in d.detail and "no healthy upstream" in d.detail


def test_direct_dial_pairs_are_the_unallowed_ones_that_l4_delivers():
    leak = (LEDGER, API1, False, v(DELIVERED, DELIVERED, MTLS))
    chosen = [leak, (LEDGER, API2, False, v(DROPPED, DROPPED)),           # TCP's to confirm
              (WEB, API1, True, v(DELIVERED, DELIVERED, CLIENT)),         # xDS client: grpc_probe's
              (replace(LEDGER, identity=None), API1, False, v(DELIVERED, DROPPED, RBAC_DENY))]
    per_host, skipped = direct_pairs(chosen, {"h1", "h6"})
    assert per_host == {"h6": [leak]} and skipped == 1


def test_the_direct_dial_snapshot_reaches_exactly_the_destination_with_the_callers_identity():
    snap = snapshot([(LEDGER, API1, False, v(DELIVERED, DELIVERED, MTLS))])
    name = authority("10.50.1.21", 8080)
    assert name == "verify-probe-10-50-1-21:8080"
    got = {R.from_proto(m)[0]: R.from_proto(m)[2] for t in snap.values() for m in t.values()}
    assert got["listener"]["route"] == name and got["route"]["domains"] == [name]
    assert got["cluster"]["tls"]["cert_provider"] == "ledger.billing"
    assert got["endpoints"]["localities"][0]["endpoints"] == [{"address": "10.50.1.21", "port": 8080}]
    plain = snapshot([(LEDGER, API1, False, v(DELIVERED, DELIVERED, Hop("sidecar", "h3", "tls", "plaintext",
                                                                         "permit")))])
    assert R.from_proto(next(iter(plain[R.CLUSTER].values())))[2]["tls"] is None
