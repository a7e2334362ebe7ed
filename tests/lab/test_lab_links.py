"""Lab tests on small topologies: raw link TCP (veth, Linux bridge, OVS bridge), exec order,
inheritance, idempotent up, clean down, refused kinds, half-failed up, two labs side by side.
Marked `lab` (root, netns)."""
from __future__ import annotations

import textwrap

import pytest
from labcheck import TOPOLOGIES, assert_lab_gone, ssh, tcp_roundtrip

from reconciler.lab import Lab, LabError, TopologyError
from reconciler.lab.system import alive, netns_list, netns_pids

pytestmark = pytest.mark.lab
LINKS = TOPOLOGIES / "links.clab.yml"


def test_raw_links_tcp_exec_order_and_clean_down(lab_factory):
    lab = lab_factory(LINKS, features=("base", "ssh", "ovs"))
    # exec: defaults -> kinds -> groups -> node, in order (the last mtu wins)
    assert "mtu 1300" in lab.exec("a", ["ip", "link", "show", "lo"]).stdout
    assert "mtu 1100" in lab.exec("c", ["ip", "link", "show", "lo"]).stdout
    # extended link form: mac and mtu applied on both ends
    out = lab.exec("b", ["ip", "-o", "link", "show", "eth1"]).stdout
    assert "mtu 1400" in out and "02:00:00:77:01:02" in out
    # hostnames differ per node (UTS namespace)
    assert lab.exec("a", ["hostname"]).stdout.strip() == "a"
    assert lab.exec("d", ["hostname"]).stdout.strip() == "d"
    # binds outside /etc/frr: bind-mounted in the node's own mount namespace only
    assert lab.exec("c", ["cat", "/etc/motd"]).stdout == "ni-lab-links node file\n"
    assert open("/etc/motd").read() != "ni-lab-links node file\n"
    assert lab.exec("c", ["sh", "-c", "echo x > /etc/motd"], check=False).returncode != 0  # :ro
    # TCP: direct veth, through a Linux bridge node, through an OVS (userspace) bridge node
    tcp_roundtrip(lab, "b", "a", "10.77.1.1")
    tcp_roundtrip(lab, "c", "a", "10.77.2.1")
    tcp_roundtrip(lab, "d", "a", "10.77.3.1")
    # up again = no-op
    assert lab.up() is False
    bg = [p for p in netns_pids(lab.netns("d"))
          if open(f"/proc/{p}/cmdline", "rb").read() == b"sleep\x003600\x00"]
    assert len(bg) == 1, "the exec background job runs in node d"
    problems = lab.down()
    assert not alive(bg[0]), "down kills every process in the node netns"
    assert problems == []
    assert_lab_gone(lab)


def test_two_labs_side_by_side_then_down_one(lab_factory):
    lab1 = lab_factory(LINKS, features=("base", "ssh", "ovs"), name="ni-lab-s1",
                       mgmt_subnet="172.31.78.0/24")
    body = (TOPOLOGIES / "links.clab.yml").read_text()
    # a second copy with other bridge node names (bridges live in the root netns)
    body = body.replace("nilbr1", "nilbr2").replace("niovs1", "niovs2") \
        .replace("nilp", "nilq").replace("niop", "nioq")
    p2 = TOPOLOGIES.parent / "ni-lab-s2.clab.tmp.yml"
    p2.write_text(body)
    try:
        lab2 = lab_factory(p2, features=("base", "ssh", "ovs"), name="ni-lab-s2",
                           mgmt_subnet="172.31.79.0/24")
    finally:
        p2.unlink()
    assert lab1.netns("a") != lab2.netns("a")
    assert lab1.exec("a", ["hostname"]).stdout.strip() == "a"
    tcp_roundtrip(lab2, "d", "a", "10.77.3.1")
    assert lab2.down() == []
    assert_lab_gone(lab2)
    assert lab1.is_up()
    tcp_roundtrip(lab1, "d", "a", "10.77.3.1")


def test_unsupported_kind_refused_before_anything_is_created(tmp_path):
    p = tmp_path / "bad.clab.yml"
    p.write_text(textwrap.dedent("""
        name: ni-lab-bad
        topology:
          nodes:
            a: {kind: linux}
            spine1: {kind: nokia_srlinux, image: ghcr.io/nokia/srlinux}
          links:
            - endpoints: ["a:eth1", "spine1:e1-1"]
    """))
    with pytest.raises(TopologyError, match="node spine1: kind 'nokia_srlinux'"):
        Lab.from_file(p)
    assert not [ns for ns in netns_list() if ns.startswith("ni-lab-bad-")]


def test_half_failed_up_cleans_up_and_names_the_step(tmp_path):
    p = tmp_path / "fail.clab.yml"
    p.write_text(textwrap.dedent("""
        name: ni-lab-fail
        mgmt: {ipv4-subnet: 172.31.80.0/24}
        topology:
          nodes:
            a:
              kind: linux
              exec:
                - ip addr add 10.80.0.1/24 dev eth1
                - ip link set nosuchdev up
            b: {kind: linux}
          links:
            - endpoints: ["a:eth1", "b:eth1"]
    """))
    lab = Lab.from_file(p, inventory_dir=tmp_path / "inv")
    try:
        with pytest.raises(LabError) as ei:
            lab.up()
        msg = str(ei.value)
        assert "a: exec[1] 'ip link set nosuchdev up'" in msg and "up failed at step" in msg
        assert_lab_gone(lab)
    finally:
        lab.down(quiet=True)


def test_ssh_into_node_prints_its_hostname(lab_factory):
    lab = lab_factory(LINKS, features=("base", "ssh", "ovs"), name="ni-lab-ssh",
                      mgmt_subnet="172.31.81.0/24")
    assert ssh(lab, "b", "hostname").stdout.strip() == "b"


def test_second_lab_on_the_same_mgmt_subnet_is_refused_before_creating(lab_factory, tmp_path):
    lab_factory(LINKS, features=("base", "ssh", "ovs"), name="ni-lab-ov1",
                mgmt_subnet="172.31.91.0/24")
    other = Lab.from_file(LINKS, "ni-lab-ov2", tmp_path / "inv2", "172.31.91.0/24")
    with pytest.raises(LabError, match="mgmt subnet 172.31.91.0/24 overlaps"):
        other.up()
    assert not [ns for ns in netns_list() if ns.startswith("ni-lab-ov2-")]
    assert not other.layout.state_dir.exists()


def test_switch_without_its_inventory_labels_is_refused_before_creating(tmp_path):
    p = tmp_path / "nolabel.clab.yml"
    p.write_text(textwrap.dedent("""
        name: ni-lab-nolbl
        mgmt: {ipv4-subnet: 172.31.95.0/24}
        topology:
          nodes:
            sw: {kind: linux, labels: {netintent.role: switch}}
    """))
    lab = Lab.from_file(p, inventory_dir=tmp_path / "inv")
    with pytest.raises(LabError, match="node sw: label netintent.vtep is required"):
        lab.up()
    assert "ni-lab-nolbl-sw" not in netns_list() and not lab.layout.state_dir.exists()
