"""Helpers for the sidecar (xDS) integration tests: a mesh of real grpcio xDS workloads.

Each test gets its own loopback addresses (127.<random>.<random>.x) and free ports, an
in-process ADS server (reconciler.xds.server), a CA, and workload subprocesses
(labs/workloads/agent.py) with their own GRPC_XDS_BOOTSTRAP. `Mesh.close()` stops every
process it started. Every wait is bounded.
"""
from __future__ import annotations

import random
import socket
import time
from pathlib import Path
from typing import Callable, Mapping

from reconciler.compile.context import CompileContext
from reconciler.compile.sidecar import compile_app
from reconciler.drivers.base import Target, TargetPlan
from reconciler.drivers.sidecar import SidecarDriver
from reconciler.intents.models import Application, Inventory, InventoryHost, RepoConfig
from reconciler.model import Layer, Resource
from reconciler.xds.bootstrap import write_workload_files
from reconciler.xds.ca import CA
from reconciler.xds.server import SnapshotCache, XdsServer
from reconciler.xds.workload import Workload

TRUST = "test.example"
WEB_ID = "spiffe://test.example/shop/web"
API_ID = "spiffe://test.example/shop/api"
BATCH_ID = "spiffe://test.example/shop/batch"


def loopback_net() -> str:
    """A random 127.a.b.0 prefix so parallel test runs don't collide."""
    return f"127.{random.randint(100, 250)}.{random.randint(1, 250)}."


def free_port(ip: str) -> int:
    for _ in range(50):
        port = random.randint(20000, 60000)
        with socket.socket() as s:
            try:
                s.bind((ip, port))
                return port
            except OSError:
                continue
    raise RuntimeError(f"no free port on {ip}")


def loopback_addr() -> tuple[str, int]:
    """A fresh loopback prefix and a port free on its api address (<net>21)."""
    net = loopback_net()
    return net, free_port(net + "21")


def shop_app(net: str, port: int, split: Mapping[str, int] | None = None, mtls: str = "disable",
             timeout_ms: int | None = None, retries: int | None = None,
             allow_batch: bool = False, web_address: str | None = None) -> Application:
    """shop: web (w1) and batch (b1) may call api (a1: v1, a2: v2). On loopback every
    client connects from 127.0.0.1: pass web_address="127.0.0.1" when plaintext RBAC
    (by source address) must let web in."""
    traffic: dict = {"mtls": mtls}
    if split:
        traffic["split"] = dict(split)
    if timeout_ms:
        traffic["timeout_ms"] = timeout_ms
    if retries:
        traffic["retries"] = retries
    allow = [{"from": "web", "to": "api", "ports": ["grpc"]}]
    if allow_batch:
        allow.append({"from": "batch", "to": "api", "ports": ["grpc"]})
    return Application.model_validate({
        "apiVersion": "netintent/v1", "kind": "Application", "metadata": {"name": "shop"},
        "spec": {
            "segment": {"vni": 5001, "subnet": net + "0/24"},
            "services": {
                "web": {"instances": [{"host": "w1", "address": web_address or net + "11"}],
                        "ports": [{"name": "grpc", "port": port}]},
                "batch": {"instances": [{"host": "b1", "address": net + "12"}],
                          "ports": [{"name": "grpc", "port": port}]},
                "api": {"instances": [{"host": "a1", "address": net + "21", "version": "v1"},
                                      {"host": "a2", "address": net + "22", "version": "v2"}],
                        "ports": [{"name": "grpc", "port": port}]},
            },
            "policy": {"allow": allow},
            "traffic": {"api": traffic},
        }})


def inventory(hosts: tuple[str, ...]) -> Inventory:
    return Inventory(hosts={h: InventoryHost(name=h, groups=("sidecars",), vars={}) for h in hosts})


def compile_nodes(apps: Mapping[str, Application], hosts: tuple[str, ...]) -> dict[str, list[Resource]]:
    ctx = CompileContext(RepoConfig(trust_domain=TRUST), inventory(hosts), dict(apps))
    out: dict[str, list[Resource]] = {}
    for app in apps.values():
        for r in compile_app(app, ctx):
            out.setdefault(r.key.target, []).append(r)
    return out


class Mesh:
    def __init__(self, tmp: Path, ack_timeout: float = 5.0) -> None:
        self.tmp = Path(tmp)
        self.server = XdsServer("127.0.0.1:0")
        self.server.start()
        self.ads_uri = self.server.target
        self.ca = CA.create(TRUST)
        self.driver = SidecarDriver(self.server, ack_timeout=ack_timeout)
        self.workloads: dict[str, Workload] = {}

    @property
    def cache(self) -> SnapshotCache:
        return self.server.cache

    def restart_server(self, cache: SnapshotCache | None = None) -> None:
        """A new ADS server (fresh state unless `cache`) on the same port."""
        port = self.server.port
        self.server.stop()
        deadline = time.monotonic() + 10
        while True:
            try:
                self.server = XdsServer(f"127.0.0.1:{port}", cache=cache or SnapshotCache())
                self.server.start()
                break
            except RuntimeError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        self.driver = SidecarDriver(self.server, ack_timeout=self.driver.ack_timeout)

    def start(self, node: str, identities: Mapping[str, str] = (), serve=(), warm=(),
              bootstrap_hook: Callable[[Path], None] | None = None, serve_plain=()) -> Workload:
        d = self.tmp / node
        boot = write_workload_files(d, node, self.ads_uri, self.ca, dict(identities))
        if bootstrap_hook:
            bootstrap_hook(boot)
        w = Workload(node, d, boot, serve=serve, warm=warm, serve_plain=serve_plain)
        self.workloads[node] = w
        w.start()
        return w

    def start_api(self, net: str, port: int, mtls: bool = False, plain: bool = False) -> None:
        """shop's api: a1 serves v1 on <net>21, a2 serves v2 on <net>22, with api's
        certificate when `mtls`; as plain gRPC servers (not xDS servers) when `plain`."""
        ids = {"api.shop": API_ID} if mtls else {}
        for node, version, ip in (("a1", "v1", net + "21"), ("a2", "v2", net + "22")):
            listen = [(version, ip, port)]
            self.start(node, ids, serve=() if plain else listen, serve_plain=listen if plain else ())

    def target(self, node: str) -> Target:
        w = self.workloads.get(node)
        return Target(node, Layer.SIDECAR, {"netintent_csds": w.admin_address} if w else {})

    def plans(self, nodes: Mapping[str, list[Resource]], prune: bool = True) -> list[TargetPlan]:
        return [TargetPlan(self.target(n), (), tuple(rs), (), prune) for n, rs in sorted(nodes.items())]

    def push(self, nodes: Mapping[str, list[Resource]]):
        return self.driver.apply(self.plans(nodes))

    def close(self) -> None:
        for w in self.workloads.values():
            w.stop()
        self.server.stop()


def share(tally: Mapping, name: str) -> float:
    servers = tally.get("servers", {})
    total = sum(servers.values()) + sum(tally.get("errors", {}).values())
    return servers.get(name, 0) / total if total else 0.0


def wait_until(pred: Callable[[], object], timeout: float, interval: float = 0.1):
    """Poll `pred` until truthy or `timeout`; returns the last value."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v or time.monotonic() > deadline:
            return v
        time.sleep(interval)
