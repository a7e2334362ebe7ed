"""`reconciler verify --probe` with the sidecar layer on the reference lab (labs/app-fabric.clab.yml,
shared fixture, with its gRPC workloads and lab ADS server): the example intents applied through
the real drivers of all four layers, observed, verified, and every decided verdict confirmed with
TCP and real gRPC calls; the model and the probes agree on every pair. The examples' two pairs the
model leaves `unknown` are then confirmed for the reason it gives: dash -> collector (same host)
leaves from the subnet's primary address (read from h4 here, the model then says dropped at h4's
nftables, and the gRPC probe agrees), and invoicer -> ledger's 500 ms route timeout ends every call
at once (grpcio's early timeout; a 2 s timeout pushed through the ADS server is delivered, and the
probe agrees). Then an RBAC principal added through the ADS server (a modified snapshot for h3
pushed through the relay) is named as a leak at the sidecar's RBAC hop, and a direct gRPC call
with the caller's own certificate agrees; a principal removed the same way (shop/web's) is a
violation at that hop, and web's own gRPC calls agree. Marked `lab`; run under the suite lock.
"""
from __future__ import annotations

import json
import time

import pytest
from verify_fabric import Fabric

from reconciler.lab import grpc_checks
from reconciler.model import Layer, Resource, thaw
from reconciler.verify.compare import LEAK, UNKNOWN_KIND, VIOLATION
from reconciler.verify.grpc_direct import direct_pairs
from reconciler.verify.grpc_probe import callers_of, rpc_groups, servers_of
from reconciler.verify.probe import pick, probe
from reconciler.verify.verdict import DELIVERED, DROPPED, DestResult

pytestmark = pytest.mark.lab
EXAMPLES = "examples/intents"
LAYERS = (Layer.SWITCH, Layer.HYPERVISOR, Layer.HOST, Layer.SIDECAR)
NAMES = [layer.value for layer in LAYERS]
LEDGER, API1 = "billing/ledger@10.50.2.21", "shop/api@10.50.1.21:8080"
INVOICER, LEDGER_PG = "billing/invoicer@10.50.2.11", "billing/ledger@10.50.2.21:5432"
DASH, COLLECTOR = "analytics/dash@10.50.3.12", "analytics/collector@10.50.3.11:9000"
LEDGER_ID = "spiffe://corp.example/billing/ledger"
WEB, API2 = "shop/web@10.50.1.11", "shop/api@10.50.1.22:8080"
WEB_ID = "spiffe://corp.example/shop/web"


def only(cmp, pairs: set[tuple[str, str]]) -> list[DestResult]:
    return [DestResult(r.dest, [p for p in r.pairs if (p[0].id, r.dest.id) in pairs]) for r in cmp.results]


def pair(cmp, src: str, dst: str):
    return next(v for r in cmp.results for s, _, v in r.pairs if s.id == src and r.dest.id == dst)


@pytest.fixture
def fabric(app_fabric_lab):
    fab = Fabric(app_fabric_lab, LAYERS)
    fab.converge()
    try:
        yield fab
    finally:
        fab.converge()          # repairs the nft rule and the RBAC principal added below


def test_verify_probe_confirms_sidecar_verdicts_with_grpc(fabric):
    cmp = fabric.verify()
    assert [f for f in cmp.findings if f.kind in (VIOLATION, LEAK)] == [], cmp.findings
    assert sorted((f.kind, f.source.id, f.dest.id, f.hops[0].what) for f in cmp.findings) == [
        (UNKNOWN_KIND, DASH, COLLECTOR, "source-address"), (UNKNOWN_KIND, INVOICER, LEDGER_PG, "xds-client")]
    groups, _ = rpc_groups(pick(cmp.results), servers_of(fabric.lab), callers_of(fabric.lab))
    assert sum(len(g.pairs) for g in groups) >= 3, groups      # web and invoicer -> both api instances, ...
    t0 = time.monotonic()
    probed, defects = probe(fabric.lab, cmp.results)
    took = time.monotonic() - t0
    assert probed >= 40 and defects == [], defects
    print(f"verify --probe (TCP + gRPC) on the reference lab: {probed} pairs, "
          f"{sum(len(g.pairs) for g in groups)} by gRPC in {len(groups)} target(s), {took:.1f} s")


def _with_primary_flags(lab, host: str):
    """Observed resources with `ip addr`'s secondary flag of `host`'s addresses (the host layer's
    observation leaves it out): what the model needs to know the kernel's source for local calls."""
    info = json.loads(lab.exec(host, ["ip", "-j", "-4", "addr", "show", "dev", "eth1"]).stdout)
    secondary = {a["local"]: bool(a.get("secondary")) for i in info for a in i.get("addr_info", ())}

    def edit(resources):
        out = []
        for r in resources:
            if r.key.target == host and r.key.kind == "address" and r.spec.get("address") in secondary:
                r = Resource(r.key, {**thaw(r.spec), "secondary": secondary[r.spec["address"]]}, r.app, r.owned)
            out.append(r)
        return out
    return edit, secondary


def test_the_unknown_pairs_fail_for_the_reason_the_model_gives(fabric):
    lab = fabric.lab
    # dash -> collector on h4: the call leaves from the subnet's primary address
    edit, secondary = _with_primary_flags(lab, "h4")
    assert secondary == {"10.50.3.11": False, "10.50.3.12": True}, secondary   # collector's address is primary
    cmp = fabric.verify(edit)
    v = pair(cmp, DASH, COLLECTOR)
    assert (v.l4, v.rpc) == (DELIVERED, DROPPED), v          # a bound connect works, the call does not
    [f] = [f for f in cmp.findings if f.source.id == DASH and f.dest.id == COLLECTOR]
    assert f.kind == VIOLATION and (f.hops[0].device, f.hops[0].what, f.hops[0].leg) == ("h4", "nftables", "call")
    assert probe(lab, only(cmp, {(DASH, COLLECTOR)}))[1] == []        # the gRPC calls are not answered
    refused = lab.exec("h4", ["nft", "list", "set", "inet", "netintent_analytics", "refused"]).stdout
    assert "10.50.3.11 . 10.50.3.11 . 9000" in refused, refused       # h4's nftables refused them, from there

    # invoicer -> ledger: every call under the 500 ms route timeout ends at once, before the server
    tally = grpc_checks.calls(lab, "h2", "xds:///ledger.billing:5432", n=20, timeout_s=1.0, concurrency=20)
    assert tally["servers"] == {} and tally["errors"] == {"DEADLINE_EXCEEDED": 20}, tally
    _push_route_timeout(lab, "h2", "ledger.billing:5432", 2000)      # behind the reconciler's back
    cmp = fabric.verify()
    v = pair(cmp, INVOICER, LEDGER_PG)
    assert (v.l4, v.rpc) == (DELIVERED, DELIVERED), v
    probed, defects = probe(lab, only(cmp, {(INVOICER, LEDGER_PG)}))
    assert probed == 1 and defects == [], defects


def _push_route_timeout(lab, node: str, route: str, ms: int) -> None:
    from reconciler.xds import resources as R
    from reconciler.xds.relay import RemoteCache, control_path

    cache = RemoteCache(control_path(lab.ads_address))
    try:
        snap = cache.resources(node)
        kind, name, spec = R.from_any(snap[R.ROUTE][route])
        snap[R.ROUTE][route] = R.to_proto(kind, name, dict(spec, timeout_ms=ms))
        versions = cache.set_node(node, snap, None)
        cache.wait_for({node: {R.ROUTE: versions[R.ROUTE]}}, 10.0)     # the workload holds it now
    finally:
        cache.close()


def test_rbac_principal_changed_through_ads_is_a_leak_or_a_violation_at_the_sidecar(fabric):
    from reconciler.names import server_listener_name

    lab = fabric.lab
    # L4 opened by hand on h3 (an accept ahead of the app's drop): the sidecar's RBAC still refuses ledger
    listing = lab.exec("h3", ["nft", "-a", "list", "chain", "inet", "netintent_shop", "input"]).stdout
    drop_handle = next(line.rsplit("# handle ", 1)[1] for line in listing.splitlines() if " drop # handle " in line
                       and ("dport 8080" in line or line.strip().startswith("ip daddr @local ")))
    lab.exec("h3", ["nft", "insert", "rule", "inet", "netintent_shop", "input", "position", drop_handle,
                    "ip", "daddr", "@svc_api", "tcp", "dport", "8080", "accept"])
    cmp = fabric.verify()
    v = pair(cmp, LEDGER, API1)
    assert (v.l4, v.rpc) == (DELIVERED, DROPPED), v
    [f] = [f for f in cmp.findings if f.kind == LEAK and f.source.id == LEDGER and f.dest.id == API1]
    assert f.extent == "l4", f          # the connect reaches the port; the call is refused
    assert direct_pairs(pick(only(cmp, {(LEDGER, API1)})), callers_of(lab))[0], "ledger's call is not probed"
    assert probe(lab, only(cmp, {(LEDGER, API1)}))[1] == []        # the call is refused (PERMISSION_DENIED)

    # the RBAC principal of billing/ledger added to api@h3's server listener through the lab ADS server
    name = server_listener_name("10.50.1.21", 8080)
    _edit_rbac(lab, "h3", name, lambda ps: [*ps, LEDGER_ID])
    cmp = fabric.verify()
    [f] = [f for f in cmp.findings if f.kind == LEAK and f.source.id == LEDGER and f.dest.id == API1]
    assert f.extent == "end-to-end", f
    rbac_hops = [h for h in f.hops if h.layer == "sidecar" and h.what == "rbac"]
    assert rbac_hops and rbac_hops[0].rule == f"principal {LEDGER_ID}", f.hops
    assert probe(lab, only(cmp, {(LEDGER, API1)}))[1] == []        # now the call is answered: the probe agrees

    # shop/web's principal removed the same way: web's calls to api@h3 are refused (a violation at RBAC)
    _edit_rbac(lab, "h3", name, lambda ps: [p for p in ps if p != WEB_ID])
    cmp = fabric.verify()
    [f] = [f for f in cmp.findings if f.source.id == WEB and f.dest.id == API1]
    assert f.kind == VIOLATION and (f.hops[0].layer, f.hops[0].what) == ("sidecar", "rbac"), f
    probed, defects = probe(lab, only(cmp, {(WEB, API1), (WEB, API2)}))
    assert probed == 2 and defects == [], defects       # v1 refuses every call, v2 answers its share


def _edit_rbac(lab, node: str, listener: str, edit) -> None:
    from reconciler.xds import resources as R
    from reconciler.xds.relay import RemoteCache, control_path

    cache = RemoteCache(control_path(lab.ads_address))
    try:
        snap = cache.resources(node)
        kind, _, spec = R.from_any(snap[R.LISTENER][listener])
        rbac = dict(spec["rbac"], principals=edit(list(spec["rbac"]["principals"])))
        snap[R.LISTENER][listener] = R.to_proto(kind, listener, dict(spec, rbac=rbac))
        versions = cache.set_node(node, snap, None)
        cache.wait_for({node: {R.LISTENER: versions[R.LISTENER]}}, 10.0)    # the workload holds it now
    finally:
        cache.close()
