"""compile: table-driven expectations over the example intents, plus incremental behaviour."""
from pathlib import Path

import pytest

from reconciler.compile import CompileConflicts, Compiler, compile_repo
from reconciler.intents.validate import load_repo
from reconciler.model import Layer, ResourceKey
from reconciler.names import app_cookie

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "intents"


@pytest.fixture(scope="module")
def repo():
    return load_repo(EXAMPLES)


@pytest.fixture(scope="module")
def desired(repo):
    return compile_repo(repo)


# (key, expected subset of the spec) -- what each layer must want for the example apps
EXPECTED = [
    ("host/h3/address/eth1:10.50.1.21", {"interface": "eth1", "address": "10.50.1.21", "prefixlen": 24}),
    # identity -> addresses: shop/api on h3 accepts shop/web and billing/invoicer (export)
    ("host/h3/nft-set/netintent_shop/allow_api_grpc", {"elements": ("10.50.1.11", "10.50.2.11")}),
    ("host/h1/nft-set/netintent_shop/allow_web_http", {"elements": ()}),  # nobody may call web
    ("host/h4/nft-set/netintent_analytics/allow_collector_ingest", {"elements": ("10.50.3.12",)}),
    ("host/h2/route/10.50.1.0/24", {"gateway": "10.50.2.1", "interface": "eth1"}),
    ("host/h3/route/10.50.2.0/24", {"gateway": "10.50.1.1"}),
    ("hypervisor/hv1/ovs-port/eth2", {"tag": 101}),
    ("hypervisor/hv1/ovs-port/eth3", {"tag": 102}),
    ("hypervisor/hv1/trunk-vlan/eth1:101", {"vlan": 101}),
    ("hypervisor/hv1/trunk-vlan/eth1:102", {"vlan": 102}),
    ("hypervisor/hv1/ovs-flow/priority=200,ip,in_port=eth2,nw_src=10.50.1.11", {"actions": "NORMAL", "cookie": app_cookie("shop")}),
    ("hypervisor/hv1/ovs-flow/priority=100,in_port=eth2", {"actions": "drop"}),
    ("switch/leaf1/vlan-trunk/eth1:101", {"vlan": 101}),
    ("switch/leaf1/vlan-trunk/eth2:103", {"vlan": 103}),
    ("switch/leaf1/vxlan/vxlan5001", {"vni": 5001, "vlan": 101, "local": "10.255.0.1", "flood": ("10.255.0.2",)}),
    ("switch/leaf2/vxlan/vxlan5002", {"local": "10.255.0.2", "flood": ("10.255.0.1",)}),
    ("switch/leaf1/vxlan/vxlan5003", {"flood": ()}),  # analytics lives under leaf1 only
    ("switch/leaf1/bgp/65001", {"asn": 65001, "router_id": "10.255.0.1", "neighbors": ("eth3",)}),
]
ABSENT = [
    "switch/leaf2/vxlan/vxlan5003",        # analytics is not present under leaf2
    "host/h4/route/10.50.1.0/24",          # analytics talks to nobody outside
    "hypervisor/hv3/trunk-vlan/eth1:103",  # nothing of analytics below hv3
    "switch/leaf1/vlan-trunk/eth1:103",
]


@pytest.mark.parametrize("key,subset", EXPECTED, ids=[k for k, _ in EXPECTED])
def test_compiled_resource(desired, key, subset):
    r = desired.get(ResourceKey.parse(key))
    assert r is not None, f"{key} not compiled"
    for field, value in subset.items():
        assert r.spec[field] == value, f"{key}.{field}"


@pytest.mark.parametrize("key", ABSENT)
def test_not_compiled(desired, key):
    assert desired.get(ResourceKey.parse(key)) is None


def test_every_resource_is_tagged_and_layered(desired):
    for r in desired:
        assert r.app in {"shop", "billing", "analytics", ""}
        assert r.key.layer in Layer
    assert {r.key.layer for r in desired} >= {Layer.SWITCH, Layer.HYPERVISOR, Layer.HOST}


def test_compile_is_deterministic(repo):
    a, b = compile_repo(repo), compile_repo(repo)
    assert a.to_json() == b.to_json()


def test_incremental_recompiles_only_changed_and_related(repo):
    c = Compiler()
    first = c.compile(repo)
    assert set(c.last_compiled) == {"shop", "billing", "analytics"}
    c.compile(repo)
    assert c.last_compiled == ()
    shop = repo.apps["shop"]
    api = shop.spec.services["api"]
    new_api = api.model_copy(update={"ports": (api.ports[0].model_copy(update={"port": 8443}),)})
    new_shop = shop.model_copy(update={"spec": shop.spec.model_copy(update={"services": {**shop.spec.services, "api": new_api}})})
    repo2 = repo.model_copy(update={"apps": {**repo.apps, "shop": new_shop}})
    second = c.compile(repo2)
    # billing calls shop/api, so it is recompiled with shop; analytics is not
    assert set(c.last_compiled) == {"shop", "billing"}
    assert second == compile_repo(repo2)
    rule = [r for r in second.get(ResourceKey.parse("host/h3/nft-table/netintent_shop")).spec["chains"]["input"]["rules"]
            if r["match"].get("dport")]
    assert rule[0]["match"]["dport"] == 8443
    # removing an app drops its resources
    repo3 = repo.model_copy(update={"apps": {k: v for k, v in repo.apps.items() if k != "analytics"}})
    third = c.compile(repo3)
    assert not [r for r in third if r.app == "analytics"]
    assert len(third) < len(first)


def test_conflicting_resources_are_reported_not_merged(repo):
    # two apps claiming the same host interface produce the same hypervisor port key
    billing = repo.apps["billing"]
    inv = billing.spec.services["invoicer"].instances[0].model_copy(update={"host": "h1"})
    svc = billing.spec.services["invoicer"].model_copy(update={"instances": (inv,)})
    bad = billing.model_copy(update={"spec": billing.spec.model_copy(update={"services": {**billing.spec.services, "invoicer": svc}})})
    c = Compiler()
    before = c.compile(repo)
    with pytest.raises(CompileConflicts) as err:
        c.compile(repo.model_copy(update={"apps": {**repo.apps, "billing": bad}}))
    assert "hypervisor/hv1/ovs-port/eth2" in str(err.value) and "billing" in str(err.value)
    assert c.compile(repo) == before  # the failed compile left the cache consistent
