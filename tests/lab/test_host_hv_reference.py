"""examples/intents on the reference lab (labs/app-fabric.clab.yml, shared fixture), host and
hypervisor layers through the real Engine and drivers, checked with TCP from inside the hosts.

Same-host and same-segment checks need only these two layers. Flows that cross hypervisors go
through the leaves, so `test_cross_leaf_flows` also runs the switch driver and is only as good as
that layer. Marked `lab`.
"""
from __future__ import annotations

import pytest
from minilab import listen, tcp_connects

from reconciler.compile import compile_repo
from reconciler.drivers.registry import build_drivers, targets_of
from reconciler.engine import Engine
from reconciler.intents.validate import load_repo
from reconciler.model import Layer, State
from reconciler.status import Outcome

pytestmark = pytest.mark.lab
EXAMPLES = "examples/intents"


def _engine(lab, layers):
    drivers = build_drivers(layers, {"inventory_path": str(lab.inventory_path), "timeout_s": 120})
    repo = load_repo(EXAMPLES, inventory_override=str(lab.inventory_path))
    desired = State.of(r for r in compile_repo(repo) if r.key.layer in layers)
    targets = {l: ts for l, ts in targets_of(repo.inventory).items() if l in layers}
    return Engine(drivers, attempts=3, backoff_s=0.5), desired, targets


@pytest.fixture
def listeners():
    procs = []

    def start(ns, port):
        procs.append(listen(ns, port))
    try:
        yield start
    finally:
        for p in procs:
            p.kill()
            p.wait(timeout=5)


def test_examples_host_and_hypervisor_layers(app_fabric_lab, listeners):
    lab = app_fabric_lab
    engine, desired, targets = _engine(lab, (Layer.HYPERVISOR, Layer.HOST))
    lab.exec("h1", ["nft", "-f", "-"], input="table inet handmade {\n chain input { type filter hook input "
             "priority 5; policy accept; tcp dport 7 counter accept; }\n}\n")
    try:
        report = engine.run(desired, targets, prune=False)
        assert report.converged, [(t.target, t.outcome, t.error) for t in report.targets.values()]
        again = engine.run(desired, targets, prune=False)
        assert again.converged and again.writes == 0
        assert "tcp dport 7" in lab.exec("h1", ["nft", "list", "table", "inet", "handmade"]).stdout
        h4 = lab.netns("h4")
        listeners(h4, 9000)
        listeners(h4, 3000)
        listeners(lab.netns("h2"), 8000)
        # analytics: dash -> collector on ingest (same host), never the reverse
        assert tcp_connects(h4, "10.50.3.11", 9000, bind="10.50.3.12")
        assert not tcp_connects(h4, "10.50.3.12", 3000, bind="10.50.3.11")
        # shop web (h1) cannot reach billing's invoicer (h2, other app, other VLAN, same hypervisor)
        assert not tcp_connects(lab.netns("h1"), "10.50.2.11", 8000)
        # drift: delete one rule by hand on h4 and one flow by hand on hv1; one run repairs both
        listing = lab.exec("h4", ["nft", "-a", "list", "chain", "inet", "netintent_analytics", "input"]).stdout
        handle = next(line.rsplit("# handle ", 1)[1] for line in listing.splitlines() if "dport 9000" in line)
        lab.exec("h4", ["nft", "delete", "rule", "inet", "netintent_analytics", "input", "handle", handle])
        lab.exec("hv1", ["ovs-ofctl", "--strict", "del-flows", "br0", "priority=200,ip,in_port=eth2,nw_src=10.50.1.11"])
        assert not tcp_connects(h4, "10.50.3.11", 9000, bind="10.50.3.12")
        repair = engine.run(desired, targets, prune=False)
        drifted = {str(c.key) for c in repair.initial.drift}
        assert "host/h4/nft-table/netintent_analytics" in drifted
        assert "hypervisor/hv1/ovs-flow/priority=200,ip,in_port=eth2,nw_src=10.50.1.11" in drifted
        assert repair.converged
        assert tcp_connects(h4, "10.50.3.11", 9000, bind="10.50.3.12")
    finally:
        lab.exec("h1", ["nft", "delete", "table", "inet", "handmade"], check=False)


def test_cross_leaf_flows(app_fabric_lab, listeners):
    lab = app_fabric_lab
    engine, desired, targets = _engine(lab, (Layer.SWITCH, Layer.HYPERVISOR, Layer.HOST))
    report = engine.run(desired, targets, prune=False)
    assert report.converged, [(t.target, t.outcome, t.error) for t in report.targets.values()
                              if t.outcome not in (Outcome.NOOP, Outcome.APPLIED)]
    listeners(lab.netns("h3"), 8080)
    listeners(lab.netns("h5"), 8080)
    listeners(lab.netns("h6"), 5432)
    listeners(lab.netns("h1"), 80)
    assert tcp_connects(lab.netns("h1"), "10.50.1.21", 8080)      # shop web -> api, hv1 -> leaf1 -> hv2
    assert tcp_connects(lab.netns("h1"), "10.50.1.22", 8080)      # ... -> leaf2 -> hv3 (VXLAN)
    assert tcp_connects(lab.netns("h2"), "10.50.2.21", 5432)      # billing invoicer -> ledger across leaves
    assert not tcp_connects(lab.netns("h3"), "10.50.1.11", 80)    # api -> web: not allowed
    assert not tcp_connects(lab.netns("h6"), "10.50.1.21", 8080)  # billing ledger -> shop api: not exported to it
