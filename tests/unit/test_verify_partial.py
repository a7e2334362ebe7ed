"""Partial data, table-driven: a target of any layer that could not be observed, and state the
model does not understand (an nft rule, an OVS action), make the pairs they touch `unknown` with
the reason, never delivered and never guessed; and foreign nft tables as the host driver now
reports them (from a real `nft -j list ruleset`) are seen by the model at their priority."""
from __future__ import annotations

import json

import pytest
from verify_cases import add, change, find, resources, verify

from reconciler.drivers.ansible.nft_foreign import foreign_tables
from reconciler.drivers.ansible.nftables import parse_rule, parse_ruleset
from reconciler.model import Layer
from reconciler.verify.compare import UNKNOWN_KIND, VIOLATION
from reconciler.verify.verdict import DELIVERED, UNDECIDED

WEB, INVOICER, LEDGER = "shop/web@10.50.1.11", "billing/invoicer@10.50.2.11", "billing/ledger@10.50.2.21"
API1 = "shop/api@10.50.1.21:8080"
H3_TABLE = "host/h3/nft-table/netintent_shop"


def _odd_nft(res):
    odd = parse_rule([{"match": {"op": "==", "left": {"meta": {"key": "mark"}}, "right": 1}}, {"drop": None}])
    return change(res, H3_TABLE, lambda s: s["chains"]["input"]["rules"].insert(0, odd))


def _odd_flow(res):   # an action the model does not read, above the anti-spoofing flows of web's port
    return add(res, "hypervisor/hv1/ovs-flow/priority=300,ip,in_port=eth2",
               {"table": 0, "priority": 300, "match": "ip,in_port=eth2", "actions": "mod_vlan_vid:5,NORMAL"})


UNOBSERVED = [
    # (layer, target, a pair that must become unknown)
    ("host", "h1", WEB, API1),            # the caller's host: its routing is not known
    ("hypervisor", "hv2", INVOICER, API1),  # on the way in to h3
    ("switch", "leaf1", WEB, API1),
    ("sidecar", "h3", WEB, API1),         # the server's RBAC
]


@pytest.mark.parametrize("layer,target,src,dst", UNOBSERVED, ids=[f"{u[0]}-{u[1]}" for u in UNOBSERVED])
def test_an_unobserved_target_makes_its_pairs_unknown_with_the_reason(layer, target, src, dst):
    why = f"unreachable: {target} timed out"
    res = [r for r in resources() if not (r.key.layer is Layer(layer) and r.key.target == target)]
    cmp = verify(res, unobserved={(layer, target): why}, expand=True)
    f = find(cmp, UNKNOWN_KIND, src, dst)
    assert any(why in h.detail and h.device == target for h in f.hops), [str(h) for h in f.hops]
    assert f.verdict.outcome == UNDECIDED and cmp.exit_code() == 2
    for r in cmp.results:             # nothing that crosses the target is claimed delivered
        for _, _, v in r.pairs:
            touched = any(h.device == target and h.layer == layer for h in v.hops)
            assert not (touched and v.outcome == DELIVERED)


@pytest.mark.parametrize("edit,src,dst,words", [
    (_odd_nft, INVOICER, API1, '"mark"'),
    (_odd_flow, WEB, API1, "mod_vlan_vid"),
], ids=["nft-rule", "ovs-action"])
def test_state_not_understood_is_reported_and_its_pairs_unknown(edit, src, dst, words):
    cmp = verify(edit(resources()), layers=["switch", "hypervisor", "host"])
    f = find(cmp, UNKNOWN_KIND, src, dst)
    assert any(words in h.detail for h in f.hops) and f.verdict.l4 == UNDECIDED


# `nft -j list ruleset` of a namespace holding a hand-made table next to a reconciler table
# (captured from nft 1.0.6: table ip handmade { set trusted ...; chain input { type filter hook input
# priority -10; ... } chain helper { ... } }  table inet netintent_shop { chain input { ... } })
RULESET = {"nftables": [
    {"metainfo": {"version": "1.0.6", "release_name": "Lester Gooch #5", "json_schema_version": 1}},
    {"table": {"family": "ip", "name": "handmade", "handle": 1}},
    {"set": {"family": "ip", "name": "trusted", "table": "handmade", "type": "ipv4_addr", "handle": 3,
             "flags": ["interval"], "elem": [{"prefix": {"addr": "10.50.2.0", "len": 24}}, "10.50.3.12"]}},
    {"chain": {"family": "ip", "table": "handmade", "name": "input", "handle": 1, "type": "filter",
               "hook": "input", "prio": -10, "policy": "accept"}},
    {"chain": {"family": "ip", "table": "handmade", "name": "helper", "handle": 2}},
    {"rule": {"family": "ip", "table": "handmade", "chain": "input", "handle": 4, "expr": [
        {"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "saddr"}}, "right": "@trusted"}},
        {"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}}, "right": 8080}},
        {"counter": {"packets": 0, "bytes": 0}}, {"accept": None}]}},
    {"rule": {"family": "ip", "table": "handmade", "chain": "input", "handle": 5, "expr": [
        {"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "saddr"}}, "right": "10.50.1.11"}},
        {"drop": None}]}},
    {"rule": {"family": "ip", "table": "handmade", "chain": "helper", "handle": 7, "expr": [
        {"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}}, "right": 22}},
        {"accept": None}]}},
    {"table": {"family": "inet", "name": "netintent_shop", "handle": 2}},
    {"chain": {"family": "inet", "table": "netintent_shop", "name": "input", "handle": 1, "type": "filter",
               "hook": "input", "prio": 0, "policy": "accept"}},
]}


def test_foreign_tables_are_reported_unowned_and_apart_from_the_owned_ones():
    got = {str(r.key): r for r in foreign_tables(RULESET, "h3")}
    assert set(got) == {"host/h3/nft-table/ip/handmade", "host/h3/nft-set/ip/handmade/trusted"}
    assert all(not r.owned and r.app == "" for r in got.values())
    t = got["host/h3/nft-table/ip/handmade"].spec
    assert t["chains"]["input"]["priority"] == -10 and t["chains"]["input"]["hook"] == "input"
    assert "hook" not in t["chains"]["helper"] and len(t["chains"]["input"]["rules"]) == 2
    s = got["host/h3/nft-set/ip/handmade/trusted"].spec
    assert json.loads(s["elements"][1]) == {"prefix": {"addr": "10.50.2.0", "len": 24}}
    owned, _ = parse_ruleset(RULESET, "h3")       # the owned parse is unchanged by it
    assert [str(r.key) for r in owned] == ["host/h3/nft-table/netintent_shop"]
    again = foreign_tables(json.loads(json.dumps(RULESET).replace('"packets": 0', '"packets": 912')), "h3")
    assert [r.spec for r in again] == [r.spec for r in got.values()], "counter values are not state"


def test_a_foreign_table_at_an_earlier_priority_is_seen_by_verify():
    res = resources() + foreign_tables(RULESET, "h3")
    cmp = verify(res)
    f = find(cmp, VIOLATION, WEB, API1)               # its `ip saddr 10.50.1.11 drop` blocks web -> api
    assert f.hops[0].device == "h3" and f.hops[0].rule.startswith("ip handmade input #2")
    assert "priority -10" in f.hops[0].detail
    # its accept for @trusted (billing's subnet) ends only its own chain: shop's table still drops ledger
    assert not any(x.source.id == LEDGER and x.dest.id == API1 for x in cmp.findings)
    v = next(v for r in cmp.results if r.dest.id == API1 for s, _, v in r.pairs if s.id == LEDGER)
    assert v.l4 == "dropped" and any("netintent_shop input" in h.rule for h in v.hops)


def test_a_destination_dropping_established_packets_never_completes_the_handshake():
    # found by tests/lab/test_verify_property.py: the SYN is admitted (ct state new), the client's ACK
    # and data are not (ct state established): the connect does not complete
    drop_est = [[{"match": {"op": "in", "left": {"ct": {"key": "state"}}, "right": ["established", "related"]}},
                 {"drop": None}]]
    table = {"family": "ip", "name": "handmade", "chains": {"input": {
        "type": "filter", "hook": "input", "priority": 0, "policy": "accept",
        "rules": [parse_rule(e) for e in drop_est]}}}
    cmp = verify(add(resources(), "host/h3/nft-table/ip/handmade", table))
    f = find(cmp, VIOLATION, WEB, API1)
    assert f.hops[0].device == "h3" and "ct established" in f.hops[0].detail
    assert f.verdict.l4 == "dropped"
