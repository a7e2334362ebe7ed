"""Pure tests of the linux_ovs_frr platform table: parsers, renderers, negation rules, validation.

The raw fixture (tests/fixtures/switch/leaf1_raw.json) is the observe output of leaf1 of the
reference lab after applying examples/intents (captured with the switch driver).
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from reconciler.compile import compile_repo
from reconciler.drivers.switch.driver import inverse_changes, verify
from reconciler.drivers.switch.platforms import InvalidValue, platform_of, platforms
from reconciler.drivers.switch.platforms.linux_ovs_frr.render import PARK_VLAN, parse_bgp_config
from reconciler.intents.validate import load_repo
from reconciler.model import Layer, Resource, ResourceKey, State
from reconciler.plan import make_plan
from reconciler.status import Action

ROOT = Path(__file__).resolve().parents[2]
RAW = json.loads((ROOT / "tests/fixtures/switch/leaf1_raw.json").read_text())
P = platform_of({})
VARS = {"netintent_bridge": "br0", "netintent_asn": 65001}


@pytest.fixture(scope="module")
def desired() -> State:
    repo = load_repo(ROOT / "examples/intents")
    return State.of(r for r in compile_repo(repo) if r.key.layer is Layer.SWITCH)


def leaf(state: State, name: str = "leaf1") -> State:
    return state.for_target(Layer.SWITCH, name)


def key(kind: str, name: str, target: str = "leaf1") -> ResourceKey:
    return ResourceKey(Layer.SWITCH, target, kind, name)


def test_platform_table_lookup():
    assert P.name == "linux_ovs_frr" and P.device_type == "linux"
    assert "linux_ovs_frr" in platforms()
    with pytest.raises(InvalidValue, match="unknown switch platform 'eos'.*linux_ovs_frr"):
        platform_of({"netintent_platform": "eos"})


def test_observed_leaf_equals_compiled_leaf(desired):
    observed = State.of(P.parse("leaf1", RAW, VARS))
    plan = make_plan(leaf(desired), observed, prune=True)
    assert plan.empty, plan.to_json()
    # every compiled kind is observed, with the app recovered from the device's marks
    d = {r.key: r.app for r in leaf(desired)}
    o = {r.key: r.app for r in observed if r.owned}
    assert d == o


def test_running_config_is_canonical():
    a, b = P.running_config(RAW), P.running_config(dict(RAW))
    assert a == b
    text = json.dumps(a)
    assert "uuid" not in text
    assert a["ovs"]["br0"]["eth1"]["trunks"] == [101, 102]


def test_unmarked_trunk_vlan_is_unowned():
    raw = dict(RAW)
    ports = json.loads(raw["ports"])
    for row in ports["data"]:
        if row[1] == "eth2":
            row[3] = ["set", [101, 103, 999]]
    raw["ports"] = json.dumps(ports)
    r = {x.key: x for x in P.parse("leaf1", raw, VARS)}
    assert r[key("vlan-trunk", "eth2:999")].owned is False
    assert r[key("vlan-trunk", "eth2:101")].owned is True and r[key("vlan-trunk", "eth2:101")].app == "shop"


def test_parse_bgp_config_only_default_vrf_block():
    text = """frr version 8.4
router bgp 65001
 bgp router-id 10.255.0.1
 neighbor eth3 interface remote-as external
 neighbor eth3 timers 3 9
 neighbor 10.0.0.9 remote-as 65009
 !
 address-family ipv4 unicast
  network 10.255.0.1/32
  network 10.255.0.9/32
 exit-address-family
exit
!
router bgp 65001 vrf blue
 neighbor eth9 interface remote-as external
exit
"""
    assert parse_bgp_config(text) == {"asn": 65001, "router_id": "10.255.0.1",
                                      "networks": ["10.255.0.1/32", "10.255.0.9/32"], "neighbors": ["eth3"]}
    assert parse_bgp_config("frr version 8.4\n!\nend\n") is None


def _texts(cmds):
    return [c.text() for c in cmds]


def test_render_from_scratch_orders_kinds_and_merges_frr(desired):
    plan = make_plan(leaf(desired), State.of([]))
    cmds = _texts(P.render(plan.changes, [], list(leaf(desired)), VARS))
    first = [c.split()[0] for c in cmds]
    assert first[0] == "vtysh" and "router bgp 65001" in cmds[0]
    assert cmds[1].startswith("ovs-vsctl") and "add port eth1 trunks 101 102" in cmds[1]
    assert "external_ids:netintent_vlan_101=shop" in cmds[1]
    assert any(c.startswith("ip link add vxlan5001 type vxlan id 5001 local 10.255.0.1 dstport 4789") for c in cmds)
    assert "bridge fdb append 00:00:00:00:00:00 dev vxlan5001 dst 10.255.0.2" in cmds
    assert any("priority=300,dl_src=02:4e:49:00:00:65,actions=drop" in c for c in cmds)
    # host routes: one vtysh process at the end
    assert cmds[-1].startswith("vtysh") and "ip route 10.50.1.22/32 10.255.0.2 tag 20041" in cmds[-1]
    assert sum(c.startswith("vtysh") for c in cmds) == 2


def test_trunk_negation_removes_only_its_vlan_and_parks():
    obs = [Resource(key("vlan-trunk", "eth1:101"), {"bridge": "br0", "port": "eth1", "vlan": 101}, "shop"),
           Resource(key("vlan-trunk", "eth1:102"), {"bridge": "br0", "port": "eth1", "vlan": 102}, "billing")]
    plan = make_plan(State.of(obs[:1]), State.of(obs), prune=True)
    [cmd] = _texts(P.render(plan.changes, obs, obs[:1], VARS))
    assert "remove port eth1 trunks 102" in cmd and "remove port eth1 external_ids netintent_vlan_102" in cmd
    assert "101" not in cmd                   # the other VLANs of the port are not named, so never dropped
    assert str(PARK_VLAN) not in cmd          # 101 is left: no parking (a rollback restores the set exactly)
    plan = make_plan(State.of([]), State.of(obs), prune=True)
    [cmd] = _texts(P.render(plan.changes, obs, [], VARS))
    assert f"add port eth1 trunks {PARK_VLAN}" in cmd      # never an empty trunks (= all VLANs)


def test_a_run_that_sees_only_its_apps_vlans_adds_its_own_and_names_no_other():
    """A shard member (or a self-heal) scoped to billing observes only billing's VLANs on a port
    that also carries shop's: adding billing's must not drop shop's."""
    mine = Resource(key("vlan-trunk", "eth1:102"), {"bridge": "br0", "port": "eth1", "vlan": 102}, "billing")
    plan = make_plan(State.of([mine]), State.of([]), prune=True)
    [cmd] = _texts(P.render(plan.changes, [], [mine], VARS))
    assert "add port eth1 trunks 102" in cmd and "external_ids:netintent_vlan_102=billing" in cmd
    assert "trunks=" not in cmd and "remove" not in cmd


def test_vxlan_flood_update_touches_only_the_flood_list():
    spec = {"bridge": "br0", "vni": 5001, "vlan": 101, "local": "10.255.0.1", "dstport": 4789,
            "flood": ["10.255.0.2"]}
    o = Resource(key("vxlan", "vxlan5001"), spec, "shop")
    d = Resource(key("vxlan", "vxlan5001"), {**spec, "flood": ["10.255.0.3"]}, "shop")
    plan = make_plan(State.of([d]), State.of([o]))
    assert _texts(P.render(plan.changes, [o], [d], VARS)) == [
        "bridge fdb del 00:00:00:00:00:00 dev vxlan5001 dst 10.255.0.2",
        "bridge fdb append 00:00:00:00:00:00 dev vxlan5001 dst 10.255.0.3"]
    moved = Resource(d.key, {**spec, "local": "10.255.0.9"}, "shop")
    cmds = _texts(P.render(make_plan(State.of([moved]), State.of([o])).changes, [o], [moved], VARS))
    assert cmds[0].endswith("del-port br0 vxlan5001") and cmds[1] == "ip link del dev vxlan5001"


def test_bgp_update_adds_and_removes_neighbours_and_networks():
    o = Resource(key("bgp", "65001"), {"asn": 65001, "router_id": "10.255.0.1", "networks": ["10.255.0.1/32"],
                                       "neighbors": ["eth3"]})
    d = Resource(o.key, {"asn": 65001, "router_id": "10.255.0.1", "networks": ["10.255.0.1/32", "10.9.0.0/24"],
                         "neighbors": ["eth4"]})
    [cmd] = P.render(make_plan(State.of([d]), State.of([o])).changes, [o], [d], VARS)
    assert cmd.argv == ("vtysh", "-c", "configure terminal", "-c", "router bgp 65001", "-c", "no neighbor eth3",
                        "-c", "neighbor eth4 interface remote-as external", "-c", "address-family ipv4 unicast",
                        "-c", "network 10.9.0.0/24", "-c", "exit-address-family")
    [cmd] = P.render(make_plan(State.of([]), State.of([o]), prune=True).changes, [o], [], VARS)
    assert cmd.argv[-1] == "no router bgp 65001"


@pytest.mark.parametrize("kind,name,spec,match", [
    ("vlan-trunk", "eth1:5000", {"bridge": "br0", "port": "eth1", "vlan": 5000}, "VLAN must be"),
    ("vlan-trunk", "x:1", {"bridge": "br0", "port": "eth1; reboot", "vlan": 1}, "invalid interface"),
    ("gateway", "gw101", {"bridge": "br0", "vlan": 101, "address": "10.0.0.1", "prefixlen": 24,
                          "mac": "zz:4e:49:00:00:65", "mac_guard": True}, "invalid MAC"),
    ("vxlan", "vxlan1", {"bridge": "br0", "vni": 1, "vlan": 1, "local": "10.0.0.1 && id", "dstport": 4789,
                         "flood": []}, "invalid IPv4"),
    ("host-route", "x", {"prefix": "10.0.0.1/32", "nexthop": "$(id)"}, "invalid IPv4"),
    ("bgp", "1", {"asn": "1; id", "router_id": "10.0.0.1", "networks": [], "neighbors": []}, "AS number"),
])
def test_invalid_values_never_reach_a_command(kind, name, spec, match):
    r = Resource(key(kind, name), spec, "shop")
    with pytest.raises(InvalidValue, match=match):
        P.render(make_plan(State.of([r]), State.of([])).changes, [], [r], VARS)


def test_app_name_with_shell_characters_is_rejected():
    r = Resource(key("vlan-trunk", "eth1:7"), {"bridge": "br0", "port": "eth1", "vlan": 7}, "x'; id; '")
    with pytest.raises(InvalidValue, match="application name"):
        P.render(make_plan(State.of([r]), State.of([])).changes, [], [r], VARS)


def test_verify_names_missing_differing_and_leftover_keys():
    a = Resource(key("vlan-trunk", "eth1:7"), {"bridge": "br0", "port": "eth1", "vlan": 7}, "shop")
    b = Resource(key("host-route", "10.0.0.1/32"), {"prefix": "10.0.0.1/32", "nexthop": "10.255.0.2"}, "shop")
    c = Resource(key("host-route", "10.0.0.2/32"), {"prefix": "10.0.0.2/32", "nexthop": "10.255.0.2"}, "shop")
    b2 = Resource(b.key, {**dict(b.spec), "nexthop": "10.255.0.3"}, "shop")
    changes = make_plan(State.of([a, b]), State.of([c]), prune=True).changes
    problems = dict(verify(changes, [b2, c]))
    assert problems == {str(a.key): "missing after apply", str(b.key): "differs after apply: nexthop",
                        str(c.key): "still present"}
    assert verify(changes, [a, b]) == []


def test_inverse_changes_leave_untouched_new_state_alone():
    a = Resource(key("vlan-trunk", "eth1:7"), {"bridge": "br0", "port": "eth1", "vlan": 7}, "shop")
    b = Resource(key("vlan-trunk", "eth1:8"), {"bridge": "br0", "port": "eth1", "vlan": 8}, "shop")
    other = Resource(key("vlan-trunk", "eth2:9"), {"bridge": "br0", "port": "eth2", "vlan": 9}, "x")
    forward = make_plan(State.of([b]), State.of([a]), prune=True).changes   # delete a, create b
    inv = inverse_changes(forward, before=[a], now=[b, other])
    assert {(str(c.key), c.action) for c in inv} == {(str(a.key), Action.CREATE), (str(b.key), Action.DELETE)}


def test_inverse_changes_restore_collateral_damage():
    """A trunk rewrite for one key can drop another VLAN of the same port: rollback restores it."""
    a = Resource(key("vlan-trunk", "eth1:7"), {"bridge": "br0", "port": "eth1", "vlan": 7}, "shop")
    c = Resource(key("vlan-trunk", "eth1:9"), {"bridge": "br0", "port": "eth1", "vlan": 9}, "x")
    new = Resource(key("vlan-trunk", "eth1:8"), {"bridge": "br0", "port": "eth1", "vlan": 8}, "y")
    forward = make_plan(State.of([a, c, new]), State.of([a, c])).changes
    inv = inverse_changes(forward, before=[a, c], now=[a, new])
    assert {(str(x.key), x.action) for x in inv} == {(str(c.key), Action.CREATE), (str(new.key), Action.DELETE)}
