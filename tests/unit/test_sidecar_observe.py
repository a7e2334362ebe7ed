"""Pure tests of the sidecar driver's read-back: a real CSDS dump (captured from a grpcio
1.85 workload, tests/fixtures/sidecar/csds_w1_nack.json: shop split 90/10 with timeout and
retries, billing's cluster NACKed after it turned mTLS strict without certificates) is
normalised into exactly the specs compile produces; the NACK is reported with the client's
error and the last accepted spec; stale routes/endpoints are dropped; helpers for targets,
CSDS addresses and NACKed keys."""
from __future__ import annotations

import json
from pathlib import Path

from envoy.service.status.v3 import csds_pb2
from google.protobuf import json_format

from reconciler.drivers.base import Target
from reconciler.drivers.sidecar import SidecarDriver, csds_address, sidecar_targets
from reconciler.drivers.sidecar_csds import drop_stale, from_csds
from reconciler.intents.models import Inventory, InventoryHost
from reconciler.model import Layer, ResourceKey, thaw
from reconciler.xds import csds
from reconciler.xds import resources as R

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "sidecar" / "csds_w1_nack.json"
NET, PORT = "127.77.1.", 18080


def _entries():
    resp = json_format.ParseDict(json.loads(FIXTURE.read_text()), csds_pb2.ClientStatusResponse())
    return csds.parse(resp)


def _desired(mtls_billing: str):
    import sys
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
    from test_xds_nack import billing_app
    from xds_helpers import compile_nodes, shop_app
    shop = shop_app(NET, PORT, split={"v1": 90, "v2": 10}, web_address="127.0.0.1", timeout_ms=2000, retries=2)
    nodes = compile_nodes({"shop": shop, "billing": billing_app(NET, PORT, mtls_billing)}, ("w1", "a1", "a2", "l1"))
    return {r.key: thaw(r.spec) for r in nodes["w1"] if r.key.kind != "server-listener"}


def test_csds_dump_normalises_to_compiled_specs():
    found, asked, errors = from_csds("w1", _entries())
    have = {k: spec for k, (_, _, spec) in found.items()}
    # what the client holds is exactly the config before billing's strict change
    assert have == _desired("disable")
    # and billing's strict cluster is the one difference from the current desired state
    want = _desired("strict")
    assert {k for k in want if want[k] != have.get(k)} == {
        ResourceKey(Layer.SIDECAR, "w1", "cluster", f"ledger.billing:{PORT}")}
    assert len(errors) == 1 and errors[0].startswith(f"NACKED CDS ledger.billing:{PORT}")
    assert "unrecognized certificate provider instance name: web.shop" in errors[0]
    assert (R.CLUSTER, f"ledger.billing:{PORT}") in asked
    assert R.lint((k.kind, k.name, s) for k, s in have.items()) == []


def test_stale_routes_and_endpoints_are_dropped():
    found, _, _ = from_csds("w1", _entries())
    # the ledger listener and cluster are gone; their route and endpoints stay cached
    for k in [k for k in found if k.name.startswith("ledger") and k.kind in ("listener", "cluster")]:
        del found[k]
    drop_stale(found, {})
    assert not [k for k in found if k.name.startswith("ledger")]
    assert {k.kind for k in found} == {"listener", "route", "cluster", "endpoints"}


def test_targets_and_csds_address():
    inv = Inventory(hosts={
        "h1": InventoryHost(name="h1", groups=("hosts", "sidecars"), vars={"ansible_host": "172.20.20.21"}),
        "h2": InventoryHost(name="h2", groups=("sidecars",), vars={"netintent_xds_node": "node-b",
                                                                  "netintent_csds": "10.0.0.2:9"}),
        "h3": InventoryHost(name="h3", groups=("hosts",))})
    ts = sidecar_targets(inv)
    assert [t.name for t in ts] == ["h1", "node-b"]
    assert csds_address(ts[0]) == "172.20.20.21:18000"
    assert csds_address(ts[1]) == "10.0.0.2:9"
    assert csds_address(Target("x", Layer.SIDECAR, {"netintent_csds_port": 7})) == "x:7"


def test_nacked_keys_prefer_the_named_resource():
    def cluster(name):
        a = R.to_proto("cluster", name, {"eds": name, "lb": "round_robin", "tls": None})
        from google.protobuf import any_pb2
        x = any_pb2.Any()
        x.Pack(a)
        return x
    old = {"api.shop:1": cluster("api.shop:1")}
    new = {"api.shop:1": cluster("api.shop:1"), "api.shop:1/v2": cluster("api.shop:1/v2")}
    named = SidecarDriver._nacked_keys("w1", R.CLUSTER, "resource index 1: api.shop:1/v2: bad", old, new)
    assert named == {"sidecar/w1/cluster/api.shop:1/v2"}
    # no name in the message: the resources that changed in the rejected version
    guessed = SidecarDriver._nacked_keys("w1", R.CLUSTER, "something went wrong", old, new)
    assert guessed == {"sidecar/w1/cluster/api.shop:1/v2"}
