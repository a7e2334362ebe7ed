"""Per-application telemetry on the reference lab (labs/app-fabric.clab.yml, shared fixture):
known traffic generated from inside the hosts' namespaces must show up, exactly, in the exported
series of the right app, service, port, layer and refused source; a rule change (table replaced
by apply) resets the device counters and the exported totals carry on. Marked `lab`.

Traffic (examples/intents): N allowed TCP connections billing/invoicer (h2) -> shop/api (h3,
10.50.1.21:8080); M refused ones billing/ledger (h6) -> the same port (not allowed: shop exports
api to invoicer only). Each refused connect gives up before TCP's first retransmission (1 s), so
it sends exactly one SYN; an allowed one sends one packet that the accept rule sees (the rest is
`established`). Counters are cumulative on a shared lab: the test compares deltas.
"""
from __future__ import annotations

import subprocess

import pytest
from minilab import listen

from reconciler.compile import compile_repo
from reconciler.drivers.registry import build_drivers, targets_of
from reconciler.engine import Engine
from reconciler.intents.validate import load_repo
from reconciler.model import Layer, State
from reconciler.status import Outcome
from reconciler.telemetry.collect import Collector
from reconciler.telemetry.export import TelemetryExport
from reconciler.telemetry.index import build_index
from reconciler.telemetry.service import targets_to_read
from reconciler.telemetry.totals import Totals

pytestmark = pytest.mark.lab
EXAMPLES = "examples/intents"
LAYERS = (Layer.SWITCH, Layer.HYPERVISOR, Layer.HOST)
N, M = 12, 5
# one process per source namespace: n sequential connects, each bounded; prints the successes
CONNECT = ("import socket,sys\nok=0\nfor _ in range(int(sys.argv[3])):\n s=socket.socket();s.settimeout(float(sys.argv[4]))\n"
           " try:\n  s.connect((sys.argv[1],int(sys.argv[2])));ok+=1\n except OSError:\n  pass\n finally:\n  s.close()\n"
           "print(ok)")


def connects(ns: str, ip: str, port: int, n: int, timeout_s: float) -> int:
    p = subprocess.run(["ip", "netns", "exec", ns, "python3", "-c", CONNECT, ip, str(port), str(n), str(timeout_s)],
                       capture_output=True, text=True, timeout=n * (timeout_s + 1) + 10, check=True)
    return int(p.stdout.strip())


@pytest.fixture(scope="module")
def converged(app_fabric_lab):
    lab = app_fabric_lab
    repo = load_repo(EXAMPLES, inventory_override=str(lab.inventory_path))
    desired = State.of(r for r in compile_repo(repo) if r.key.layer in LAYERS)
    targets = {l: ts for l, ts in targets_of(repo.inventory).items() if l in LAYERS}
    drivers = build_drivers(LAYERS, {"inventory_path": str(lab.inventory_path), "timeout_s": 120})
    engine = Engine(drivers, attempts=3, backoff_s=0.5)
    report = engine.run(desired, targets, prune=False)
    assert report.converged, [(t.target, t.outcome, t.error) for t in report.targets.values()
                              if t.outcome not in (Outcome.NOOP, Outcome.APPLIED)]
    ix = build_index(repo, desired)
    collector = Collector(str(lab.inventory_path), timeout_s=60)
    api = listen(lab.netns("h3"), 8080)
    try:
        yield lab, engine, desired, targets, ix, collector
    finally:
        api.kill()
        api.wait(timeout=5)
        collector.close()


def series(totals: Totals) -> dict[tuple, int]:
    """(metric, sorted label items) -> value, as exported."""
    out = {}
    for fam in TelemetryExport(totals).collect():
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = int(s.value)
    return out


def value(rows: dict[tuple, int], metric: str, **labels: str) -> int:
    return sum(v for (m, ls), v in rows.items() if m == metric and labels.items() <= dict(ls).items())


def test_known_traffic_is_exported_per_app_service_layer_and_source(converged):
    lab, _engine, _desired, targets, ix, collector = converged
    read = targets_to_read(targets, ix)
    totals = Totals()
    totals.add(collector.round(read, ix))
    assert not totals.down, totals.down
    before = series(totals)
    assert connects(lab.netns("h2"), "10.50.1.21", 8080, N, 3.0) == N
    assert connects(lab.netns("h6"), "10.50.1.21", 8080, M, 0.6) == 0
    totals.add(collector.round(read, ix))
    after = series(totals)

    def delta(metric: str, **labels: str) -> int:
        return value(after, metric, **labels) - value(before, metric, **labels)
    api = {"app": "shop", "service": "api", "port": "grpc", "layer": "host", "target": "h3"}
    assert delta("netintent_app_packets_total", verdict="accept", **api) == N
    assert delta("netintent_app_packets_total", verdict="drop", **api) == M
    assert delta("netintent_app_policy_drops_total", source_app="billing", **api) == M
    assert delta("netintent_app_policy_drops_total", source_app="shop") == 0     # nothing else refused
    assert delta("netintent_app_policy_drops_total", app="billing") == 0
    # the callers' traffic passed their hypervisor ports' anti-spoofing flows (billing: h2 on hv1, h6 on hv3)
    assert delta("netintent_app_packets_total", app="billing", layer="hypervisor", verdict="accept",
                 service="invoicer") >= 2 * N
    assert delta("netintent_app_packets_total", app="billing", layer="hypervisor", verdict="accept",
                 service="ledger") >= M
    # h2 (leaf1) -> h3 (leaf1): no VXLAN; h6 (leaf2) -> h3 (leaf1): routed over billing's segment? at least
    # the leaves were read and every target up
    assert value(after, "netintent_telemetry_target_up", layer="switch") == len(read[Layer.SWITCH])
    # nothing of a table the reconciler does not own is attributed: a hand counter on h3 stays out
    lab.exec("h3", ["nft", "-f", "-"], input="table inet handmade {\n counter acc_api_grpc { packets 99 bytes 99 }\n"
             " chain input { type filter hook input priority 5; policy accept; }\n}\n")
    try:
        totals.add(collector.round(read, ix))
        assert value(series(totals), "netintent_app_packets_total", verdict="accept", **api) \
            == value(after, "netintent_app_packets_total", verdict="accept", **api)
    finally:
        lab.exec("h3", ["nft", "delete", "table", "inet", "handmade"], check=False)


def test_counter_reset_after_a_rule_change_keeps_totals_monotonic(converged):
    lab, engine, desired, targets, ix, collector = converged
    read = targets_to_read(targets, ix)
    totals = Totals()
    assert connects(lab.netns("h2"), "10.50.1.21", 8080, 3, 3.0) == 3   # the counter is not at zero
    totals.add(collector.round(read, ix))
    api = {"app": "shop", "service": "api", "port": "grpc", "layer": "host", "target": "h3", "verdict": "accept"}
    first = value(series(totals), "netintent_app_packets_total", **api)
    assert first >= 3
    # a rule changed by hand: the repair replaces the whole table, its counters start again at 0
    listing = lab.exec("h3", ["nft", "-a", "list", "chain", "inet", "netintent_shop", "input"]).stdout
    handle = next(line.rsplit("# handle ", 1)[1] for line in listing.splitlines() if "drop_other" in line)
    lab.exec("h3", ["nft", "delete", "rule", "inet", "netintent_shop", "input", "handle", handle])
    repair = engine.run(desired, targets, prune=False)
    assert "host/h3/nft-table/netintent_shop" in {str(c.key) for c in repair.initial.drift}
    assert repair.converged
    assert '"acc_api_grpc"' in lab.exec("h3", ["nft", "list", "ruleset"]).stdout
    assert connects(lab.netns("h2"), "10.50.1.21", 8080, 2, 3.0) == 2
    totals.add(collector.round(read, ix))
    assert totals.resets >= 1
    assert value(series(totals), "netintent_app_packets_total", **api) == first + 2
    # and nothing drifts because of counters: a second run finds no drift
    again = engine.run(desired, targets, prune=False, dry_run=True)
    assert not again.initial.drift, [str(c.key) for c in again.initial.drift]
