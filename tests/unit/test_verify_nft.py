"""Table-driven: what a host's nftables do with a packet (rule order, ct state, several base
chains at one hook, jumps, rules not understood). Foreign rules are fed through the driver's own
parse_rule from `nft -j` expressions as nft 1.0.6 prints them."""
from __future__ import annotations

import pytest

from reconciler.drivers.ansible.nftables import parse_rule
from reconciler.model import Layer, Resource, ResourceKey
from reconciler.verify.model import DENY, PERMIT, UNKNOWN, Model
from reconciler.verify.nft import Pkt, host_filter
from reconciler.verify.nftsets import saddr_terms
from reconciler.verify.wiring import Wiring

ALLOWED, OTHER, DST = "10.0.0.5", "10.0.0.9", "10.0.0.2"


def _m(field, right, op="=="):
    proto = "ip" if field in ("saddr", "daddr") else "tcp"
    return {"match": {"op": op, "left": {"payload": {"protocol": proto, "field": field}}, "right": right}}


ACCEPT, DROP = {"accept": None}, {"drop": None}
CT_EST = {"match": {"op": "in", "left": {"ct": {"key": "state"}}, "right": ["established", "related"]}}
MARK = {"match": {"op": "==", "left": {"meta": {"key": "mark"}}, "right": 1}}

# the compiled table: established first, the allow set, then drop for local addresses
OWNED = [{"match": {"daddr_set": "local", "ct_state": ["established", "related"]}, "verdict": "accept"},
         {"match": {"saddr_set": "allow", "daddr_set": "local", "protocol": "tcp", "dport": 80}, "verdict": "accept"},
         {"match": {"daddr_set": "local"}, "verdict": "drop"}]


def _table(name, rules, priority=0, policy="accept", family="inet", hook="input", extra=None):
    chains = {"input": {"type": "filter", "hook": hook, "priority": priority, "policy": policy,
                        "rules": [r if "verdict" in r else parse_rule(r) for r in rules]}}
    for cname, crules in (extra or {}).items():
        chains[cname] = {"type": None, "hook": None, "priority": None, "policy": None,
                         "rules": [parse_rule(r) for r in crules]}
    return Resource(ResourceKey(Layer.HOST, "h", "nft-table", f"{family}/{name}"),
                    {"family": family, "name": name, "chains": chains}, owned=name.startswith("netintent"))


def _set(table, name, elems, family="inet"):
    return Resource(ResourceKey(Layer.HOST, "h", "nft-set", f"{table}/{name}"),
                    {"family": family, "table": table, "name": name, "type": "ipv4_addr", "elements": elems})


SETS = [_set("netintent_a", "allow", [ALLOWED]), _set("netintent_a", "local", [DST])]


def _filter(tables, src=ALLOWED, ct="new", dport=80, sets=SETS):
    m = Model.build(list(tables) + list(sets), Wiring(hosts=frozenset({"h"})))
    return host_filter(m.hosts["h"], ("prerouting", "input"), Pkt(src, DST, "tcp", dport, ct, iif="eth1"))


CASES = [
    # (name, tables, source, ct, expected decision, deciding rule contains)
    ("allowed caller, new", [_table("netintent_a", OWNED)], ALLOWED, "new", PERMIT, "netintent_a input #2"),
    ("other caller, new", [_table("netintent_a", OWNED)], OTHER, "new", DENY, "netintent_a input #3"),
    ("other caller, established", [_table("netintent_a", OWNED)], OTHER, "established", PERMIT, "input #1"),
    ("accept ahead of the drop", [_table("netintent_a", OWNED[:2] + [
        {"match": {"daddr_set": "local", "protocol": "tcp", "dport": 80}, "verdict": "accept"}] + OWNED[2:])],
     OTHER, "new", PERMIT, "input #3"),
    ("drop ahead of the accept", [_table("netintent_a", [OWNED[2]] + OWNED[:2])], ALLOWED, "new", DENY, "input #1"),
    ("foreign earlier accept does not bypass a later drop",
     [_table("foreign", [[ACCEPT]], priority=-10, family="ip"), _table("netintent_a", OWNED)],
     OTHER, "new", DENY, "netintent_a input #3"),
    ("foreign earlier policy drop wins over an accept", [
        _table("foreign", [[CT_EST, ACCEPT]], priority=-10, policy="drop", family="ip"),
        _table("netintent_a", OWNED)], ALLOWED, "new", DENY, "ip foreign input: policy drop"),
    ("foreign policy drop lets established through", [
        _table("foreign", [[CT_EST, ACCEPT]], priority=-10, policy="drop", family="ip"),
        _table("netintent_a", OWNED)], OTHER, "established", PERMIT, "input #1"),
    ("foreign later drop by prefix", [_table("netintent_a", OWNED), _table("foreign", [
        [_m("saddr", {"prefix": {"addr": "10.0.0.0", "len": 29}}), DROP]], priority=10, family="ip")],
     ALLOWED, "new", DENY, "ip foreign input #1"),
    ("prefix does not cover the source", [_table("foreign", [
        [_m("saddr", {"prefix": {"addr": "10.0.0.0", "len": 30}}), DROP]], family="ip")],
     ALLOWED, "new", PERMIT, "policy accept"),
    ("ip6 table does not see IPv4", [_table("foreign", [[DROP]], family="ip6")], ALLOWED, "new", PERMIT, ""),
    ("negated saddr", [_table("foreign", [[_m("saddr", ALLOWED, "!="), DROP]], family="ip")],
     OTHER, "new", DENY, "foreign input #1"),
    ("anonymous port set with a range", [_table("foreign", [
        [_m("dport", {"set": [8080, {"range": [70, 90]}]}), DROP]], family="ip")], ALLOWED, "new", DENY, "#1"),
    ("jump to a chain that returns, then drop", [_table("foreign", [[{"jump": {"target": "sub"}}], [DROP]],
                                                        family="ip", extra={"sub": [[_m("saddr", OTHER), ACCEPT],
                                                                                    [{"return": None}]]})],
     ALLOWED, "new", DENY, "foreign input #2"),
    ("jump to a chain that accepts", [_table("foreign", [[{"jump": {"target": "sub"}}], [DROP]],
                                             family="ip", extra={"sub": [[_m("saddr", ALLOWED), ACCEPT]]})],
     ALLOWED, "new", PERMIT, "sub #1"),
    ("goto returns to the base chain's policy", [_table("foreign", [[{"goto": {"target": "sub"}}], [ACCEPT]],
                                                        family="ip", policy="drop",
                                                        extra={"sub": [[{"return": None}]]})],
     ALLOWED, "new", DENY, "policy drop"),
    ("reject is a drop", [_table("foreign", [[{"reject": {"type": "icmp", "expr": "port-unreachable"}}]],
                                 family="ip")], ALLOWED, "new", DENY, "#1"),
    ("rule not understood that may decide", [_table("foreign", [[MARK, DROP]], family="ip")],
     ALLOWED, "new", UNKNOWN, "foreign input"),
    ("rule not understood, both ways alike", [_table("foreign", [[MARK, ACCEPT], [ACCEPT]], family="ip")],
     ALLOWED, "new", PERMIT, "foreign input"),
    ("set not observed", [_table("netintent_a", OWNED)], ALLOWED, "new", UNKNOWN, "netintent_a input"),
    ("iifname lo accept only for loopback", [_table("foreign", [
        [{"match": {"op": "==", "left": {"meta": {"key": "iifname"}}, "right": "lo"}}, ACCEPT]],
        family="ip", policy="drop")], ALLOWED, "new", DENY, "policy drop"),
]


@pytest.mark.parametrize("name,tables,src,ct,decision,rule", CASES, ids=[c[0] for c in CASES])
def test_host_filter(name, tables, src, ct, decision, rule):
    sets = [] if name == "set not observed" else SETS
    d, deciding, detail, _ = _filter(tables, src, ct, sets=sets)
    assert d == decision, (deciding, detail)
    assert rule in deciding


def test_unknown_reason_names_the_rule():
    d, deciding, detail, _ = _filter([_table("foreign", [[MARK, DROP]], family="ip")])
    assert d == UNKNOWN and '"mark"' in detail and "not understood" in detail


def test_every_accepting_chain_is_named():
    d, _, _, accepts = _filter([_table("foreign", [[ACCEPT]], priority=-10, family="ip"),
                                _table("netintent_a", OWNED)])
    assert d == PERMIT and [a.split(" #")[0] for a in accepts] == ["ip foreign input", "inet netintent_a input"]


def test_saddr_terms_list_what_rules_test():
    m = Model.build([_table("netintent_a", OWNED), _table("foreign", [
        [_m("saddr", {"prefix": {"addr": "10.9.0.0", "len": 16}}), DROP], [_m("saddr", "10.7.7.7"), ACCEPT]],
        family="ip")] + SETS, Wiring(hosts=frozenset({"h"})))
    exact, spans, every = saddr_terms(m.hosts["h"])
    assert exact == {ALLOWED, "10.7.7.7"} and len(spans) == 1 and not every
    m2 = Model.build([_table("foreign", [[_m("saddr", ALLOWED, "!="), DROP]], family="ip")],
                     Wiring(hosts=frozenset({"h"})))
    assert saddr_terms(m2.hosts["h"])[2] is True
