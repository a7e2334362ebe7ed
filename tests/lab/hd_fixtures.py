"""Fixtures and conformance adapters for the host and hypervisor drivers on the mini lab.

Contract: `mini_lab` (module scope) brings up hd_setup.MINI with MiniLab and always takes it
down. `HostAdapter` / `HypervisorAdapter` implement the adapter of conformance.py for it: hand
drift and hand-made state are made with nft / ovs-ofctl / ovs-vsctl run inside the node's netns
(not through the driver), unreachability by stopping the node's sshd.
"""
from __future__ import annotations

import re

import pytest
from hd_setup import MINI, MINI_APPS, desired_for, write_repo
from minilab import MiniLab

from reconciler.drivers.ansible.host import HostDriver
from reconciler.drivers.ansible.hypervisor import HypervisorDriver
from reconciler.drivers.base import Target, targets_of
from reconciler.intents.inventory import parse_inventory
from reconciler.model import Layer, ResourceKey, State

HOSTS = ["h1", "h2", "h3", "h4"]
HYPERVISORS = ["hv1", "hv2"]


@pytest.fixture(scope="module")
def mini_lab(tmp_path_factory):
    import os
    import shutil
    if os.geteuid() != 0 or not shutil.which("ovs-vswitchd") or not shutil.which("nft"):
        pytest.skip("needs root, Open vSwitch and nftables")
    lab = MiniLab("ni-hd-")
    try:
        lab.up(MINI)
        write_repo(lab.dir / "repo", MINI_APPS, lab.inventory_path)
        yield lab
    finally:
        lab.down()


class _Adapter:
    layer: Layer
    names: list[str]
    driver_cls: type

    def __init__(self, lab: MiniLab) -> None:
        self.lab = lab
        self.events: list = []
        d = desired_for(lab.dir / "repo", lab.inventory_path, self.layer)
        self._desired = State.of(r for r in d if r.key.target in self.names)

    def driver(self):
        return self.driver_cls(inventory_path=str(self.lab.inventory_path), publish=self.events.append,
                               timeout_s=60, task_timeout_s=20, connect_timeout_s=3)

    def targets(self) -> list[Target]:
        """The targets as the reconciler makes them from the lab's inventory file (connection
        variables included: the drivers' kept-ssh observe connects with them)."""
        inv, errors = parse_inventory(str(self.lab.inventory_path), self.lab.inventory_path.read_bytes())
        assert inv is not None, errors
        mine = {t.name: t for t in targets_of(inv)[self.layer]}
        return [mine[n] for n in self.names]

    def desired(self) -> State:
        return self._desired

    def make_unreachable(self, target: str) -> None:
        self.lab.stop_sshd(target)

    def restore(self, target: str) -> None:
        self.lab.start_sshd(target)


class HostAdapter(_Adapter):
    layer = Layer.HOST
    names = HOSTS
    driver_cls = HostDriver

    def drift(self, target: str) -> ResourceKey:
        node = self.lab.nodes[target]
        table = next(r.key.name for r in self._desired.for_target(Layer.HOST, target) if r.key.kind == "nft-table")
        listing = node.run("nft", "-a", "list", "chain", "inet", table, "input").stdout
        handle = next(m.group(1) for line in listing.splitlines() if "dport" in line
                      for m in [re.search(r"# handle (\d+)", line)] if m)
        node.run("nft", "delete", "rule", "inet", table, "input", "handle", handle)
        return ResourceKey(Layer.HOST, target, "nft-table", table)

    def make_unowned(self, target: str) -> None:
        node = self.lab.nodes[target]
        node.run("nft", "-f", "-", input="table inet handmade {\n chain input { type filter hook input priority 10; "
                 "policy accept; tcp dport 9 counter accept; }\n}\n")
        node.run("ip", "addr", "replace", "192.0.2.77/32", "dev", "eth1")

    def unowned_present(self, target: str) -> bool:
        node = self.lab.nodes[target]
        t = node.run("nft", "list", "table", "inet", "handmade", check=False)
        a = node.run("ip", "-4", "addr", "show", "dev", "eth1").stdout
        return t.returncode == 0 and "tcp dport 9" in t.stdout and "192.0.2.77/32" in a


class HypervisorAdapter(_Adapter):
    layer = Layer.HYPERVISOR
    names = HYPERVISORS
    driver_cls = HypervisorDriver

    def drift(self, target: str) -> ResourceKey:
        key = next(r.key for r in self._desired.for_target(Layer.HYPERVISOR, target)
                   if r.key.kind == "ovs-flow" and r.spec["priority"] == 200)
        spec = self._desired.get(key).spec
        self.lab.nodes[target].run("ovs-ofctl", "--strict", "del-flows", "br0",
                                   f"priority={spec['priority']},{spec['match']}")
        return key

    def make_unowned(self, target: str) -> None:
        node = self.lab.nodes[target]
        node.run("ovs-ofctl", "add-flow", "br0", "cookie=0x77,priority=10,tcp,tp_dst=9999,actions=drop")
        node.run("ovs-vsctl", "add", "Port", "eth1", "trunks", "999")

    def unowned_present(self, target: str) -> bool:
        node = self.lab.nodes[target]
        flows = node.run("ovs-ofctl", "dump-flows", "br0", "cookie=0x77/-1").stdout
        trunks = node.run("ovs-vsctl", "get", "Port", "eth1", "trunks").stdout
        return "tp_dst=9999" in flows and "999" in trunks
