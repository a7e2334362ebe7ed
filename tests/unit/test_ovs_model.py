"""Pure tests of the hypervisor driver's OVS model: canonical flow matches, parsing ovs-vsctl
JSON / dump-flows into compile's shapes, rendering only the difference, refusing unsafe values."""
from __future__ import annotations

import json

import pytest

from reconciler.drivers.ansible.ovs import OvsError, parse_flow_line, parse_ovs, render_ovs
from reconciler.model import Layer, Resource, ResourceKey
from reconciler.names import app_cookie, canonical_match

C = app_cookie("shop")
# Captured from OVS 3.1 (`ovs-vsctl --format=json ... list Port -- ... list Bridge br0`).
VSCTL = "\n".join([
    json.dumps({"data": [
        [["uuid", "u1"], "eth2", 101, ["set", []], ["map", [["netintent_app", "shop"]]]],
        [["uuid", "u2"], "eth1", ["set", []], ["set", [101, 999]], ["map", [["netintent_trunk_101", "shop"]]]],
        [["uuid", "u3"], "eth9", 7, ["set", []], ["map", []]],
        [["uuid", "u4"], "br0", ["set", []], ["set", []], ["map", []]]],
        "headings": ["_uuid", "name", "tag", "trunks", "external_ids"]}),
    json.dumps({"data": [["br0", ["set", [["uuid", "u1"], ["uuid", "u2"], ["uuid", "u3"], ["uuid", "u4"]]],
                          ["map", [[f"netintent_cookie_{C:016x}", "shop"]]]]],
                "headings": ["name", "ports", "external_ids"]}),
])
FLOWS = (f" cookie={C:#x}, priority=200,ip,in_port=eth2,nw_src=10.50.1.11 actions=NORMAL\n"
         f" cookie={C:#x}, priority=100,in_port=eth2 actions=drop\n"
         " cookie=0x77, priority=10,tcp,tp_dst=9999 actions=drop\n")


def k(kind, name):
    return ResourceKey(Layer.HYPERVISOR, "hv1", kind, name)


def test_canonical_match_is_ovs_print_order():
    assert canonical_match("in_port=eth2,dl_src=AA:BB:CC:DD:EE:FF,ip,nw_src=10.0.0.1/32") == \
        "ip,in_port=eth2,dl_src=aa:bb:cc:dd:ee:ff,nw_src=10.0.0.1"
    assert canonical_match("dl_vlan=7,in_port=eth1") == "in_port=eth1,dl_vlan=7"


def test_parse_flow_line_strips_volatile_fields():
    spec = parse_flow_line(f" cookie={C:#x}, duration=3.1s, table=0, n_packets=4, n_bytes=9, idle_age=2, "
                           "priority=200,arp,in_port=eth2,arp_spa=10.0.0.1 actions=NORMAL")
    assert spec == {"table": 0, "priority": 200, "match": "arp,in_port=eth2,arp_spa=10.0.0.1",
                    "actions": "NORMAL", "cookie": C}


def test_parse_ovs_ownership_and_apps():
    by = {str(r.key): r for r in parse_ovs(VSCTL, FLOWS, "hv1")}
    assert by["hypervisor/hv1/ovs-port/eth2"].owned and by["hypervisor/hv1/ovs-port/eth2"].app == "shop"
    assert dict(by["hypervisor/hv1/ovs-port/eth2"].spec) == {"bridge": "br0", "port": "eth2", "tag": 101}
    assert not by["hypervisor/hv1/ovs-port/eth9"].owned                      # hand-tagged port
    assert by["hypervisor/hv1/trunk-vlan/eth1:101"].owned
    assert not by["hypervisor/hv1/trunk-vlan/eth1:999"].owned                # hand-added VLAN
    f = by["hypervisor/hv1/ovs-flow/priority=200,ip,in_port=eth2,nw_src=10.50.1.11"]
    assert f.app == "shop" and f.spec["cookie"] == C
    assert not any("9999" in key for key in by)                              # foreign cookie ignored


def test_render_sends_only_the_difference_and_keeps_unowned():
    observed = parse_ovs(VSCTL, FLOWS, "hv1")
    keep = [r for r in observed if r.owned]
    plan = render_ovs(keep, observed, prune=True, bridge="br0")
    assert plan.writes == 0 and plan.flows == [] and plan.vsctl == []
    new_flow = Resource(k("ovs-flow", "priority=200,arp,in_port=eth2,arp_spa=10.50.1.11"),
                        {"table": 0, "priority": 200, "match": "arp,in_port=eth2,arp_spa=10.50.1.11",
                         "actions": "NORMAL", "cookie": C}, "shop")
    trunk = Resource(k("trunk-vlan", "eth1:102"), {"bridge": "br0", "port": "eth1", "vlan": 102}, "billing")
    desired = [r for r in keep if "priority=100" not in r.key.name] + [new_flow, trunk]
    plan = render_ovs(desired, observed, prune=True, bridge="br0")
    assert plan.flows == [f"delete_strict cookie={C:#x}/-1,table=0,priority=100,in_port=eth2",
                          f"add cookie={C:#x},table=0,priority=200,arp,in_port=eth2,arp_spa=10.50.1.11,actions=NORMAL"]
    assert plan.vsctl[plan.vsctl.index("add"):][:5] == ["add", "Port", "eth1", "trunks", "102"]
    assert "999" not in plan.vsctl and "remove" not in plan.vsctl            # the hand VLAN is never named
    plan = render_ovs(desired, observed, prune=False, bridge="br0")
    assert not any(line.startswith("delete_strict") for line in plan.flows)


@pytest.mark.parametrize("spec", [
    {"table": 0, "priority": 1, "match": "in_port=eth2 actions=drop", "actions": "drop", "cookie": C},
    {"table": 0, "priority": 1, "match": "in_port=eth2", "actions": "drop\nadd cookie=0x1,actions=NORMAL", "cookie": C},
    {"table": 0, "priority": 1, "match": "in_port=eth2", "actions": "drop", "cookie": 0x77},  # not our cookie
])
def test_unsafe_flows_are_refused(spec):
    with pytest.raises(OvsError):
        render_ovs([Resource(k("ovs-flow", "x"), spec, "shop")], [], False, "br0")


def test_unsafe_port_names_are_refused():
    with pytest.raises(OvsError):
        render_ovs([Resource(k("ovs-port", "x"), {"bridge": "br0", "port": "eth2 -- del-br br0", "tag": 5}, "a")],
                   [], False, "br0")


def test_scoped_trunk_change_keeps_other_apps_vlans_even_when_pruning():
    observed = parse_ovs(VSCTL, FLOWS, "hv1")
    other = Resource(k("trunk-vlan", "eth1:101"), {"bridge": "br0", "port": "eth1", "vlan": 101}, "shop")
    mine = Resource(k("trunk-vlan", "eth1:102"), {"bridge": "br0", "port": "eth1", "vlan": 102}, "billing")
    # `--app billing`: desired holds billing only; shop's owned VLAN 101 is not in scope
    plan = render_ovs([mine], [r for r in observed if r.key.kind == "trunk-vlan"], True, "br0", scope={mine.key})
    assert "add" in plan.vsctl and "remove" not in plan.vsctl and "101" not in plan.vsctl
    plan = render_ovs([mine], [r for r in observed if r.key.kind == "trunk-vlan"], True, "br0",
                      scope={mine.key, other.key})
    assert ["remove", "Port", "eth1", "trunks", "101"] == plan.vsctl[plan.vsctl.index("remove"):][:5]
    # the engine filters observed by app in such a run: billing's view of the port has no 101 at all
    plan = render_ovs([mine], [r for r in observed if r.key.kind == "trunk-vlan" and r.app == "billing"], True,
                      "br0", scope={mine.key})
    assert "101" not in plan.vsctl and "999" not in plan.vsctl and "remove" not in plan.vsctl
    assert not any(arg.startswith("trunks=") for arg in plan.vsctl)   # the set is never rewritten whole
