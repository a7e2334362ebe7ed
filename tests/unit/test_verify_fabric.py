"""Table-driven: the switch and routing hops on the example fabric, each case one hand edit of
the compiled (as-if-converged) state and the violation it must cause, named at its hop."""
from __future__ import annotations

import pytest
from verify_cases import change, drop, find, hop_text, resources, verify

from reconciler.verify.compare import VIOLATION

WEB, INVOICER, LEDGER = "shop/web@10.50.1.11", "billing/invoicer@10.50.2.11", "billing/ledger@10.50.2.21"
API1, API2 = "shop/api@10.50.1.21:8080", "shop/api@10.50.1.22:8080"
LEDGER_PG = "billing/ledger@10.50.2.21:5432"


def _missing_vni(res):
    return drop(res, "switch/leaf2/vxlan/vxlan5001")


def _vni_changed(res):
    return change(res, "switch/leaf2/vxlan/vxlan5001", lambda s: s.update(vni=5009))


def _host_route_wrong_gateway(res):
    return change(res, "host/h3/route/10.50.2.0/24", lambda s: s.update(gateway="10.50.1.99"))


def _host_route_gateway_off_link(res):
    return change(res, "host/h3/route/10.50.2.0/24", lambda s: s.update(gateway="10.50.9.1"))


def _leaf_route_own_vtep(res):
    return change(res, "switch/leaf1/host-route/10.50.1.22/32", lambda s: s.update(nexthop="10.255.0.1"))


def _leaf_route_unknown_vtep(res):
    return change(res, "switch/leaf1/host-route/10.50.1.22/32", lambda s: s.update(nexthop="10.255.0.9"))


def _host_route_missing(res):
    return drop(res, "host/h6/route/10.50.1.0/24")


def _bgp_missing(res):
    return drop(res, "switch/leaf2/bgp/65002")


def _gateway_missing(res):
    return drop(res, "switch/leaf2/gateway/gw101")


def _trunk_missing_on_hypervisor(res):
    return drop(res, "hypervisor/hv3/trunk-vlan/eth1:102")


CASES = [
    # (edit, source, destination, blocking hop, words of its detail)
    (_missing_vni, WEB, API2, "switch leaf2 vxlan VNI 5001", "no VXLAN device for VNI 5001"),
    (_vni_changed, WEB, API2, "switch leaf2 vxlan VNI 5001", "no VXLAN device"),
    (_host_route_wrong_gateway, INVOICER, API1, "hypervisor hv2 segment VLAN 101", "no observed device holds 10.50.1.99"),
    (_host_route_gateway_off_link, INVOICER, API1, "host h3 route host/h3/route/10.50.2.0/24 via 10.50.9.1 dev eth1",
     "not on-link"),
    # via its own VTEP the route is inactive; the connected subnet's gateway cannot ARP over VXLAN
    (_leaf_route_own_vtep, INVOICER, API2, "switch leaf2 gateway gw101", "MAC guard"),
    (_host_route_missing, INVOICER, LEDGER_PG, "", ""),      # same subnet: no route needed
    (_bgp_missing, WEB, API2, "switch leaf2 underlay bgp 10.255.0.1 -> 10.255.0.2", "no BGP instance on leaf2"),
    (_gateway_missing, INVOICER, API2, "switch leaf2 route to 10.50.1.22", "no gateway subnet or host route"),
    (_trunk_missing_on_hypervisor, INVOICER, LEDGER_PG, "hypervisor hv3 trunk-vlan eth1:102", "does not carry"),
]


@pytest.mark.parametrize("edit,src,dst,hop,words", CASES, ids=[c[0].__name__.strip("_") for c in CASES])
def test_blocking_hop(edit, src, dst, hop, words):
    cmp = verify(edit(resources()))
    if not hop:
        assert not any(f.source.id == src and f.dest.id == dst for f in cmp.findings)
        return
    f = find(cmp, VIOLATION, src, dst)
    assert hop_text(f)[0] == hop
    assert words in f.hops[0].detail


def test_route_to_a_next_hop_that_is_no_vtep_is_unknown_not_guessed():
    cmp = verify(_leaf_route_unknown_vtep(resources()))
    f = next(f for f in cmp.findings if f.source.id == INVOICER and f.dest.id == API2)
    assert f.kind == "unknown" and "is no leaf's VTEP" in f.hops[0].detail


def test_missing_return_route_is_a_violation_on_the_return_leg():
    cmp = verify(drop(resources(), "host/h5/route/10.50.2.0/24"))
    f = find(cmp, VIOLATION, INVOICER, API2)
    assert f.hops[0].leg == "return" and f.hops[0].device == "h5"


def test_return_over_vxlan_uses_the_mac_learned_on_the_way_in():
    # leaf2 lost its flood entry toward leaf1: h1's ARP still reaches h5 (leaf1 floods), and
    # h5's replies follow the MAC learned from it: no violation
    cmp = verify(change(resources(), "switch/leaf2/vxlan/vxlan5001", lambda s: s.update(flood=[])))
    assert not any(f.source.id == WEB and f.dest.id == API2 for f in cmp.findings)
    v = next(v for r in cmp.results if r.dest.id == API2 for s, _, v in r.pairs if s.id == WEB)
    assert v.outcome == "delivered"
