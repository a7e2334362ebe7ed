"""Switch driver through the shared driver conformance suite (tests/lab/conformance.py).

Lab: a private copy of the reference lab whose leaves start without BGP (fresh switches: no
owned state), sshd + own OVS + kernel VXLAN + FRR per leaf. Desired state: the switch layer
compiled from examples/intents (3 apps, BGP fabric included).
Drift by hand = a flood entry deleted; hand-made state = a VLAN on a trunk without the
reconciler's mark, a VXLAN device named outside the reconciler's pattern and an FRR static
route without its tag; unreachable = SSH dropped by an nftables table in the leaf's netns.
"""
from __future__ import annotations

import pytest
from conformance import CHECKS
from switch_fabric import EXAMPLES, fabric_lab, switch_targets

from reconciler.compile import compile_repo
from reconciler.drivers.switch.driver import SwitchDriver
from reconciler.intents.validate import load_repo
from reconciler.model import Layer, ResourceKey, State

BLOCK = ("table inet ni_sw_block {\n chain input {\n  type filter hook input priority -300; policy accept;\n"
         "  tcp dport 22 drop\n }\n}")


class SwitchAdapter:
    layer = Layer.SWITCH

    def __init__(self, lab) -> None:
        self.lab = lab
        repo = load_repo(str(EXAMPLES), inventory_override=str(lab.inventory_path))
        self._desired = State.of(r for r in compile_repo(repo) if r.key.layer is Layer.SWITCH)

    def driver(self) -> SwitchDriver:
        return SwitchDriver(io_timeout_s=4, deadline_s=30)

    def targets(self):
        return switch_targets(self.lab)

    def desired(self) -> State:
        return self._desired

    def drift(self, target: str) -> ResourceKey:
        peer = {"leaf1": "10.255.0.2", "leaf2": "10.255.0.1"}[target]
        self.lab.exec(target, ["bridge", "fdb", "del", "00:00:00:00:00:00", "dev", "vxlan5001", "dst", peer])
        return ResourceKey(Layer.SWITCH, target, "vxlan", "vxlan5001")

    def make_unowned(self, target: str) -> None:
        trunks = self.lab.exec(target, ["ovs-vsctl", "get", "port", "eth1", "trunks"]).stdout.strip("[]\n ")
        vlans = sorted({int(v) for v in trunks.split(",") if v.strip()} - {4095} | {999})
        self.lab.exec(target, ["ovs-vsctl", "set", "port", "eth1", "trunks=" + ",".join(map(str, vlans))])
        self.lab.exec(target, ["ip", "link", "add", "vx-hand", "type", "vxlan", "id", "9999", "dstport", "4789",
                               "local", "10.255.0.9"])
        self.lab.exec(target, ["vtysh", "-c", "configure terminal", "-c", "ip route 10.99.0.0/24 10.255.0.9"])

    def unowned_present(self, target: str) -> bool:
        trunks = self.lab.exec(target, ["ovs-vsctl", "get", "port", "eth1", "trunks"]).stdout
        dev = self.lab.exec(target, ["ip", "link", "show", "vx-hand"], check=False).returncode == 0
        frr = "ip route 10.99.0.0/24 10.255.0.9" in self.lab.exec(
            target, ["vtysh", "-c", "show running-config"]).stdout
        return "999" in trunks and dev and frr

    def make_unreachable(self, target: str) -> None:
        self.lab.exec(target, ["nft", "-f", "-"], input=BLOCK + "\n")

    def restore(self, target: str) -> None:
        self.lab.exec(target, ["nft", "delete", "table", "inet", "ni_sw_block"], check=False)


@pytest.fixture(scope="module")
def switch_adapter(tmp_path_factory):
    from reconciler.lab.shared import skip_reason
    reason = skip_reason()
    if reason:
        pytest.skip(reason)
    with fabric_lab(tmp_path_factory.mktemp("swconf"), prefix="ni-swc-", bare_frr=True) as lab:
        yield SwitchAdapter(lab)


@pytest.mark.lab
@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__)
def test_conformance(switch_adapter, check):
    check(switch_adapter)
