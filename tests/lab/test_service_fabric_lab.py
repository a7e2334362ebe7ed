"""Fabric-owned state is self-healed by the daemon on a real lab.

The reference lab (labs/app-fabric.clab.yml) with the switch, hypervisor and host drivers and
`reconciler serve` as a process (self_heal: true). Every kind of resource no application owns
(app "": compile_fabric) is removed by hand on a device, and the test waits until the device
has it back and the history shows the self-heal run that did it:
  hypervisor  ovs-flow  priority=50,in_port=<uplink> actions=drop   (uplink isolation)
  switch      bgp       router bgp <asn>                            (underlay; a cross-leaf flow
                                                                     breaks while it is gone)
  host        xds-bootstrap, trust-bundle                           (the node's xDS bootstrap and CA
                                                                     bundle its workloads read)
Marked `lab` (root, OVS, FRR, sshd); run under `flock /tmp/ni-suite.lock`.
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from reconciler.compile import compile_repo
from reconciler.intents.validate import load_repo
from reconciler.lab.probe import Flow, probe_tcp

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
from svc_helpers import IntentsRepo, stop  # noqa: E402
from test_service_lab import _cli, _health, free_port, wait_until  # noqa: E402

pytestmark = pytest.mark.lab
REPO = Path(__file__).resolve().parents[2]
REFERENCE = REPO / "labs" / "app-fabric.clab.yml"
DRIFT_S = 8
# shop/web on h1 (leaf1) -> shop/api v2 on h5 (leaf2): over VXLAN, so over the BGP underlay
CROSS_LEAF = Flow("h1", "10.50.1.11", "h5", "10.50.1.22", 8080, "shop/web -> shop/api v2 (across leaves)")
UPLINK_DROP = re.compile(r"priority=50,in_port=\"?eth1\"? actions=drop")


def fabric_kinds(work: Path, inventory: str) -> set[tuple[str, str]]:
    """(layer, kind) of every resource the compiled intents give to no application."""
    desired = compile_repo(load_repo(str(work), inventory_override=inventory))
    return {(r.key.layer.value, r.key.kind) for r in desired if r.app == ""}


def uplink_drop_present(lab, hv: str) -> bool:
    return bool(UPLINK_DROP.search(lab.exec(hv, ["ovs-ofctl", "--names", "dump-flows", "br0"]).stdout))


def bgp_present(lab, leaf: str, asn: int) -> bool:
    return f"router bgp {asn}" in lab.exec(leaf, ["vtysh", "-c", "show running-config"]).stdout


def fabric_heals_since(store: str, t0: float) -> list[dict]:
    runs = json.loads(_cli("history", "--store", store, "--json", "--limit", "100") or "[]")
    return [r for r in runs if r["trigger"] == "self-heal" and r["started"] >= t0 and r["phase"] == "succeeded"
            and "" in json.loads(r["apps"])]


def test_fabric_resources_removed_by_hand_are_self_healed(lab_factory, tmp_path):
    lab = lab_factory(REFERENCE, name="ni-svc-fab", mgmt_subnet="172.31.97.0/24",
                      features=("base", "ssh", "ovs", "frr"))
    inv = str(lab.inventory_path)
    repo = IntentsRepo(tmp_path, sync={"self_heal": True, "drift_interval_s": DRIFT_S})  # examples/intents
    assert fabric_kinds(repo.work, inv) == {("hypervisor", "ovs-flow"), ("switch", "bgp"),
                                            ("host", "xds-bootstrap"), ("host", "trust-bundle")}, \
        "every kind of fabric resource is covered below"
    port = free_port()
    store = str(tmp_path / "db.sqlite")
    daemon = subprocess.Popen(
        [sys.executable, "-m", "reconciler.cli", "serve", "--repo", str(repo.bare), "--store", store,
         "--state-dir", str(tmp_path / "state"), "--inventory", inv, "--layer", "switch", "--layer", "hypervisor",
         "--layer", "host", "--listen", f"127.0.0.1:{port}", "--interval", "3600",
         "--log-file", str(tmp_path / "serve.log")],
        stdout=subprocess.DEVNULL, stderr=open(tmp_path / "serve.err", "w"), start_new_session=True)
    try:
        def converged() -> bool:
            if _health(port).get("revision") != repo.first:
                return False
            runs = json.loads(_cli("history", "--store", store, "--json", "--limit", "20") or "[]")
            return any(r["revision"] == repo.first and not r["dry_run"] and r["phase"] == "succeeded" for r in runs)

        wait_until(converged, 600, "initial convergence of the reference lab")
        assert uplink_drop_present(lab, "hv1") and bgp_present(lab, "leaf1", 65001)
        assert probe_tcp(lab, [CROSS_LEAF])[0].connected

        # hypervisor: the uplink isolation flow
        lab.exec("hv1", ["ovs-ofctl", "--strict", "del-flows", "br0", "priority=50,in_port=eth1"])
        t_flow = time.time()
        assert not uplink_drop_present(lab, "hv1")
        wait_until(lambda: uplink_drop_present(lab, "hv1"), DRIFT_S + 180, "uplink drop flow self-healed", 1.0)
        flow_back = time.time() - t_flow
        wait_until(lambda: fabric_heals_since(store, t_flow), 60, "fabric self-heal run recorded")

        # switch: the BGP instance of the underlay
        lab.exec("leaf1", ["vtysh", "-c", "configure terminal", "-c", "no router bgp 65001"])
        t_bgp = time.time()
        assert not bgp_present(lab, "leaf1", 65001)
        wait_until(lambda: bgp_present(lab, "leaf1", 65001), DRIFT_S + 180, "router bgp self-healed", 1.0)
        bgp_back = time.time() - t_bgp
        wait_until(lambda: fabric_heals_since(store, t_bgp), 60, "fabric self-heal run recorded")
        wait_until(lambda: probe_tcp(lab, [CROSS_LEAF])[0].connected, 120, "cross-leaf flow back over BGP", 2.0)

        # host: the node's xDS bootstrap and trust bundle (files the workloads read)
        xds = lab.layout.node_dir("h1") / "xds"
        boot, bundle = xds / "bootstrap.json", xds / "certs" / "ca.pem"
        assert boot.exists() and bundle.exists()
        boot.unlink()
        bundle.write_text("not a certificate\n")
        t_files = time.time()
        wait_until(lambda: boot.exists() and "BEGIN CERTIFICATE" in bundle.read_text(), DRIFT_S + 180,
                   "bootstrap and trust bundle self-healed", 1.0)
        wait_until(lambda: fabric_heals_since(store, t_files), 60, "fabric self-heal run recorded")
        health = _health(port)
        assert health.get("ok") and health["drivers"]["ok"], health
        print(f"fabric self-heal on the reference lab: uplink drop flow back after {flow_back:.1f}s, "
              f"router bgp after {bgp_back:.1f}s (drift interval {DRIFT_S}s)")
    finally:
        stop(daemon, 60)
