"""`reconciler verify` on the reference lab (labs/app-fabric.clab.yml, shared fixture): the example
intents applied through the real drivers (switch, hypervisor, host), observed by the real
drivers, verified, and every verdict confirmed with TCP from inside the namespaces (--probe).
Then hand-made changes on the devices, each named as a leak or a violation at the right hop,
and each confirmed by a probe. The sidecar layer and its gRPC probes: test_verify_grpc.py. Marked `lab`; run under the suite lock."""
from __future__ import annotations

import time

import pytest
from verify_fabric import Fabric

from reconciler.model import Layer
from reconciler.verify.compare import LEAK, VIOLATION

pytestmark = pytest.mark.lab
EXAMPLES = "examples/intents"
LAYERS = (Layer.SWITCH, Layer.HYPERVISOR, Layer.HOST)
NAMES = [layer.value for layer in LAYERS]
WEB, INVOICER, LEDGER = "shop/web@10.50.1.11", "billing/invoicer@10.50.2.11", "billing/ledger@10.50.2.21"
API1, API2, LEDGER_PG = "shop/api@10.50.1.21:8080", "shop/api@10.50.1.22:8080", "billing/ledger@10.50.2.21:5432"


def _finding(cmp, kind, src, dst):
    got = [f for f in cmp.findings if f.kind == kind and f.source.id == src and f.dest.id == dst]
    assert got, [(f.kind, f.source.id, f.dest.id) for f in cmp.findings]
    return got[0]


@pytest.fixture
def fabric(app_fabric_lab):
    fab = Fabric(app_fabric_lab, LAYERS)
    fab.converge()
    try:
        yield fab
    finally:
        app_fabric_lab.exec("h3", ["nft", "delete", "table", "inet", "handmade"], check=False)
        fab.converge()          # repairs every change made by hand below


def test_verify_agrees_with_probes_then_names_hand_made_changes(fabric):
    lab = fabric.lab
    cmp = fabric.verify()
    assert [f for f in cmp.findings if f.kind in (VIOLATION, LEAK)] == [], cmp.findings
    t0 = time.monotonic()
    probed, defects = fabric.probe(cmp)
    probe_s = time.monotonic() - t0
    assert probed >= 40 and defects == [], defects
    print(f"verify --probe on the reference lab: {probed} pairs in {probe_s:.1f} s")

    # an accept inserted ahead of the app's drop on h3: billing/ledger reaches shop/api's port
    listing = lab.exec("h3", ["nft", "-a", "list", "chain", "inet", "netintent_shop", "input"]).stdout
    # the first drop that holds port 8080 (the port's own drop when the table has one, else `@local drop`)
    drop_handle = next(line.rsplit("# handle ", 1)[1] for line in listing.splitlines() if " drop # handle " in line
                       and ("dport 8080" in line or line.strip().startswith("ip daddr @local ")))
    lab.exec("h3", ["nft", "insert", "rule", "inet", "netintent_shop", "input", "position", drop_handle,
                    "ip", "daddr", "@svc_api", "tcp", "dport", "8080", "accept"])
    cmp = fabric.verify()
    f = _finding(cmp, LEAK, LEDGER, API1)
    assert f.hops[0].device == "h3" and "ip daddr @svc_api tcp dport 8080 accept" in f.hops[0].rule
    assert fabric.probe(cmp, {(LEDGER, API1), (WEB, API1)})[1] == []
    fabric.converge()

    # billing's VLAN added to a wrong trunk (leaf1 toward hv2, which hosts no billing instance): hv2's
    # uplink isolation flow drops VLAN 102, so no pair changes (the model and the probes agree)
    trunks = lab.exec("leaf1", ["ovs-vsctl", "get", "port", "eth2", "trunks"]).stdout.strip().strip("[]").replace(" ", "")
    lab.exec("leaf1", ["ovs-vsctl", "set", "port", "eth2", f"trunks={trunks},102"])
    try:
        cmp = fabric.verify()
        assert [f for f in cmp.findings if f.kind in (VIOLATION, LEAK)] == [], cmp.findings
    except BaseException:
        lab.exec("leaf1", ["ovs-vsctl", "set", "port", "eth2", f"trunks={trunks}"])
        raise
    try:
        assert fabric.probe(cmp, {(INVOICER, LEDGER_PG), (INVOICER, API1), (LEDGER, API1)})[1] == []
    finally:      # a converge without prune would keep the extra VLAN: restore the shared lab by hand
        lab.exec("leaf1", ["ovs-vsctl", "set", "port", "eth2", f"trunks={trunks}"])

    # billing's VLAN moved off leaf1's trunk toward hv1: invoicer's segment is cut at that trunk
    lab.exec("leaf1", ["ovs-vsctl", "set", "port", "eth1", "trunks=101"])
    cmp = fabric.verify()
    f = _finding(cmp, VIOLATION, INVOICER, LEDGER_PG)
    assert (f.hops[0].device, f.hops[0].what, f.hops[0].rule) == ("leaf1", "vlan-trunk", "eth1:102")
    assert fabric.probe(cmp, {(INVOICER, LEDGER_PG), (WEB, API1)})[1] == []
    fabric.converge()

    # leaf1's flood entry toward leaf2 removed for shop's VNI: h1 cannot resolve h5 over VXLAN
    lab.exec("leaf1", ["bridge", "fdb", "del", "00:00:00:00:00:00", "dev", "vxlan5001", "dst", "10.255.0.2"])
    for host in ("h1", "h5"):
        lab.exec(host, ["ip", "neigh", "flush", "all"])
    cmp = fabric.verify()
    f = _finding(cmp, VIOLATION, WEB, API2)
    assert (f.hops[0].device, f.hops[0].rule) == ("leaf1", "vxlan5001")
    # probed alone: any ARP from h5 meanwhile (e.g. answering another caller) would fill h1's
    # pending neighbour entry and mask the missing flood entry (see docs/verify.md)
    assert not any(f.dest.id == API2 and f.source.id == INVOICER for f in cmp.findings)   # routed: no VXLAN
    assert fabric.probe(cmp, {(WEB, API2)})[1] == []
    fabric.converge()


def test_foreign_table_with_earlier_priority(fabric):
    lab = fabric.lab
    # accept at an earlier priority does not bypass the netintent table's drop (nft semantics)
    lab.exec("h3", ["nft", "-f", "-"], input="table inet handmade {\n chain input { type filter hook input "
             "priority -10; policy accept; tcp dport 8080 accept; }\n}\n")
    cmp = fabric.verify()
    assert [f for f in cmp.findings if f.kind in (VIOLATION, LEAK)] == []
    assert fabric.probe(cmp, {(LEDGER, API1), (WEB, API1)})[1] == []
    # a drop at an earlier priority blocks the allowed callers: the host driver reports the foreign
    # table (owned=False, drivers/ansible/nft_foreign.py) and the model names its rule as the blocking hop
    lab.exec("h3", ["nft", "delete", "table", "inet", "handmade"])
    lab.exec("h3", ["nft", "-f", "-"], input="table inet handmade {\n chain input { type filter hook input "
             "priority -10; policy accept; tcp dport 8080 drop; }\n}\n")
    cmp = fabric.verify()
    f = _finding(cmp, VIOLATION, WEB, API1)
    assert f.hops[0].device == "h3" and f.hops[0].rule.startswith("inet handmade input #1")
    assert "priority -10" in f.hops[0].detail
    assert fabric.probe(cmp, {(WEB, API1), (INVOICER, API1)})[1] == []


def test_cli_verify_probe_on_the_reference_lab(fabric, capsys):
    from reconciler.cli import main
    t0 = time.monotonic()
    code = main(["verify", EXAMPLES, "--inventory", str(fabric.lab.inventory_path), "--layers", ",".join(NAMES),
                 "--probe"])
    took = time.monotonic() - t0
    out = capsys.readouterr().out
    assert code == 0, out
    assert "0 violation(s), 0 leak(s), 0 unknown: verified" in out and ", 0 model defect(s)" in out
    print(f"reconciler verify --probe (observe + verify + probe): {took:.1f} s")
