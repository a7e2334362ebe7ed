"""examples/intents compiled and used as observed state verify clean; hand-made changes of the
kinds the issue lists are each named as a leak or a violation, with the hop that decides."""
from __future__ import annotations

from verify_cases import L4, add, change, drop, example, find, hop_text, resources, verify

from reconciler.drivers.ansible.nftables import parse_rule
from reconciler.verify.compare import LEAK, UNKNOWN_KIND, VIOLATION
from reconciler.verify.verdict import DELIVERED, DROPPED

WEB, INVOICER, LEDGER = "shop/web@10.50.1.11", "billing/invoicer@10.50.2.11", "billing/ledger@10.50.2.21"
DASH = "analytics/dash@10.50.3.12"
API1, API2 = "shop/api@10.50.1.21:8080", "shop/api@10.50.1.22:8080"
LEDGER_PG = "billing/ledger@10.50.2.21:5432"
H3_TABLE = "host/h3/nft-table/netintent_shop"


def test_desired_state_verifies_clean():
    cmp = verify(resources())
    assert cmp.findings == [] and cmp.exit_code() == 0
    outcomes = {(s.id, r.dest.id): v.outcome for r in cmp.results for s, _, v in r.pairs}
    for src, dst in ((WEB, API1), (WEB, API2), (INVOICER, API1), (INVOICER, API2), (INVOICER, LEDGER_PG),
                     (DASH, "analytics/collector@10.50.3.11:9000")):
        assert outcomes[(src, dst)] == DELIVERED, (src, dst)
    t = cmp.totals()
    assert t.others > 0 and t.unknown == 0
    # every source (7 instances and the outside address, less the destination itself) is accounted for
    # at every destination: traced one by one, or covered by the destination's own filters
    instances = sum(len(s.instances) for a in example()[0].apps.values() for s in a.spec.services.values())
    for r in cmp.results:
        assert len(r.pairs) + r.others == instances + 1 - 1, r.dest.id


def test_expanded_scope_agrees_with_representatives():
    cmp, full = verify(resources()), verify(resources(), expand=True)
    assert full.findings == [] and full.totals().others == 0
    assert full.totals().pairs == cmp.totals().pairs + cmp.totals().others
    assert all(v.outcome == DROPPED for r in full.results for s, a, v in r.pairs if not a)


def test_accept_inserted_ahead_of_the_drop_is_a_leak_at_that_rule():
    rule = {"match": {"daddr_set": "svc_api", "protocol": "tcp", "dport": 8080}, "verdict": "accept"}
    res = change(resources(), H3_TABLE, lambda s: s["chains"]["input"]["rules"].insert(2, rule))
    cmp = verify(res)
    f = find(cmp, LEAK, LEDGER, API1)             # billing/ledger has a route to shop's subnet
    assert f.extent == "l4"                       # the connect goes through; RBAC still refuses the call
    assert "host h3 nftables inet netintent_shop input #3: ip daddr @svc_api tcp dport 8080 accept" in hop_text(f)
    assert f.hops[0].kind == "enforce"
    assert any(h.layer == "sidecar" and h.what == "rbac" for h in f.blocking)
    masked = find(cmp, LEAK, DASH, API1)          # no route from h4, the rule still admits it
    assert masked.extent == "masked" and masked.hops[0].device == "h3"
    assert not any(f.dest.id == API2 for f in cmp.findings)   # h5 untouched
    assert cmp.exit_code() == 1


def _foreign(priority: int, exprs: list, policy: str = "accept") -> dict:
    return {"family": "ip", "name": "handmade", "chains": {"input": {
        "type": "filter", "hook": "input", "priority": priority, "policy": policy,
        "rules": [parse_rule(e) for e in exprs]}}}


def test_foreign_table_with_earlier_priority_accept_does_not_bypass_the_drop():
    # nft: accept ends only its own base chain; the netintent table (priority 0) still drops
    accept_all = [[{"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}},
                              "right": 8080}}, {"counter": {"packets": 0, "bytes": 0}}, {"accept": None}]]
    res = add(resources(), "host/h3/nft-table/ip/handmade", _foreign(-10, accept_all))
    cmp = verify(res, layers=L4, expand=True)
    assert cmp.findings == []
    v = next(v for r in cmp.results if r.dest.id == API1 for s, _, v in r.pairs if s.id == LEDGER)
    assert v.l4 == DROPPED and any("netintent_shop input #3" in h.rule for h in v.hops)


def test_foreign_table_with_earlier_priority_drop_is_a_violation_there():
    drop_api = [[{"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "saddr"}},
                            "right": {"prefix": {"addr": "10.50.1.0", "len": 24}}}}, {"drop": None}]]
    res = add(resources(), "host/h3/nft-table/ip/handmade", _foreign(-10, drop_api))
    cmp = verify(res)
    f = find(cmp, VIOLATION, WEB, API1)
    assert f.hops[0].device == "h3" and f.hops[0].rule.startswith("ip handmade input #1")
    assert not any(f.source.id == INVOICER and f.kind == VIOLATION for f in cmp.findings)  # 10.50.2.x passes


def test_vlan_on_a_wrong_trunk():
    # added alone it opens nothing: hv2's uplink isolation flow drops VLAN 102 (no pair changes)
    res = change(resources(), "switch/leaf1/vlan-trunk/eth2:101", lambda s: None)
    res = add(res, "switch/leaf1/vlan-trunk/eth2:102", {"bridge": "br0", "port": "eth2", "vlan": 102}, "billing")
    assert verify(res).findings == []
    # moved there from the trunk that needs it: billing's segment is cut at leaf1's trunk from hv1
    res = drop(res, "switch/leaf1/vlan-trunk/eth1:102")
    cmp = verify(res)
    f = find(cmp, VIOLATION, INVOICER, LEDGER_PG)
    assert hop_text(f)[0] == "switch leaf1 vlan-trunk eth1:102"
    assert find(cmp, VIOLATION, INVOICER, API1).hops[0].rule == "eth1:102"


def test_flood_entry_removed_is_a_violation_at_that_vxlan():
    res = change(resources(), "switch/leaf1/vxlan/vxlan5001", lambda s: s.update(flood=[]))
    cmp = verify(res)
    f = find(cmp, VIOLATION, WEB, API2)
    assert hop_text(f)[0] == "switch leaf1 vxlan vxlan5001" and "lacks 10.255.0.2" in f.hops[0].detail
    assert [x.dest.id for x in cmp.findings] == [API2]    # routed flows to h5 do not cross the VXLAN


def test_rbac_principal_added_is_a_leak_at_the_sidecar():
    key = "sidecar/h3/server-listener/grpc/server?xds.resource.listening_address=10.50.1.21:8080"
    res = change(resources(), key, lambda s: s["rbac"]["principals"].append("spiffe://corp.example/analytics/dash"))
    cmp = verify(res)
    f = find(cmp, LEAK, DASH, API1)
    assert f.extent == "masked"
    assert hop_text(f) == ["sidecar h3 rbac principal spiffe://corp.example/analytics/dash"]
    assert {h.device for h in f.blocking} >= {"h4", "h3"}     # no route from h4; h3's nftables drop


def test_unobserved_target_makes_its_pairs_unknown_never_allowed():
    cmp = verify(resources(), unobserved={("switch", "leaf2"): "unreachable: timeout"}, expand=True)
    f = find(cmp, UNKNOWN_KIND, WEB, API2)
    assert any("not observed: unreachable: timeout" in h.detail for h in f.hops)
    assert all(f.kind == UNKNOWN_KIND for f in cmp.findings)
    # a pair the destination's own nftables drops is still proven dropped
    v = next(v for r in cmp.results if r.dest.id == API2 for s, _, v in r.pairs if s.id == LEDGER)
    assert v.outcome == DROPPED
    assert cmp.exit_code() == 2


def test_rule_not_understood_makes_the_pairs_it_touches_unknown():
    odd = parse_rule([{"match": {"op": "==", "left": {"meta": {"key": "mark"}}, "right": 1}}, {"accept": None}])
    res = change(resources(), H3_TABLE, lambda s: s["chains"]["input"]["rules"].insert(1, odd))
    cmp = verify(res, layers=L4)
    f = find(cmp, UNKNOWN_KIND, LEDGER, API1)
    assert "not understood" in f.hops[0].detail and "mark" in f.hops[0].detail
    # allowed callers are accepted before or after that rule either way: delivered
    assert not any(x.source.id in (WEB, INVOICER) for x in cmp.findings)
    assert not any(x.dest.id == API2 for x in cmp.findings)


def test_app_filter_keeps_the_app_and_what_it_calls():
    cmp = verify(resources(), apps=["billing"])
    dests = {r.dest.id: r for r in cmp.results}
    assert LEDGER_PG in dests and API1 in dests and API2 in dests
    assert {s.id for s, _, _ in dests[API1].pairs} == {INVOICER}
    assert "analytics/collector@10.50.3.11:9000" not in dests
