"""Incremental verification equals a full verification of the same resources, after every kind
of hand edit the other verify tests know (one per hop type), applied one after another and undone;
and it recomputes only the destinations that read a changed target."""
from __future__ import annotations

import pytest
from test_verify_fabric import CASES
from verify_cases import L4, add, change, drop, example, resources, verify

from reconciler.drivers.ansible.nftables import parse_rule
from reconciler.verify.incremental import Incremental

H3_TABLE = "host/h3/nft-table/netintent_shop"
RBAC_KEY = "sidecar/h3/server-listener/grpc/server?xds.resource.listening_address=10.50.1.21:8080"


def _accept(res):
    rule = {"match": {"daddr_set": "svc_api", "protocol": "tcp", "dport": 8080}, "verdict": "accept"}
    return change(res, H3_TABLE, lambda s: s["chains"]["input"]["rules"].insert(2, rule))


def _odd_rule(res):
    odd = parse_rule([{"match": {"op": "==", "left": {"meta": {"key": "mark"}}, "right": 1}}, {"accept": None}])
    return change(res, H3_TABLE, lambda s: s["chains"]["input"]["rules"].insert(1, odd))


def _foreign_drop(res):
    drop_api = [[{"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "saddr"}},
                            "right": {"prefix": {"addr": "10.50.1.0", "len": 24}}}}, {"drop": None}]]
    return add(res, "host/h3/nft-table/ip/handmade", {"family": "ip", "name": "handmade", "chains": {"input": {
        "type": "filter", "hook": "input", "priority": -10, "policy": "accept",
        "rules": [parse_rule(e) for e in drop_api]}}})


def _flood(res):
    return change(res, "switch/leaf1/vxlan/vxlan5001", lambda s: s.update(flood=[]))


def _rbac(res):
    return change(res, RBAC_KEY, lambda s: s["rbac"]["principals"].append("spiffe://corp.example/analytics/dash"))


def _address_moved(res):   # api's address moved from h3 to h6: where it is located changes
    res = drop(res, "host/h3/address/eth1:10.50.1.21")
    return add(res, "host/h6/address/eth1:10.50.1.21", {"interface": "eth1", "address": "10.50.1.21",
                                                         "prefixlen": 24}, "shop", True)


def _wrong_trunk(res):
    res = add(res, "switch/leaf1/vlan-trunk/eth2:102", {"bridge": "br0", "port": "eth2", "vlan": 102}, "billing")
    return drop(res, "switch/leaf1/vlan-trunk/eth1:102")


def _spoof_flow_removed(res):        # api's own anti-spoofing permit: its frames meet the port's drop
    return drop(res, "hypervisor/hv2/ovs-flow/priority=200,ip,in_port=eth2,nw_src=10.50.1.21")


def _uplink_flow_removed(res):       # VLAN 101 from the uplink: the hypervisor's isolation drop decides
    return drop(res, "hypervisor/hv2/ovs-flow/priority=100,in_port=eth1,dl_vlan=101")


def _flow_for_any_port(res):         # a flow without in_port: every frame on hv2 may meet it
    return add(res, "hypervisor/hv2/ovs-flow/priority=300,ip,nw_dst=10.50.1.21",
               {"table": 0, "priority": 300, "match": "ip,nw_dst=10.50.1.21", "actions": "drop"}, "", False)


def _tag_changed(res):
    return change(res, "hypervisor/hv2/ovs-port/eth2", lambda s: s.update(tag=103))


UNSEEN = {"_host_route_missing"}     # changes no verdict (same subnet: no route needed)
EDITS = [_accept, _odd_rule, _foreign_drop, _flood, _rbac, _address_moved, _wrong_trunk, _spoof_flow_removed,
         _uplink_flow_removed, _flow_for_any_port, _tag_changed] + [c[0] for c in CASES]


def _state(cmp):
    pairs = sorted((r.dest.id, s.id, v.l4, v.rpc, v.hops) for r in cmp.results for s, _, v in r.pairs)
    findings = sorted((f.kind, f.extent, f.source.id, f.dest.id, f.hops) for f in cmp.findings)
    return pairs, findings, {a: c.to_json() for a, c in sorted(cmp.apps.items())}


@pytest.mark.parametrize("edit", EDITS, ids=lambda e: e.__name__)
def test_incremental_equals_full_after_an_edit_and_its_undo(edit):
    base = resources()
    inc = Incremental(example()[0], base)
    assert _state(inc.comparison()) == _state(verify(base))
    changed = edit(base)
    delta = inc.update(changed)
    assert 0 < delta.targets <= 2
    assert _state(inc.comparison()) == _state(verify(changed)), edit.__name__
    assert delta.recomputed <= len(inc.entries)
    assert (_state(verify(changed)) != _state(verify(base))) == (edit.__name__ not in UNSEEN), "the edit matters"
    back = inc.update(base)
    assert _state(inc.comparison()) == _state(verify(base))
    assert back.apps == delta.apps


def test_edits_accumulate_like_a_full_verification():
    inc = Incremental(example()[0], resources())
    res = resources()
    for edit in (_accept, _flood, _rbac, _foreign_drop):
        res = edit(res)
        inc.update(res)
        assert _state(inc.comparison()) == _state(verify(res)), edit.__name__
    assert {f.kind for f in inc.findings()} == {"leak", "violation"}
    assert inc.counts()["shop"].leaks > 0


def test_a_target_that_cannot_be_observed_any_more_makes_its_pairs_unknown():
    res = resources()
    inc = Incremental(example()[0], res, layers=L4)
    gone = [r for r in res if r.key.target != "leaf2"]
    unobserved = {("switch", "leaf2"): "unreachable: timeout"}
    delta = inc.update(gone, unobserved)
    assert _state(inc.comparison()) == _state(verify(gone, unobserved=unobserved, layers=L4))
    assert delta.apps and all(f.kind == "unknown" for f in inc.findings())
    inc.update(res, {})
    assert inc.findings() == []


def test_a_change_on_one_host_recomputes_only_what_read_it():
    inc = Incremental(example()[0], resources())
    delta = inc.update(_accept(resources()))
    readers = {d for d, e in inc.entries.items() if ("host", "h3") in e.deps}
    assert delta.recomputed == len(readers) < len(inc.entries)
    assert delta.apps == {"shop"}
