"""Table-driven: OpenFlow priority and match on one bridge; then access-port tags, anti-spoofing
and uplink isolation on the example fabric."""
from __future__ import annotations

import pytest
from verify_cases import change, drop, find, hop_text, resources, verify

from reconciler.model import Layer, Resource, ResourceKey
from reconciler.names import canonical_match
from reconciler.verify.compare import VIOLATION
from reconciler.verify.fabric import arp_frame
from reconciler.verify.ovs import DROP, NORMAL, UNKNOWN, FlowTable


def _flow(priority, match, actions="NORMAL", table=0):
    name = f"priority={priority},{canonical_match(match)}"
    return Resource(ResourceKey(Layer.HYPERVISOR, "hv", "ovs-flow", name),
                    {"table": table, "priority": priority, "match": canonical_match(match), "actions": actions,
                     "cookie": 0})


ANTI_SPOOF = [_flow(200, "in_port=eth2,ip,nw_src=10.0.0.5"), _flow(200, "in_port=eth2,arp,arp_spa=10.0.0.5"),
              _flow(100, "in_port=eth2", "drop"), _flow(100, "in_port=eth1,dl_vlan=101"),
              _flow(50, "in_port=eth1", "drop")]


def _ip(src, port="eth2", vlan=None, **kw):
    return {"in_port": port, "vlan": vlan, "dl_type": "ip", "nw_src": src, "nw_dst": "10.0.0.9", "nw_proto": 6,
            "tp_dst": 80, "arp_spa": None, "arp_tpa": None, **kw}


CASES = [
    ("own address passes", ANTI_SPOOF, _ip("10.0.0.5"), NORMAL, "priority=200,ip"),
    ("spoofed address dropped", ANTI_SPOOF, _ip("10.0.0.6"), DROP, "priority=100,in_port=eth2"),
    ("own ARP passes", ANTI_SPOOF, arp_frame("eth2", None, "10.0.0.5", "10.0.0.1"), NORMAL, "arp"),
    ("spoofed ARP dropped", ANTI_SPOOF, arp_frame("eth2", None, "10.0.0.7", "10.0.0.1"), DROP, "priority=100"),
    ("uplink VLAN of a hosted app", ANTI_SPOOF, _ip("10.9.9.9", "eth1", 101), NORMAL, "dl_vlan=101"),
    ("uplink VLAN of no hosted app", ANTI_SPOOF, _ip("10.9.9.9", "eth1", 102), DROP, "priority=50"),
    ("untagged on the uplink", ANTI_SPOOF, _ip("10.9.9.9", "eth1", None), DROP, "priority=50"),
    ("higher priority wins regardless of order", [_flow(10, "in_port=eth2", "drop"), _flow(300, "ip")],
     _ip("10.0.0.5"), NORMAL, "priority=300"),
    ("same priority, different actions, both match", [_flow(100, "in_port=eth2", "drop"), _flow(100, "ip")],
     _ip("10.0.0.5"), UNKNOWN, ""),
    ("match on a field the model does not read", [_flow(300, "in_port=eth2,nw_tos=8", "drop"), _flow(1, "ip")],
     _ip("10.0.0.5"), UNKNOWN, "nw_tos"),
    ("unread field, same action either way", [_flow(300, "in_port=eth2,nw_tos=8"), _flow(1, "ip")],
     _ip("10.0.0.5"), NORMAL, "priority=1"),
    ("action not understood", [_flow(300, "ip", "mod_vlan_vid:5,NORMAL")], _ip("10.0.0.5"), UNKNOWN, "mod_vlan"),
    ("no flow matches: default NORMAL said so", [_flow(300, "in_port=eth9", "drop")], _ip("10.0.0.5"), NORMAL,
     "assumed"),
    ("flows of other tables are not read", [_flow(300, "ip", "drop", table=1)], _ip("10.0.0.5"), NORMAL, "assumed"),
    ("prefix match", [_flow(300, "ip,nw_src=10.0.0.0/24", "drop")], _ip("10.0.0.200"), DROP, "10.0.0.0/24"),
]


@pytest.mark.parametrize("name,flows,frame,action,text", CASES, ids=[c[0] for c in CASES])
def test_flow_decision(name, flows, frame, action, text):
    got, key, detail = FlowTable.of(flows).decide(frame)
    assert got == action, (key, detail)
    assert text in key + " " + detail


def test_access_port_with_another_tag_cuts_the_segment():
    res = change(resources(), "hypervisor/hv2/ovs-port/eth2", lambda s: s.update(tag=103))
    cmp = verify(res)
    f = find(cmp, VIOLATION, "shop/web@10.50.1.11", "shop/api@10.50.1.21:8080")
    assert f.hops[0].rule == "eth2" and "tag 103, not VLAN 101" in f.hops[0].detail


def test_anti_spoofing_allow_flow_deleted_blocks_the_instance():
    # the demo's drift: shop/web's allow flow deleted on hv1; its port's drop flow then decides
    res = drop(resources(), "hypervisor/hv1/ovs-flow/priority=200,ip,in_port=eth2,nw_src=10.50.1.11")
    cmp = verify(res)
    f = find(cmp, VIOLATION, "shop/web@10.50.1.11", "shop/api@10.50.1.21:8080")
    assert hop_text(f)[0] == "hypervisor hv1 ovs-flow priority=100,in_port=eth2"


def test_uplink_isolation_flow_deleted_for_a_vlan():
    res = drop(resources(), "hypervisor/hv3/ovs-flow/priority=100,in_port=eth1,dl_vlan=102")
    cmp = verify(res)
    f = find(cmp, VIOLATION, "billing/invoicer@10.50.2.11", "billing/ledger@10.50.2.21:5432")
    assert hop_text(f)[0] == "hypervisor hv3 ovs-flow priority=50,in_port=eth1"
