"""Pure tests of the host driver's nftables model: parse `nft -j` into compile's shapes, render,
plan element-only changes, refuse unsafe values. No nft binary needed (the lab tests load the
rendered scripts into a real nft)."""
from __future__ import annotations

import json

import pytest

from reconciler.drivers.ansible.host import parse_host, render_ip
from reconciler.drivers.ansible.nftables import NftError, parse_ruleset, plan_script, render_rule, render_table
from reconciler.model import Layer, Resource, ResourceKey

# Captured from nftables 1.0.6 (`nft -j list ruleset`) after loading a rendered table + a hand table.
RULESET = {"nftables": [
    {"metainfo": {"version": "1.0.6", "json_schema_version": 1}},
    {"table": {"family": "inet", "name": "netintent_shop", "handle": 1}},
    {"set": {"family": "inet", "name": "local", "table": "netintent_shop", "type": "ipv4_addr", "handle": 2,
             "comment": "netintent app=shop", "elem": ["10.50.1.11"]}},
    {"set": {"family": "inet", "name": "allow_web_http", "table": "netintent_shop", "type": "ipv4_addr",
             "handle": 3, "comment": "netintent app=shop"}},
    {"chain": {"family": "inet", "table": "netintent_shop", "name": "input", "handle": 1, "type": "filter",
               "hook": "input", "prio": 0, "policy": "accept"}},
    {"rule": {"family": "inet", "table": "netintent_shop", "chain": "input", "handle": 4, "expr": [
        {"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "daddr"}}, "right": "@local"}},
        {"match": {"op": "in", "left": {"ct": {"key": "state"}}, "right": {"set": ["established", "related"]}}},
        {"accept": None}]}},
    {"rule": {"family": "inet", "table": "netintent_shop", "chain": "input", "handle": 5, "expr": [
        {"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "saddr"}}, "right": "@allow_web_http"}},
        {"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "daddr"}}, "right": "@local"}},
        {"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}}, "right": 80}},
        {"accept": None}]}},
    {"table": {"family": "inet", "name": "handmade", "handle": 9}},
    {"chain": {"family": "inet", "table": "handmade", "name": "input", "handle": 1, "type": "filter",
               "hook": "input", "prio": 10, "policy": "accept"}},
]}

TABLE_SPEC = {"family": "inet", "name": "netintent_shop", "chains": {"input": {
    "type": "filter", "hook": "input", "priority": 0, "policy": "accept", "rules": [
        {"match": {"daddr_set": "local", "ct_state": ["established", "related"]}, "verdict": "accept"},
        {"match": {"saddr_set": "allow_web_http", "daddr_set": "local", "protocol": "tcp", "dport": 80},
         "verdict": "accept"}]}}, "counters": []}


def k(kind, name):
    return ResourceKey(Layer.HOST, "h1", kind, name)


def sets(elements=("10.50.1.11",), allow=()):
    return [Resource(k("nft-set", "netintent_shop/local"), {"family": "inet", "table": "netintent_shop",
                     "name": "local", "type": "ipv4_addr", "elements": sorted(elements)}, "shop"),
            Resource(k("nft-set", "netintent_shop/allow_web_http"), {"family": "inet", "table": "netintent_shop",
                     "name": "allow_web_http", "type": "ipv4_addr", "elements": sorted(allow)}, "shop")]


def test_parse_gives_compile_shapes_and_ignores_unowned_tables():
    tables, ss = parse_ruleset(RULESET, "h1")
    assert [t.key for t in tables] == [k("nft-table", "netintent_shop")]
    assert tables[0].spec == Resource(tables[0].key, TABLE_SPEC).spec
    assert tables[0].app == "shop"
    assert {s.key.name: s.spec["elements"] for s in ss} == {"netintent_shop/local": ("10.50.1.11",),
                                                            "netintent_shop/allow_web_http": ()}


def test_unknown_expression_is_kept_as_drift_not_dropped():
    rule = {"expr": [{"match": {"op": "==", "left": {"meta": {"key": "iifname"}}, "right": "eth9"}}, {"drop": None}]}
    parsed = __import__("reconciler.drivers.ansible.nftables", fromlist=["parse_rule"]).parse_rule(rule["expr"])
    assert parsed["verdict"] == "drop" and parsed["match"]["unparsed"]


def test_render_round_trips_through_the_parser_shape():
    text = render_table(TABLE_SPEC, sets(), "shop")
    assert text.startswith("table inet netintent_shop {")
    assert "ip saddr @allow_web_http ip daddr @local tcp dport 80 accept" in text
    assert 'comment "netintent app=shop"' in text


def test_element_only_change_sends_element_statements():
    table = Resource(k("nft-table", "netintent_shop"), TABLE_SPEC, "shop")
    observed = [table] + sets(allow=["10.0.0.1", "10.0.0.2"])
    desired = [table] + sets(allow=["10.0.0.2", "10.0.0.3"])
    plan = plan_script(desired, observed, prune=False)
    assert plan.script == ("delete element inet netintent_shop allow_web_http { 10.0.0.1 }\n"
                           "add element inet netintent_shop allow_web_http { 10.0.0.3 }\n")
    assert plan.writes == 2
    assert plan_script(observed, observed, prune=True).script == ""


def test_rule_change_replaces_the_table_in_one_script_and_prune_is_explicit():
    table = Resource(k("nft-table", "netintent_shop"), TABLE_SPEC, "shop")
    spec2 = json.loads(json.dumps(TABLE_SPEC))
    spec2["chains"]["input"]["rules"][1]["match"]["dport"] = 81
    plan = plan_script([Resource(table.key, spec2, "shop")] + sets(), [table] + sets(), prune=False)
    assert plan.script.startswith("delete table inet netintent_shop\ntable inet netintent_shop {")
    assert "tcp dport 81" in plan.script
    # owned table not desired: kept without prune, deleted with it
    assert plan_script([], [table] + sets(), prune=False).script == ""
    assert plan_script([], [table] + sets(), prune=True).script == "delete table inet netintent_shop\n"


@pytest.mark.parametrize("bad", [
    {"match": {"saddr_set": "x; flush ruleset"}, "verdict": "accept"},
    {"match": {"dport": "80 accept"}, "verdict": "accept"},
    {"match": {}, "verdict": "jump evil"},
    {"match": {"ct_state": ["established }"]}, "verdict": "accept"},
])
def test_unsafe_values_are_refused(bad):
    with pytest.raises(NftError):
        render_rule(bad)


def test_unsafe_elements_and_names_are_refused():
    with pytest.raises(NftError):
        render_table(TABLE_SPEC, sets(allow=["10.0.0.1 } ; flush ruleset ; {"]), "shop")
    with pytest.raises(NftError):
        render_table({**TABLE_SPEC, "name": "filter"}, [], "shop")  # not an owned table name


def test_parse_host_addresses_routes_ownership_and_app():
    links = [{"ifname": "lo", "addr_info": [{"family": "inet", "local": "127.0.0.1", "prefixlen": 8}]},
             {"ifname": "eth1", "addr_info": [
                 {"family": "inet", "local": "10.50.1.11", "prefixlen": 24, "label": "eth1:ni"},
                 {"family": "inet", "local": "192.0.2.7", "prefixlen": 32, "label": "eth1"}]}]
    routes = [{"dst": "10.50.1.0/24", "dev": "eth1", "protocol": "kernel"},
              {"dst": "10.50.2.0/24", "gateway": "10.50.1.1", "dev": "eth1", "protocol": "78"},
              {"dst": "default", "gateway": "172.20.20.1", "dev": "mgmt0", "protocol": "boot"}]
    out = parse_host("h1", json.dumps(links) + "@@NI@@" + json.dumps(routes) + "@@NI@@" + json.dumps(RULESET))
    by = {str(r.key): r for r in out}
    a = by["host/h1/address/eth1:10.50.1.11"]
    assert a.owned and a.app == "shop" and dict(a.spec) == {"interface": "eth1", "address": "10.50.1.11", "prefixlen": 24}
    assert not by["host/h1/address/eth1:192.0.2.7"].owned
    r = by["host/h1/route/10.50.2.0/24"]
    assert r.owned and r.app == "shop" and r.spec["gateway"] == "10.50.1.1"
    assert "host/h1/address/lo:127.0.0.1" not in by


def test_ip_batch_orders_deletes_first_and_keeps_unowned_without_prune():
    want = Resource(k("address", "eth1:10.50.1.11"), {"interface": "eth1", "address": "10.50.1.11", "prefixlen": 24}, "shop")
    old = Resource(k("address", "eth1:10.50.9.9"), {"interface": "eth1", "address": "10.50.9.9", "prefixlen": 24}, "old")
    route = Resource(k("route", "10.50.2.0/24"), {"destination": "10.50.2.0/24", "gateway": "10.50.1.1",
                                                   "interface": "eth1"}, "shop")
    lines, _ = render_ip([want, route], [old], prune=False)
    assert lines == ["address replace 10.50.1.11/24 dev eth1 label eth1:ni",
                     "route replace 10.50.2.0/24 via 10.50.1.1 dev eth1 proto 78"]
    lines, _ = render_ip([want], [old], prune=True)
    assert lines[0] == "address del 10.50.9.9/24 dev eth1"
    with pytest.raises(ValueError):
        render_ip([Resource(want.key, {**want.spec, "interface": "eth1 ; reboot"}, "shop")], [], False)
