"""The reference lab (labs/app-fabric.clab.yml) and a topology written for real containerlab
(FRR OSPF + BGP): sshd on every node, per-node OVS, TCP across hypervisor and leaf OVS,
FRR sessions, inventory, and `lab down` leaving nothing. Marked `lab` (root, netns).

Tests that depend on the lab's pristine state (untagged ports, FRR config) run on a private
copy (`ref_lab`, module scope), because drivers' tests change the shared `app_fabric_lab`."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from labcheck import TOPOLOGIES, assert_lab_gone, frr_tmp_dirs, ssh, tcp_roundtrip

from reconciler.lab import Lab
from reconciler.lab.shared import skip_reason
from reconciler.lab.system import netns_pids, process_running

pytestmark = pytest.mark.lab
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def ref_lab(tmp_path_factory):
    reason = skip_reason()
    if reason:
        pytest.skip(reason)
    lab = Lab.from_file(REPO / "labs/app-fabric.clab.yml", "ni-lab-ref",
                        tmp_path_factory.mktemp("inv"), "172.31.94.0/24")
    try:
        lab.up()
        yield lab
    finally:
        lab.down(quiet=True)


def wait_for(pred, timeout: float, what: str, step: float = 0.5):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = pred()
        if last:
            return last
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def test_reference_inventory_equals_the_committed_one(app_fabric_lab):
    got = yaml.safe_load(app_fabric_lab.inventory_path.read_text())
    assert got == yaml.safe_load((REPO / "examples/intents/inventory.yml").read_text())
    assert Path(got["all"]["vars"]["ansible_ssh_private_key_file"]) == app_fabric_lab.key_path
    assert app_fabric_lab.key_path.exists()


def test_sshd_answers_on_every_node_with_its_hostname(ref_lab):
    lab = ref_lab
    for node in lab.topo.nodes:
        assert ssh(lab, node, "hostname").stdout.strip() == node


def test_shared_lab_answers_ssh_on_the_committed_addresses(app_fabric_lab):
    assert app_fabric_lab.mgmt_ip("h1") == "172.20.20.21"
    assert ssh(app_fabric_lab, "h1", "hostname").stdout.strip() == "h1"
    assert ssh(app_fabric_lab, "leaf2", "hostname").stdout.strip() == "leaf2"


def test_generated_inventory_works_with_ansible_as_is(ref_lab):
    if not shutil.which("ansible"):
        pytest.skip("ansible not installed")
    cp = subprocess.run(["ansible", "-i", str(ref_lab.inventory_path), "all", "-m", "ping",
                         "-o", "-f", "11"], capture_output=True, text=True, timeout=120,
                        env={**os.environ, "ANSIBLE_HOST_KEY_CHECKING": "False"})
    assert cp.returncode == 0, cp.stdout + cp.stderr
    assert cp.stdout.count("SUCCESS") == 11


def test_ssh_session_reaches_the_nodes_own_ovs(ref_lab):
    lab = ref_lab
    seen = set()
    for node in ("leaf1", "leaf2", "hv1", "hv2", "hv3"):
        out = ssh(lab, node, "ovs-vsctl --format=json -- --columns=_uuid list Open_vSwitch "
                             "&& ovs-vsctl list-ports br0 && "
                             "ovs-vsctl get bridge br0 datapath_type").stdout.splitlines()
        seen.add(json.loads(out[0])["data"][0][0][1])   # this OVS's own database uuid
        want = {"leaf1": ["eth1", "eth2"], "leaf2": ["eth1"]}.get(node, ["eth1", "eth2", "eth3"])
        assert out[1:-1] == want and out[-1] == "netdev"
    assert len(seen) == 5, "every node must have its own OVS"
    # hosts run no OVS
    assert lab.exec("h1", ["ovs-vsctl", "--timeout=2", "show"], check=False).returncode != 0


def test_tcp_between_hosts_across_hypervisor_and_leaf_ovs(ref_lab):
    lab = ref_lab
    # The lab leaves ports untagged: h1 (hv1) and h3 (hv2) share L2 through hv1, leaf1, hv2.
    added = []
    try:
        for node, ip in (("h1", "10.199.0.1/24"), ("h3", "10.199.0.3/24"), ("h2", "10.199.0.2/24")):
            lab.exec(node, ["ip", "addr", "add", ip, "dev", "eth1"])
            added.append((node, ip))
        tcp_roundtrip(lab, "h1", "h3", "10.199.0.3")   # hv1 -> leaf1 -> hv2
        tcp_roundtrip(lab, "h2", "h1", "10.199.0.1")   # within hv1
    finally:
        for node, ip in added:
            lab.exec(node, ["ip", "addr", "del", ip, "dev", "eth1"], check=False)


def test_frr_bgp_unnumbered_between_leaves_and_vteps_reachable(ref_lab):
    lab = ref_lab

    def established():
        out = lab.exec("leaf1", ["vtysh", "-c", "show bgp summary json"]).stdout
        peers = json.loads(out)["ipv4Unicast"]["peers"]
        return peers.get("eth3", {}).get("state") == "Established" and \
            peers["eth3"].get("pfxRcd", 0) >= 1
    wait_for(established, 30, "BGP leaf1 <-> leaf2 Established with a prefix")
    # the same session seen from the root with the pathspace, and over SSH on leaf2
    cp = subprocess.run(["vtysh", "-N", lab.netns("leaf2"), "-c", "show bgp summary json"],
                        capture_output=True, text=True, timeout=20, check=True)
    out = json.loads(cp.stdout)
    assert out["ipv4Unicast"]["peers"]["eth3"]["state"] == "Established"
    routes = ssh(lab, "leaf2", "vtysh -c 'show ip route 10.255.0.1/32 json'").stdout
    assert "10.255.0.1/32" in json.loads(routes)
    # VTEP loopbacks reach each other over the routed underlay (TCP)
    tcp_roundtrip(lab, "leaf1", "leaf2", "10.255.0.2")


def test_frr_topology_written_for_containerlab_converges(lab_factory):
    gr = Path("/run/frr/ospfd-gr.json")
    gr_before = gr.exists()
    lab = lab_factory(TOPOLOGIES / "frr-ospf.clab.yml", mgmt_subnet="172.31.82.0/24",
                      features=("base", "ssh", "frr"))
    # FRR's per-daemon temp dirs of this lab (each daemon holds its dir open)
    ours = set()
    for n in lab.topo.nodes:
        for p in netns_pids(lab.netns(n)):
            for fd in Path(f"/proc/{p}/fd").glob("*"):
                try:
                    t = os.readlink(fd)
                except OSError:
                    continue
                if t.startswith("/var/tmp/frr/"):
                    ours.add(t.rsplit("/", 1)[-1])
    assert len(ours) >= 9, ours          # zebra, ospfd, bgpd (+staticd) on three routers

    def ospf_full():
        rt = json.loads(lab.exec("r1", ["vtysh", "-c", "show ip route ospf json"]).stdout)
        return "10.10.10.3/32" in rt
    wait_for(ospf_full, 40, "OSPF route r1 -> r3 loopback")

    def bgp_up():
        out = json.loads(lab.exec("r2", ["vtysh", "-c", "show bgp summary json"]).stdout)
        peer = out.get("ipv4Unicast", {}).get("peers", {}).get("10.0.12.1", {})
        return peer.get("state") == "Established" and peer.get("pfxRcd", 0) >= 1
    wait_for(bgp_up, 40, "eBGP r1 <-> r2")
    # r1's loopback to r3's loopback over two OSPF hops (r2 forwards)
    tcp_roundtrip(lab, "r3", "r1", "10.10.10.1")
    assert lab.exec("r2", ["hostname"]).stdout.strip() == "r2"
    assert lab.down() == []
    assert_lab_gone(lab)
    # ospfd writes its GR state outside the pathspace; down removes it if the lab made it
    # (unless another ospfd on the machine is running and may own it)
    if not gr_before and not process_running("ospfd"):
        assert not gr.exists()
    assert not ours & frr_tmp_dirs(), "down removes the killed daemons' /var/tmp/frr dirs"


def test_reference_lab_up_twice_is_noop_then_down_leaves_nothing(ref_lab):
    lab = ref_lab
    assert lab.up() is False
    assert all(all(v for v in row.values() if isinstance(v, bool)) for row in lab.status())
    assert lab.down() == []
    assert_lab_gone(lab)
