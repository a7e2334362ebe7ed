"""Broken labs: a node killed by hand makes the lab PARTIAL; `up` repairs it from scratch.
A label alone (`netintent.frr: "true"`) starts FRR with default daemons. Marked `lab`."""
from __future__ import annotations

import json
import textwrap

import pytest
from labcheck import TOPOLOGIES, ssh

from reconciler.lab import LabState
from reconciler.lab.system import kill_all, netns_pids

pytestmark = pytest.mark.lab


def test_partial_lab_is_reported_and_repaired_by_up(lab_factory):
    lab = lab_factory(TOPOLOGIES / "links.clab.yml", name="ni-lab-rec",
                      mgmt_subnet="172.31.92.0/24", features=("base", "ssh", "ovs"))
    kill_all(netns_pids(lab.netns("b")))          # the node's holder, sshd, everything
    assert lab.state() is LabState.PARTIAL
    assert lab.up() is True                        # not a no-op: rebuilt
    assert lab.state() is LabState.UP
    assert ssh(lab, "b", "hostname").stdout.strip() == "b"


def test_frr_label_without_binds_runs_default_frr(lab_factory, tmp_path):
    p = tmp_path / "frrlabel.clab.yml"
    p.write_text(textwrap.dedent("""
        name: ni-lab-frrl
        mgmt: {ipv4-subnet: 172.31.93.0/24}
        topology:
          nodes:
            r: {kind: linux, labels: {netintent.frr: "true"}}
    """))
    lab = lab_factory(p, features=("base", "ssh", "frr"))
    out = lab.exec("r", ["vtysh", "-c", "show running-config"]).stdout
    assert "hostname r" in out
    lab.exec("r", ["vtysh", "-c", "configure terminal", "-c", "ip route 192.0.2.0/24 Null0"])
    routes = json.loads(lab.exec("r", ["vtysh", "-c", "show ip route static json"]).stdout)
    assert "192.0.2.0/24" in routes
    assert "192.0.2.0/24" in lab.exec("r", ["ip", "route"]).stdout  # zebra in the node netns
