"""Sidecar driver through the shared conformance suite on the reference lab: the six gRPC
workloads `lab up` runs in the host namespaces, the lab's ADS server driven through its control
socket (the driver the registry builds from the lab inventory), CSDS over the management network.

Before the checks only the host layer is applied (the workloads' bootstrap and certificates), so
the sidecar targets start with no owned state. Hand-made state and drift by hand are written into
the lab ADS server by another writer; unreachable = the node's workload killed (restore: started
again by the lab's own start function).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conformance import CHECKS

from reconciler.compile import compile_repo
from reconciler.drivers.registry import build_drivers, targets_of
from reconciler.intents.validate import load_repo
from reconciler.lab import Lab, workloads
from reconciler.lab.shared import skip_reason
from reconciler.model import Layer, ResourceKey, State
from reconciler.xds import resources as R

REPO = Path(__file__).resolve().parents[2]
MANUAL = "ops-manual.tools:1"


class LabSidecarAdapter:
    layer = Layer.SIDECAR

    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self.repo = load_repo(str(REPO / "examples/intents"), inventory_override=str(lab.inventory_path))

    def driver(self):
        return build_drivers([Layer.SIDECAR], {"inventory_path": str(self.lab.inventory_path)})[Layer.SIDECAR]

    def targets(self):
        # h4 first: the suite cuts the first target and needs it to hold the first app's (analytics) state
        ts = targets_of(self.repo.inventory)[Layer.SIDECAR]
        return sorted(ts, key=lambda t: (t.name != "h4", t.name))

    def desired(self) -> State:
        return State.of(r for r in compile_repo(self.repo) if r.key.layer is Layer.SIDECAR)

    @property
    def cache(self):
        return self.driver().cache

    def drift(self, target: str) -> ResourceKey:
        cache = self.cache
        snap, owners = cache.resources(target), cache.owners(target)
        name = next(n for (t, n) in sorted(owners) if t == R.LISTENER)
        kind, _, spec = R.from_any(snap[R.LISTENER][name])
        if kind == "listener":   # a caller's node: its route's timeout changed by hand
            rname = spec["route"]
            _, _, rspec = R.from_any(snap[R.ROUTE][rname])
            rspec["timeout_ms"] = 1234
            snap[R.ROUTE][rname] = R.to_proto("route", rname, rspec)
            kind, name = "route", rname
        else:
            spec["rbac"] = {"principals": [], "source_ips": ["10.9.9.9/32"]}
            snap[R.LISTENER][name] = R.to_proto(kind, name, spec)
        cache.set_node(target, snap, None)
        cache.wait_for({target: cache.versions(target)}, 5.0)
        return ResourceKey(Layer.SIDECAR, target, kind, name)

    def make_unowned(self, target: str) -> None:
        cache = self.cache
        snap = cache.resources(target)
        snap.setdefault(R.LISTENER, {})[MANUAL] = R.to_proto(
            "listener", MANUAL, {"route": MANUAL, "config_source": "ads", "http_filters": ["router"]})
        cache.set_node(target, snap, None)

    def unowned_present(self, target: str) -> bool:
        return MANUAL in self.cache.resources(target).get(R.LISTENER, {})

    def make_unreachable(self, target: str) -> None:
        pid = json.loads((self.lab.layout.node_dir(target) / "agent.ready").read_text())["pid"]
        os.kill(pid, signal.SIGKILL)

    def restore(self, target: str) -> None:
        node = self.lab.topo.nodes[target]
        workloads.start(self.lab.layout, node, workloads.specs(self.lab.topo)[target], self.lab.holder(target))


@pytest.fixture(scope="module")
def lab_adapter(tmp_path_factory):
    reason = skip_reason()
    if reason:
        pytest.skip(reason)
    tmp = tmp_path_factory.mktemp("sidecar-lab")
    lab = Lab.from_file(REPO / "labs/app-fabric.clab.yml", "ni-scl", tmp / "inventory", "172.31.94.0/24")
    lab.up()
    try:
        os.environ["RECONCILER_CA_DIR"] = str(tmp / "ca")
        cp = subprocess.run([sys.executable, "-m", "reconciler.cli", "apply", str(REPO / "examples/intents"),
                             "--inventory", str(lab.inventory_path), "--layer", "host"],
                            capture_output=True, text=True, timeout=300, cwd=REPO)
        assert cp.returncode == 0, cp.stdout[-2000:] + cp.stderr[-1000:]
        yield LabSidecarAdapter(lab)
    finally:
        os.environ.pop("RECONCILER_CA_DIR", None)
        lab.down()


@pytest.mark.lab
@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__)
def test_sidecar_conformance_on_the_lab(lab_adapter, check):
    check(lab_adapter)
