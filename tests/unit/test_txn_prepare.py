"""Prepare checks with the real tools (nft -c in a scratch network namespace, ovs-ofctl parse-flows),
over what the real host and hypervisor drivers render for examples/intents. Root for nft."""
import os
import shutil

import pytest

from reconciler.compile import compile_repo
from reconciler.drivers.ansible.host import HostDriver
from reconciler.drivers.ansible.hypervisor import HypervisorDriver
from reconciler.drivers.base import Target
from reconciler.intents.validate import load_repo
from reconciler.model import Layer, State
from reconciler.txn.prepare import check_flows, check_nft, make_preparer

needs_nft = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("nft") or not shutil.which("unshare"),
                               reason="nft -c in a scratch netns needs root, nft and unshare")
needs_ovs = pytest.mark.skipif(not shutil.which("ovs-ofctl"), reason="ovs-ofctl not installed")
TABLE = "table inet netintent_t {\n chain input {\n  type filter hook input priority 0; policy drop;\n }\n}\n"


@needs_nft
def test_nft_check_accepts_and_refuses_with_the_tools_message():
    assert check_nft(TABLE, "") == ""
    assert check_nft("delete table inet netintent_t\n" + TABLE, TABLE) == ""   # preload: the table exists
    why = check_nft("delete table inet netintent_t\n", "")
    assert why.startswith("nft -c: ") and "No such file or directory" in why
    assert "syntax error" in check_nft("table inet netintent_t { chain input { bogus; } }\n", "")


@needs_ovs
def test_flow_check_parses_named_ports():
    assert check_flows("priority=100,in_port=eth1,dl_vlan=193,actions=strip_vlan,output:eth3\n") == ""
    assert check_flows("add cookie=0x4e49,table=0,priority=100,in_port=eth2,actions=drop\n"
                       "delete_strict cookie=0x4e49/-1,table=0,priority=100,in_port=eth3\n") == ""
    assert "ovs-ofctl parse-flows" in check_flows("priority=100,in_port=eth1,actions=frobnicate\n")


@needs_nft
@needs_ovs
def test_prepare_passes_what_the_drivers_render_for_the_examples():
    repo = load_repo("examples/intents")
    desired = State.of(compile_repo(repo))
    drivers = {Layer.HOST: HostDriver("examples/intents/inventory.yml"),
               Layer.HYPERVISOR: HypervisorDriver("examples/intents/inventory.yml")}
    items = {layer: [(Target(t, layer, {}), (), tuple(desired.for_target(layer, t)), (), False)
                     for t in sorted({k.target for k in desired.resources if k.layer is layer})]
             for layer in drivers}
    assert all(items.values())
    assert make_preparer(drivers)(items) == {}
    undo = {layer: [(t, ch, o, d, True) for t, ch, d, o, _ in rows] for layer, rows in items.items()}
    assert make_preparer(drivers)(undo) == {}   # deletes of every table and flow check too
