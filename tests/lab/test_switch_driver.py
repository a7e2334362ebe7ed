"""Switch driver against real leaf switches (netns + sshd + own OVS + kernel VXLAN + FRR).

A private copy of the reference lab (tests/lab/switch_fabric.py) is configured end to end from
the example intents with the switch, hypervisor and host drivers through the engine. Then:
cross-leaf TCP inside one application, segment isolation between applications, drift on the
switches (trunk VLAN, VXLAN device, flood entry, BGP neighbour) detected per application and
repaired, a rejected change rolled back to the identical running config, and a dead/slow
switch not holding up the others.
"""
from __future__ import annotations

import socket
import threading
import time

import pytest
from switch_fabric import EXAMPLES, fabric_lab, switch_targets, tcp_eventually, tcp_listen, tcp_ok, wait_bgp

import reconciler.drivers.ansible.host  # noqa: F401  (registers "host")
import reconciler.drivers.ansible.hypervisor  # noqa: F401
import reconciler.drivers.switch.driver  # noqa: F401
from reconciler.compile import compile_repo
from reconciler.drivers.base import TargetPlan
from reconciler.drivers.registry import build_drivers, targets_of
from reconciler.engine import Engine
from reconciler.intents.validate import load_repo
from reconciler.model import Layer, Resource, ResourceKey, State
from reconciler.plan import make_plan
from reconciler.status import Action, Outcome

pytestmark = pytest.mark.lab

VTEPS = {"leaf1": "10.255.0.1", "leaf2": "10.255.0.2"}
# shop: web h1 (hv1, leaf1), api h3 (hv2, leaf1) and h5 (hv3, leaf2); billing: h2 (leaf1), h6 (leaf2)
H1, H5, H6 = "10.50.1.11", "10.50.1.22", "10.50.2.21"


@pytest.fixture(scope="module")
def fabric(tmp_path_factory):
    from reconciler.lab.shared import skip_reason
    reason = skip_reason()
    if reason:
        pytest.skip(reason)
    with fabric_lab(tmp_path_factory.mktemp("inv")) as lab:
        repo = load_repo(str(EXAMPLES), inventory_override=str(lab.inventory_path))
        desired = compile_repo(repo)
        targets = targets_of(repo.inventory)
        drivers = build_drivers((Layer.SWITCH, Layer.HYPERVISOR, Layer.HOST),
                                {"inventory_path": str(lab.inventory_path)})
        wait_bgp(lab, VTEPS)
        report = Engine(drivers, attempts=3).run(desired, targets)
        bad = {f"{l.value}/{t}": (r.outcome.value, r.error) for (l, t), r in report.targets.items() if not r.ok}
        assert report.converged, (bad, report.residual.to_json())
        yield {"lab": lab, "desired": desired, "targets": targets, "drivers": drivers, "repo": repo}


def _switch_state(fabric) -> State:
    return State.of(r for r in fabric["desired"] if r.key.layer is Layer.SWITCH)


def _observe(fabric) -> State:
    obs = fabric["drivers"][Layer.SWITCH].observe(switch_targets(fabric["lab"]))
    assert all(o.ok for o in obs.values()), {n: o.error for n, o in obs.items()}
    return State.of(r for o in obs.values() for r in o.resources)


def test_apply_converged_and_observe_matches_compile(fabric):
    plan = make_plan(_switch_state(fabric), _observe(fabric))
    assert plan.empty, plan.to_json()


def test_same_app_reaches_across_leaves_over_tcp(fabric):
    lab = fabric["lab"]
    srv = tcp_listen(lab, "h5", H5, 8080)        # shop api v2 under leaf2
    try:
        assert tcp_eventually(lab, "h1", H5, 8080), "shop web (leaf1) cannot reach shop api (leaf2)"
    finally:
        srv.kill()
        srv.wait()


def test_inter_app_routing_across_leaves_through_the_gateways(fabric):
    """billing/invoicer (h2, leaf1) -> shop/api (h5, leaf2) is allowed: routed by the anycast
    gateways and the leaves' host routes over the underlay; billing/ledger (h6) is not."""
    lab = fabric["lab"]
    srv = tcp_listen(lab, "h5", H5, 8080)
    try:
        assert tcp_eventually(lab, "h2", H5, 8080), "invoicer (leaf1) cannot reach shop api (leaf2)"
        assert not tcp_ok(lab, "h6", H5, 8080), "ledger reached shop api without a policy"
    finally:
        srv.kill()
        srv.wait()


def test_other_app_is_isolated_at_the_segment(fabric):
    """invoicer (h2, billing VLAN) may call shop api (its firewall admits h2), but only routed
    through the gateways: sent straight onto the wire (on-link route, ARP on billing's VLAN)
    it must not reach shop's segment, at either leaf."""
    lab = fabric["lab"]
    srv = tcp_listen(lab, "h5", H5, 8080)
    srv3 = tcp_listen(lab, "h3", "10.50.1.21", 8080)
    try:
        assert tcp_eventually(lab, "h2", H5, 8080), "positive control (routed) failed"
        for addr in (H5, "10.50.1.21"):    # under leaf2, and under leaf1 (same leaf as h2)
            lab.exec("h2", ["ip", "route", "replace", f"{addr}/32", "dev", "eth1"])
            try:
                assert not tcp_ok(lab, "h2", addr, 8080), f"billing's VLAN reached shop's {addr} at layer 2"
            finally:
                lab.exec("h2", ["ip", "route", "del", f"{addr}/32", "dev", "eth1"], check=False)
                lab.exec("h2", ["ip", "neigh", "flush", "dev", "eth1"], check=False)
        assert tcp_eventually(lab, "h2", H5, 8080), "routed path broken after the probe"
    finally:
        for p in (srv, srv3):
            p.kill()
            p.wait()


def test_drift_detected_per_app_and_repaired(fabric):
    lab, drv = fabric["lab"], fabric["drivers"][Layer.SWITCH]
    lab.exec("leaf2", ["ovs-vsctl", "set", "port", "eth1", "trunks=102"])                      # shop VLAN gone
    lab.exec("leaf1", ["ip", "link", "del", "vxlan5002"])                                      # billing VXLAN gone
    lab.exec("leaf2", ["bridge", "fdb", "del", "00:00:00:00:00:00", "dev", "vxlan5001", "dst", "10.255.0.1"])
    lab.exec("leaf2", ["vtysh", "-c", "configure terminal", "-c", "router bgp 65002", "-c", "no neighbor eth3"])
    desired = _switch_state(fabric)
    plan = make_plan(desired, _observe(fabric))
    drift = {str(c.key): (c.app, c.action) for c in plan.changes}
    assert drift == {
        "switch/leaf2/vlan-trunk/eth1:101": ("shop", Action.CREATE),
        "switch/leaf1/vxlan/vxlan5002": ("billing", Action.CREATE),
        "switch/leaf2/vxlan/vxlan5001": ("shop", Action.UPDATE),
        "switch/leaf2/bgp/65002": ("", Action.UPDATE),
    }, drift
    flood = next(c for c in plan.changes if c.key.name == "vxlan5001")
    assert [(d.path, d.added) for d in flood.diffs] == [("flood", ("10.255.0.1",))]
    assert plan.apps() == ["", "billing", "shop"]

    report = Engine({Layer.SWITCH: drv}, attempts=1).run(desired, {Layer.SWITCH: switch_targets(lab)})
    assert report.converged, report.to_json()
    assert {t.outcome for t in report.targets.values()} == {Outcome.APPLIED}
    assert make_plan(desired, _observe(fabric)).empty
    wait_bgp(lab, VTEPS)
    srv = tcp_listen(lab, "h5", H5, 8080)
    try:
        assert tcp_eventually(lab, "h1", H5, 8080, timeout=30), "no TCP after repair"
    finally:
        srv.kill()
        srv.wait()


@pytest.mark.parametrize("case", ["vni-taken", "bgp-asn", "verify"])
def test_rejected_change_rolls_back_to_identical_running_config(fabric, case):
    lab, drv = fabric["lab"], fabric["drivers"][Layer.SWITCH]
    [leaf1, leaf2] = switch_targets(lab)
    observed = _observe(fabric)
    current = [r for r in observed if r.key.target == "leaf2"]
    k = lambda kind, name: ResourceKey(Layer.SWITCH, "leaf2", kind, name)  # noqa: E731
    extra = [Resource(k("vlan-trunk", "eth1:109"), {"bridge": "br0", "port": "eth1", "vlan": 109}, "ghost"),
             Resource(k("vxlan", "vxlan5009"), {"bridge": "br0", "vni": 5009, "vlan": 109, "local": "10.255.0.2",
                                                "dstport": 4789, "flood": ["10.255.0.1"]}, "ghost")]
    if case == "verify":
        # Accepted by the switch but not what was asked: the port is on br0, not br9.
        extra[0] = Resource(extra[0].key, {"bridge": "br9", "port": "eth1", "vlan": 109}, "ghost")
        extra = extra[:1]
        expect_key = "switch/leaf2/vlan-trunk/eth1:109"
    elif case == "vni-taken":
        # Someone else's VXLAN device holds VNI 5009: the kernel refuses ours (EEXIST).
        lab.exec("leaf2", ["ip", "link", "add", "vx-squat", "type", "vxlan", "id", "5009",
                           "local", "10.255.0.2", "dstport", "4789"])
        expect_key = "switch/leaf2/vxlan/vxlan5009"
    else:
        # FRR refuses a second BGP instance in the default VRF.
        extra.append(Resource(k("bgp", "65099"), {"asn": 65099, "router_id": "10.255.0.2",
                                                  "networks": [], "neighbors": []}, ""))
        expect_key = "switch/leaf2/bgp/65099"
    try:
        before = drv.running_config(leaf2)
        desired = State.of(current + extra)
        changes = make_plan(desired, State.of(current)).changes
        assert len(changes) == len(extra)
        res = drv.apply([TargetPlan(leaf2, changes, tuple(desired), tuple(current))])["leaf2"]
        assert res.outcome is Outcome.ROLLED_BACK, (res.error, res.details)
        assert res.rolled_back and ("verification failed" if case == "verify" else "rejected") in res.error
        assert expect_key in res.failed_keys
        if case != "bgp-asn":   # the trunk VLAN went in before the failure: undone
            assert any(d.startswith("rollback> ") for d in res.details), res.details
        assert drv.running_config(leaf2) == before
    finally:
        lab.exec("leaf2", ["ip", "link", "del", "vx-squat"], check=False)
    assert make_plan(_switch_state(fabric), _observe(fabric)).empty


def test_dead_and_silent_switches_do_not_hold_up_the_others(fabric):
    lab = fabric["lab"]
    # A TCP server on loopback that accepts and never speaks SSH (a hung switch).
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(4)
    conns: list = []
    stop = threading.Event()

    def accept():
        ls.settimeout(0.2)
        while not stop.is_set():
            try:
                conns.append(ls.accept()[0])
            except OSError:
                pass
    th = threading.Thread(target=accept, daemon=True)
    th.start()
    from reconciler.drivers.base import Target
    from reconciler.drivers.switch.driver import SwitchDriver
    base = switch_targets(lab)
    silent = Target("silent", Layer.SWITCH, {**base[0].vars, "ansible_host": "127.0.0.1",
                                             "ansible_port": ls.getsockname()[1]})
    dead = Target("dead", Layer.SWITCH, {**base[0].vars, "ansible_host": "127.0.0.1", "ansible_port": 9})
    drv = SwitchDriver(io_timeout_s=2, deadline_s=6, max_parallel=4)
    try:
        t0 = time.monotonic()
        obs = drv.observe([*base, silent, dead])
        elapsed = time.monotonic() - t0
    finally:
        stop.set()
        th.join(2)
        for c in conns:
            c.close()
        ls.close()
    assert obs["leaf1"].ok and obs["leaf2"].ok
    assert obs["silent"].outcome is Outcome.UNREACHABLE and obs["dead"].outcome is Outcome.UNREACHABLE
    assert obs["leaf1"].duration_s < 5 and obs["leaf2"].duration_s < 5
    assert elapsed < 8, elapsed


def test_sessions_are_reused_and_a_stale_one_is_replaced_before_any_write(fabric):
    """The next observe of a switch goes through the session the last one left idle (no new
    login); when that session died on the switch side, the driver logs in again, once."""
    import re

    from reconciler.drivers.switch.driver import SwitchDriver
    lab = fabric["lab"]
    leaf1 = [t for t in switch_targets(lab) if t.name == "leaf1"]
    drv = SwitchDriver(io_timeout_s=3, deadline_s=9)
    try:
        assert drv.observe(leaf1)["leaf1"].ok
        (first, _), = drv.sessions._idle.values()
        assert drv.observe(leaf1)["leaf1"].ok
        (again, _), = drv.sessions._idle.values()
        assert again is first                                   # reused: no second login
        # kill the sshd process serving exactly this connection (found by its TCP port)
        port = first.conn.remote_conn.get_transport().sock.getsockname()[1]
        ss = lab.exec("leaf1", ["ss", "-Htnp", "state", "established", "( sport = :22 )"]).stdout
        pids = {m.group(1) for line in ss.splitlines() if f":{port} " in line + " "
                for m in re.finditer(r"pid=(\d+)", line)}
        assert pids, ss
        lab.exec("leaf1", ["kill", *sorted(pids)])
        obs = drv.observe(leaf1)["leaf1"]
        assert obs.ok, obs.error
        (fresh, _), = drv.sessions._idle.values()
        assert fresh is not first
    finally:
        drv.close()
    assert drv.sessions._idle == {}


def test_host_keys_are_checked_against_the_known_hosts_file(fabric, tmp_path):
    """The lab's inventory names its known_hosts: every driver checks host keys against it, and a
    file holding other keys makes switches (netmiko) and hosts (Ansible) unreachable, saying why."""
    import dataclasses
    import subprocess
    from pathlib import Path

    import yaml

    from reconciler.drivers.ansible.host import HostDriver
    from reconciler.drivers.switch.driver import SwitchDriver
    lab = fabric["lab"]
    known = yaml.safe_load(lab.inventory_path.read_text())["all"]["vars"]["netintent_known_hosts"]
    lines = Path(known).read_text().splitlines()
    assert len(lines) == 11 and all(len(l.split()) == 3 for l in lines)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "other")], check=True)
    other = (tmp_path / "other.pub").read_text().split()
    wrong = tmp_path / "known_hosts"
    wrong.write_text("".join(f"{l.split()[0]} {other[0]} {other[1]}\n" for l in lines))
    leaf1 = next(t for t in fabric["targets"][Layer.SWITCH] if t.name == "leaf1")
    h1 = next(t for t in fabric["targets"][Layer.HOST] if t.name == "h1")
    assert leaf1.vars["netintent_known_hosts"] == known == h1.vars["netintent_known_hosts"]

    def using(t, path):
        return dataclasses.replace(t, vars={**t.vars, "netintent_known_hosts": str(path)})
    sw, host = SwitchDriver(io_timeout_s=3, deadline_s=9), HostDriver(inventory_path=str(lab.inventory_path))
    try:
        got = sw.observe([using(leaf1, wrong)])["leaf1"]
        assert got.outcome is Outcome.UNREACHABLE and "key" in got.error.lower(), got.error
        got = host.observe([using(h1, wrong)])["h1"]
        assert got.outcome is Outcome.UNREACHABLE and "host key verification failed" in got.error.lower(), got.error
        assert sw.observe([leaf1])["leaf1"].ok and host.observe([h1])["h1"].ok
    finally:
        sw.close()
