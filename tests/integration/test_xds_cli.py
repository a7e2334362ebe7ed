"""End to end through `reconciler serve-xds`: intents YAML -> ADS -> real grpcio workloads.

Validation refuses loopback subnets, so this runs in a network namespace the test makes
(`ni-xds-*`): the app's addresses live on the namespace's lo, `reconciler serve-xds` and
the workloads run inside it, and the test reaches the workloads' admin ports over a veth.
A temporary intents repo is served with `--watch` and `--workload-dir` (bootstraps and
certificates from the lab CA); editing the split in apps/shop.yaml from 90/10 to 50/50
reaches the client with no other action.
"""
from __future__ import annotations

import json
import os
import random
import secrets
import signal
import subprocess
import sys
import time

import pytest
from xds_helpers import share, wait_until

from reconciler.xds.workload import Workload

SHOP = """apiVersion: netintent/v1
kind: Application
metadata: {{name: shop}}
spec:
  segment: {{vni: 5001, subnet: {net}0/24}}
  services:
    web:
      instances: [{{host: w1, address: {net}11}}]
      ports: [{{name: grpc, port: {port}}}]
    api:
      instances:
        - {{host: a1, address: {net}21, version: v1}}
        - {{host: a2, address: {net}22, version: v2}}
      ports: [{{name: grpc, port: {port}}}]
  policy:
    allow: [{{from: web, to: api, ports: [grpc]}}]
  traffic:
    api: {{split: {{v1: {v1}, v2: {v2}}}, mtls: strict}}
"""


INVENTORY = """all:
  children:
    hosts:
      hosts:
        w1: {netintent_hypervisor: hv1, netintent_hypervisor_port: eth4}
        a1: {netintent_hypervisor: hv1, netintent_hypervisor_port: eth2}
        a2: {netintent_hypervisor: hv1, netintent_hypervisor_port: eth3}
    hypervisors:
      hosts:
        hv1: {netintent_leaf: leaf1, netintent_leaf_port: eth1}
    switches:
      hosts:
        leaf1: {netintent_vtep: 10.255.0.1, netintent_asn: 65001}
    sidecars:
      hosts: {w1: {}, a1: {}, a2: {}}
"""


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


@pytest.fixture
def netns():
    tag = secrets.token_hex(3)
    ns, veth = f"ni-xds-{tag}", f"nixds{tag}"
    x, y = random.randint(1, 250), random.randint(1, 250)
    mgmt, net = f"10.78.{x}.", f"10.77.{y}."
    try:
        _ip("netns", "add", ns)
        _ip("-n", ns, "link", "set", "lo", "up")
        _ip("link", "add", veth + "a", "type", "veth", "peer", "name", veth + "b", "netns", ns)
        _ip("addr", "add", mgmt + "1/30", "dev", veth + "a")
        _ip("link", "set", veth + "a", "up")
        _ip("-n", ns, "addr", "add", mgmt + "2/30", "dev", veth + "b")
        _ip("-n", ns, "link", "set", veth + "b", "up")
        for host in ("11", "21", "22"):
            _ip("-n", ns, "addr", "add", net + host + "/32", "dev", "lo")
        yield ns, net, mgmt + "2"
    finally:
        subprocess.run(["ip", "link", "del", veth + "a"], capture_output=True, timeout=10)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=10)


@pytest.fixture
def served(tmp_path, netns):
    ns, net, admin_ip = netns
    port = 8080
    repo = tmp_path / "repo"
    (repo / "apps").mkdir(parents=True)
    (repo / "reconciler.yaml").write_text(
        "apiVersion: netintent/v1\nkind: ReconcilerConfig\ntrust_domain: test.example\ninventory: inventory.yml\n")
    (repo / "inventory.yml").write_text(INVENTORY)
    (repo / "apps" / "shop.yaml").write_text(SHOP.format(net=net, port=port, v1=90, v2=10))
    wd = tmp_path / "wl"
    proc = subprocess.Popen(
        ["ip", "netns", "exec", ns, sys.executable, "-m", "reconciler.cli", "serve-xds", str(repo),
         "--listen", "127.0.0.1:18001", "--workload-dir", str(wd), "--watch", "0.3",
         "--ack-timeout", "2", "--json", "--duration", "120"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    workloads = []
    try:
        line = proc.stdout.readline()
        assert line, proc.stderr.read()
        assert json.loads(line)["event"] == "listening"
        assert wait_until(lambda: (wd / "a2" / "bootstrap.json").exists(), 10)
        for node, serve in (("a1", [("v1", net + "21", port)]), ("a2", [("v2", net + "22", port)]),
                            ("w1", [])):
            workloads.append(Workload(node, tmp_path / f"run-{node}", wd / node / "bootstrap.json",
                                      serve=serve, admin=f"{admin_ip}:0", netns=ns).start())
        yield repo, net, port, workloads[-1]
    finally:
        for w in workloads:
            w.stop()
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)


@pytest.mark.lab
def test_edit_split_in_intents_reaches_clients(served):
    repo, net, port, w1 = served
    target = f"xds:///api.shop:{port}"
    t = wait_until(lambda: (x := w1.run(target, n=1000, timeout_s=3)) and not x["errors"] and x, 15)
    assert t and abs(share(t, "v1") - 0.90) <= 0.05, t

    (repo / "apps" / "shop.yaml").write_text(SHOP.format(net=net, port=port, v1=50, v2=50))
    t0 = time.monotonic()
    t = wait_until(lambda: (x := w1.run(target, n=1000, timeout_s=3)) and not x["errors"]
                   and abs(share(x, "v1") - 0.50) <= 0.05 and x, 10, interval=0.2)
    assert t, "the edited split never reached the client"
    print(f"intent edit -> 50/50 observed after {time.monotonic() - t0:.2f} s (watch interval 0.3 s)")
