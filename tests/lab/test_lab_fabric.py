"""The reference lab carries the project's data path: host -> hypervisor OVS (VLAN tag) ->
trunk -> leaf OVS -> kernel VXLAN (VNI) -> FRR-routed underlay -> other leaf -> host, with TCP.
Configured by hand here (what the drivers will do) on a private copy of the lab, so the
shared lab is untouched. Marked `lab` (root, netns)."""
from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest
from labcheck import tcp_roundtrip

pytestmark = pytest.mark.lab
REPO = Path(__file__).resolve().parents[2]


def test_vlan_vxlan_fabric_path_carries_tcp(lab_factory):
    lab = lab_factory(REPO / "labs/app-fabric.clab.yml", name="ni-lab-vx",
                      mgmt_subnet="172.31.86.0/24", features=("base", "ssh", "ovs", "frr"))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        rt = json.loads(lab.exec("leaf1", ["vtysh", "-c", "show ip route 10.255.0.2/32 json"]).stdout)
        if "10.255.0.2/32" in rt:
            break
        time.sleep(0.5)
    else:
        pytest.fail("underlay route to leaf2's VTEP never appeared")
    vlan, vni = "100", "5100"
    for leaf, local, remote in (("leaf1", "10.255.0.1", "10.255.0.2"),
                                ("leaf2", "10.255.0.2", "10.255.0.1")):
        vx = f"vx{vni}"
        lab.exec(leaf, ["ip", "link", "add", vx, "type", "vxlan", "id", vni, "local", local,
                        "dstport", "4789", "nolearning"])
        lab.exec(leaf, ["bridge", "fdb", "append", "00:00:00:00:00:00", "dev", vx, "dst", remote])
        lab.exec(leaf, ["ip", "link", "set", vx, "up"])
        lab.exec(leaf, ["ethtool", "-K", vx, "tx", "off"])
        lab.exec(leaf, ["ovs-vsctl", "add-port", "br0", vx, f"tag={vlan}"])
    for hv, port in (("hv1", "eth2"), ("hv3", "eth2")):   # h1 on hv1, h5 on hv3
        lab.exec(hv, ["ovs-vsctl", "set", "port", port, f"tag={vlan}"])
    lab.exec("h1", ["ip", "addr", "add", "10.51.0.1/24", "dev", "eth1"])
    lab.exec("h5", ["ip", "addr", "add", "10.51.0.5/24", "dev", "eth1"])
    tcp_roundtrip(lab, "h1", "h5", "10.51.0.5")
    tcp_roundtrip(lab, "h5", "h1", "10.51.0.1")
    # h3 (hv2, untagged) is not in the segment: it cannot reach h5's listening port
    lab.exec("h3", ["ip", "addr", "add", "10.51.0.3/24", "dev", "eth1"])
    argv, env = lab.node_argv("h5", ["python3", "-c", SERVER])
    srv = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert srv.stdout.readline().strip() == "listening"
        ok = lab.exec("h1", ["python3", "-c", CLIENT], check=False)
        assert ok.returncode == 0, ok.stderr          # the listener is reachable in-segment
        cp = lab.exec("h3", ["python3", "-c", CLIENT], check=False)
        assert cp.returncode != 0 and "refused" not in cp.stderr.lower()
    finally:
        srv.kill()
        srv.wait(timeout=5)


SERVER = """
import socket
s = socket.socket(); s.bind(("10.51.0.5", 5802)); s.listen(8); print("listening", flush=True)
while True:
    s.accept()[0].close()
"""
CLIENT = "import socket; socket.create_connection(('10.51.0.5', 5802), timeout=3)"
