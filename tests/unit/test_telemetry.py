"""Telemetry, pure stages: counters compiled into the host tables (and never drift), parsers,
attribution (only owned state, unknown never zero), monotonic totals across resets, export."""
from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest
import yaml

from reconciler.compile import compile_repo
from reconciler.compile.host import REFUSED_SET, REFUSED_SPEC
from reconciler.drivers.ansible.nftables import REFUSED_SET as DRIVER_REFUSED_SET
from reconciler.drivers.ansible.nftables import parse_ruleset, plan_script
from reconciler.intents.validate import load_repo
from reconciler.model import State
from reconciler.plan import make_plan
from reconciler.telemetry.aggregate import aggregate
from reconciler.telemetry.collect import HOST_COMMAND, HYPERVISOR_COMMAND
from reconciler.telemetry.export import TelemetryExport
from reconciler.telemetry.index import build_index
from reconciler.telemetry.model import EXTERNAL, Kind, Raw, TargetRead
from reconciler.telemetry.parse import parse_host, parse_hypervisor, parse_switch
from reconciler.telemetry.totals import Totals

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "intents"
# `nft -j list ruleset` (nftables 1.0.6) after loading the compiled table of shop on h3
H3 = json.loads((ROOT / "tests" / "fixtures" / "telemetry" / "h3_ruleset.json").read_text())


@pytest.fixture(scope="module")
def compiled():
    repo = load_repo(EXAMPLES)
    return repo, compile_repo(repo)


def _with_counts(doc: dict, packets: int) -> dict:
    doc = copy.deepcopy(doc)
    for item in doc["nftables"]:
        if "counter" in item:
            item["counter"].update(packets=packets, bytes=packets * 60)
    return doc


# ---- compile + the nft model -------------------------------------------------------------
def test_every_rule_counter_is_declared_and_every_port_has_accept_and_drop(compiled):
    _repo, desired = compiled
    t = desired.get(next(r.key for r in desired if str(r.key) == "host/h3/nft-table/netintent_shop"))
    rules = t.spec["chains"]["input"]["rules"]
    assert set(t.spec["counters"]) == {r["counter"] for r in rules if "counter" in r} \
        == {"acc_api_grpc", "drop_api_grpc", "drop_other"}
    assert dict(t.spec["refused"]) == REFUSED_SPEC and REFUSED_SET == DRIVER_REFUSED_SET
    drop = next(r for r in rules if r.get("counter") == "drop_api_grpc")
    assert drop["update_set"] == REFUSED_SET and drop["verdict"] == "drop"


def test_device_table_parses_back_to_the_compiled_one_whatever_the_counts(compiled):
    """Counter values are telemetry, not state: no drift at 0 packets or at 10**9."""
    _repo, desired = compiled
    want = State.of(r for r in desired if r.key.target == "h3" and r.key.kind.startswith("nft-"))
    for packets in (0, 7, 10**9):
        tables, sets = parse_ruleset(_with_counts(H3, packets), "h3")
        assert not make_plan(want, State.of(tables + sets)).changes
        assert "packets" not in json.dumps([t.spec for t in tables], default=str)
        assert not plan_script(list(want), tables + sets, prune=False).script


def test_a_hand_removed_counter_is_drift_and_replaces_the_table(compiled):
    _repo, desired = compiled
    want = [r for r in desired if r.key.target == "h3" and r.key.kind.startswith("nft-")]
    doc = copy.deepcopy(H3)
    doc["nftables"] = [i for i in doc["nftables"] if i.get("counter", {}).get("name") != "drop_other"]
    tables, sets = parse_ruleset(doc, "h3")
    changes = make_plan(State.of(want), State.of(tables + sets)).changes
    assert [str(c.key) for c in changes] == ["host/h3/nft-table/netintent_shop"]
    assert "delete table inet netintent_shop" in plan_script(want, tables + sets, prune=False).script


# ---- parsers -----------------------------------------------------------------------------
def _host_output(extra_counters=(), refused_elems=()) -> str:
    counters = {"nftables": [{"metainfo": {}}] + [
        {"counter": {"family": "inet", "table": "netintent_shop", "name": n, "handle": 2, "packets": p, "bytes": p * 60}}
        for n, p in (("acc_api_grpc", 12), ("drop_api_grpc", 5), ("drop_other", 1))] + list(extra_counters)}
    refused = {"nftables": [{"set": {"family": "inet", "name": "refused", "table": "netintent_shop",
                                     "type": ["ipv4_addr", "ipv4_addr", "inet_service"], "elem": [
        {"elem": {"val": {"concat": [s, d, p]}, "expires": 3598, "counter": {"packets": n, "bytes": n * 60}}}
        for s, d, p, n in refused_elems]}}]}
    return json.dumps(counters) + "\n@@NI@@\n" + json.dumps(refused) + "\n\n"


def test_host_parser_keeps_owned_counters_and_refused_elements():
    foreign = {"counter": {"family": "inet", "table": "handmade", "name": "acc_api_grpc", "packets": 99, "bytes": 9}}
    raws = parse_host("h3", _host_output([foreign], [("10.50.2.21", "10.50.1.21", 8080, 5)]))
    assert {r.key: r.packets for r in raws} == {
        ("counter", "netintent_shop", "acc_api_grpc"): 12, ("counter", "netintent_shop", "drop_api_grpc"): 5,
        ("counter", "netintent_shop", "drop_other"): 1,
        ("refused", "netintent_shop", "10.50.2.21", "10.50.1.21", 8080): 5}


FLOWS = """NXST_FLOW reply (xid=0x4):
 cookie=0x4e490000a1b2c3d4, duration=5.1s, table=0, n_packets=10, n_bytes=900, priority=200,ip,in_port=eth2,nw_src=10.50.1.11 actions=NORMAL
 cookie=0x0, duration=5.1s, table=0, n_packets=77, n_bytes=7700, priority=0 actions=NORMAL
"""


def test_hypervisor_parser_keeps_only_the_reconcilers_cookies():
    raws = parse_hypervisor("hv1", FLOWS)
    assert [(r.key, r.packets, r.bytes) for r in raws] == [
        (("flow", 0x4E490000A1B2C3D4, "priority=200,ip,in_port=eth2,nw_src=10.50.1.11"), 10, 900)]


def test_switch_parser_keeps_only_devices_marked_as_the_reconcilers():
    links = [{"ifname": "vxlan5001", "ifalias": "netintent app=shop",
              "stats64": {"rx": {"packets": 3, "bytes": 300}, "tx": {"packets": 4, "bytes": 400}}},
             {"ifname": "vxlan9", "stats64": {"rx": {"packets": 50, "bytes": 5000}, "tx": {}}}]
    raws = parse_switch("leaf1", json.dumps(links))
    assert {r.key: r.packets for r in raws} == {("link", "vxlan5001", "shop", "rx"): 3,
                                                 ("link", "vxlan5001", "shop", "tx"): 4}


def test_the_playbook_runs_the_same_commands_as_the_ssh_reader():
    play = yaml.safe_load((ROOT / "playbooks" / "telemetry.yml").read_text())[0]["vars"]["ni_telemetry_commands"]
    assert play["host"] == HOST_COMMAND
    assert play["hypervisor"].replace("{{ netintent_bridge | default('br0') | quote }}", "{bridge}") \
        == HYPERVISOR_COMMAND


# ---- attribution -------------------------------------------------------------------------
def test_aggregate_attributes_owned_counters_and_names_refused_sources(compiled):
    repo, desired = compiled
    ix = build_index(repo, desired)
    raws = parse_host("h3", _host_output(refused_elems=[("10.50.2.21", "10.50.1.21", 8080, 5),
                                                        ("192.0.2.9", "10.50.1.21", 8080, 2)]))
    flows = [r for r in desired if r.key.target == "hv2" and r.key.kind == "ovs-flow" and r.app == "shop"]
    spoof = next(r for r in flows if r.spec["actions"] == "drop")
    raws.append(Raw("hypervisor", "hv2", ("flow", spoof.spec["cookie"], spoof.key.name), 4, 240))
    raws.append(Raw("hypervisor", "hv2", ("flow", spoof.spec["cookie"] + 1, spoof.key.name), 9, 9))  # other cookie
    raws.append(Raw("switch", "leaf1", ("link", "vxlan5001", "billing", "rx"), 8, 8))   # alias names another app
    sample = aggregate([TargetRead("host", "h3", True, tuple(raws[:-3])),
                        TargetRead("hypervisor", "hv2", True, tuple(raws[-3:-1])),
                        TargetRead("switch", "leaf1", True, (raws[-1],))], ix, 1.0)
    got = {(p.labels.app, p.labels.service, p.labels.port, p.labels.verdict, p.labels.source_app, p.labels.kind,
            p.layer): p.packets for p in sample.points}
    assert got == {
        ("shop", "api", "grpc", "accept", "", Kind.TRAFFIC, "host"): 12,
        ("shop", "api", "grpc", "drop", "", Kind.TRAFFIC, "host"): 5,
        ("shop", "", "", "drop", "", Kind.TRAFFIC, "host"): 1,
        ("shop", "api", "grpc", "drop", "billing", Kind.DROP, "host"): 5,
        ("shop", "api", "grpc", "drop", EXTERNAL, Kind.DROP, "host"): 2,
        ("shop", "", "", "drop", "", Kind.TRAFFIC, "hypervisor"): 4,
        ("shop", "", "", "drop", "shop", Kind.DROP, "hypervisor"): 4}


def test_an_unreadable_target_is_unknown_for_each_of_its_apps_never_zero(compiled):
    repo, desired = compiled
    ix = build_index(repo, desired)
    sample = aggregate([TargetRead("host", "h4", False, error="ssh rc=255"),
                        TargetRead("switch", "leaf1", False, error="timeout")], ix, 1.0)
    assert not sample.points
    assert {(u.app, u.layer, u.target) for u in sample.unknown} == {
        ("analytics", "host", "h4"), ("shop", "switch", "leaf1"), ("billing", "switch", "leaf1"),
        ("analytics", "switch", "leaf1")}


# ---- totals and export -------------------------------------------------------------------
def _round(ix, ts, acc, ok=True):
    raws = (Raw("host", "h3", ("counter", "netintent_shop", "acc_api_grpc"), acc, acc * 60),) if ok else ()
    return aggregate([TargetRead("host", "h3", ok, raws, error="" if ok else "down")], ix, ts)


def _exported(totals: Totals) -> dict:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in TelemetryExport(totals).collect() for s in fam.samples}


def test_totals_are_monotonic_across_resets_and_absent_while_unknown(compiled):
    repo, desired = compiled
    ix = build_index(repo, desired)
    totals = Totals()
    labels = (("app", "shop"), ("layer", "host"), ("port", "grpc"), ("service", "api"), ("target", "h3"),
              ("verdict", "accept"))
    seen = []
    for ts, acc, ok in ((1, 10, True), (2, 15, True), (3, 2, True), (4, 0, False), (5, 6, True)):
        totals.add(_round(ix, ts, acc, ok))
        seen.append(_exported(totals).get(("netintent_app_packets_total", labels)))
        up = _exported(totals)[("netintent_telemetry_target_up", (("layer", "host"), ("target", "h3")))]
        assert up == (1.0 if ok else 0.0)
    # 10, +5, reset (+2), unknown (absent, not 0), +4
    assert seen == [10, 15, 17, None, 21]
    assert totals.resets == 1
    assert _exported(totals)[("netintent_telemetry_counter_resets_total", ())] == 1


def test_export_label_values_are_validated_names(compiled):
    repo, desired = compiled
    ix = build_index(repo, desired)
    totals = Totals()
    totals.add(aggregate([TargetRead("host", "h3", True, tuple(parse_host("h3", _host_output(
        refused_elems=[("10.50.2.21", "10.50.1.21", 8080, 5)]))))], ix, 1.0))
    for (_name, labels), _v in _exported(totals).items():
        for _k, v in labels:
            assert re.fullmatch(r"[A-Za-z0-9_.-]*", v), v


def test_pre_rendered_text_is_what_the_collector_yields(compiled):
    from prometheus_client.parser import text_string_to_metric_families

    from reconciler.telemetry.export import render_text
    repo, desired, = compiled
    ix = build_index(repo, desired)
    totals = Totals()
    totals.add(aggregate([TargetRead("host", "h3", True, tuple(parse_host("h3", _host_output(
        refused_elems=[("10.50.2.21", "10.50.1.21", 8080, 5)])))),
        TargetRead("host", "h4", False, error="down")], ix, 1.0))
    text = {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(render_text(totals).decode()) for s in fam.samples}
    assert text == _exported(totals)


def test_the_daemon_metrics_carry_the_telemetry_series(compiled):
    from reconciler.service.metrics import Metrics
    from reconciler.telemetry.service import TelemetryService
    repo, desired = compiled
    ix = build_index(repo, desired)
    m = Metrics()
    svc = TelemetryService(lambda: None, lambda _loaded: 0.0, m.extra)
    svc.totals.add(aggregate([TargetRead("host", "h3", True, tuple(parse_host("h3", _host_output())))], ix, 1.0))
    body = m.render().decode()
    assert "reconciler_runs_total" in body or "reconciler_leader" in body
    assert 'netintent_app_packets_total{app="shop",layer="host",port="grpc",service="api",target="h3",' \
           'verdict="accept"} 12.0' in body


def test_top_json_gives_unknown_shares_for_unreachable_targets_never_zero(tmp_path, capsys):
    from reconciler.cli import main
    inv = yaml.safe_load((EXAMPLES / "inventory.yml").read_text())
    inv["all"]["vars"]["ansible_port"] = 1                 # nothing listens: connection refused at once
    inv["all"]["vars"].pop("netintent_known_hosts", None)
    for group in inv["all"]["children"].values():
        for h in group["hosts"].values():
            h["ansible_host"] = "127.0.0.1"
    (tmp_path / "inv.yml").write_text(yaml.safe_dump(inv))
    rc = main(["top", str(EXAMPLES), "--inventory", str(tmp_path / "inv.yml"), "--json", "--timeout", "20"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 2
    assert {t["status"] for t in out["targets"]} == {"unknown"} and len(out["targets"]) == 11
    assert not out["series"]                                # nothing made up as zero
    assert {u["layer"] for u in out["unknown"]["shop"]} == {"host", "hypervisor", "switch"}
    assert all(u["value"] == "unknown" for us in out["unknown"].values() for u in us)
