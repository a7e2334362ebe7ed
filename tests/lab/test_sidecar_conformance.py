"""Sidecar driver through the shared driver conformance suite, against real grpcio workloads.

The sidecar layer's device is the reconciler's own ADS server plus the workloads' xDS
clients (read back through CSDS), so this lab needs no netns: three workloads on loopback
(w1 calls shop/api and billing/ledger; a1 serves api v1; a2 serves api v2 and ledger).
Hand-made state = a resource put into the ADS server's snapshot by another writer; drift by
hand = another writer changing an owned resource there; unreachable = the workload stopped.
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))

from conformance import CHECKS  # noqa: E402
from xds_helpers import Mesh, compile_nodes, free_port, loopback_net, shop_app  # noqa: E402

from reconciler.drivers.sidecar import SidecarDriver  # noqa: E402
from reconciler.intents.models import Application  # noqa: E402
from reconciler.model import Layer, ResourceKey, State  # noqa: E402
from reconciler.xds import resources as R  # noqa: E402

NODES = ("w1", "a1", "a2")
MANUAL = "ops-manual.tools:1"


def billing(net: str, port: int) -> Application:
    return Application.model_validate({
        "apiVersion": "netintent/v1", "kind": "Application", "metadata": {"name": "billing"},
        "spec": {"segment": {"vni": 5002, "subnet": net + "0/24"},
                 "services": {"ledger": {"instances": [{"host": "a2", "address": net + "31"}],
                                         "ports": [{"name": "grpc", "port": port}]}},
                 "policy": {"allow": [{"from": "shop/web", "to": "ledger", "ports": ["grpc"]}]},
                 "traffic": {"ledger": {"timeout_ms": 1500}}}})


class SidecarAdapter:
    layer = Layer.SIDECAR

    def __init__(self, mesh: Mesh, net: str, port: int) -> None:
        self.mesh, self.net, self.port = mesh, net, port
        self.specs = {
            "a1": dict(serve=[("v1", net + "21", port)]),
            "a2": dict(serve=[("v2", net + "22", port), ("ledger", net + "31", port)]),
            "w1": dict(serve=[("web", net + "11", port)],
                       warm=[f"xds:///api.shop:{port}", f"xds:///ledger.billing:{port}"]),
        }
        for node in NODES:
            mesh.start(node, **self.specs[node])

    def driver(self) -> SidecarDriver:
        return SidecarDriver(self.mesh.server, ack_timeout=5.0)

    def targets(self):
        return [self.mesh.target(n) for n in NODES]

    def desired(self) -> State:
        nodes = compile_nodes({"shop": shop_app(self.net, self.port, split={"v1": 80, "v2": 20}),
                               "billing": billing(self.net, self.port)}, NODES)
        return State.of(r for n in NODES for r in nodes.get(n, ()))

    def drift(self, target: str) -> ResourceKey:
        cache = self.mesh.cache
        snap = cache.resources(target)
        owners = cache.owners(target)
        if target == "w1":
            name = f"api.shop:{self.port}"
            kind, _, spec = R.from_any(snap[R.ROUTE][name])
            spec["clusters"] = [dict(c, weight=50) for c in spec["clusters"]]
            snap[R.ROUTE][name] = R.to_proto("route", name, spec)
        else:
            name = next(n for (t, n) in owners if t == R.LISTENER)
            kind, _, spec = R.from_any(snap[R.LISTENER][name])
            spec["rbac"] = {"principals": [], "source_ips": ["10.9.9.9/32"]}
            snap[R.LISTENER][name] = R.to_proto(kind, name, spec)
        cache.set_node(target, snap)  # another writer: ownership unchanged
        # the client applies a push when it gets it: wait for its ACK, or an observe may still
        # (rightly) read the old config back
        cache.wait_for({target: cache.versions(target)}, timeout=5.0)
        return ResourceKey(Layer.SIDECAR, target, kind, name)

    def make_unowned(self, target: str) -> None:
        snap = self.mesh.cache.resources(target)
        snap.setdefault(R.LISTENER, {})[MANUAL] = R.to_proto(
            "listener", MANUAL, {"route": MANUAL, "config_source": "ads", "http_filters": ["router"]})
        self.mesh.cache.set_node(target, snap)

    def unowned_present(self, target: str) -> bool:
        return MANUAL in self.mesh.cache.resources(target).get(R.LISTENER, {})

    def make_unreachable(self, target: str) -> None:
        self.mesh.workloads[target].stop()

    def restore(self, target: str) -> None:
        self.mesh.start(target, **self.specs[target])


@pytest.fixture(scope="module")
def sidecar_adapter(tmp_path_factory):
    mesh = Mesh(tmp_path_factory.mktemp("sidecar-conformance"))
    try:
        net = loopback_net()
        yield SidecarAdapter(mesh, net, free_port(net + "21"))
    finally:
        mesh.close()


@pytest.mark.lab
@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__)
def test_sidecar_conformance(sidecar_adapter, check):
    check(sidecar_adapter)
