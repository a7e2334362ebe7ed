"""Sidecar check 3: a resource a client NACKs is a failure of its application only.

Billing turns on `mtls: strict` while its workloads have no certificate provider for it:
the caller's node NACKs billing's cluster and the server's node NACKs billing's server
listener. The driver reports FAILED with the client's error detail and exactly those keys;
both clients keep serving the last accepted (plaintext) version, so billing's calls still
work; shop's resources on the same node stay in sync and its calls are unaffected. CSDS
shows the NACK, and observe shows billing's resources (only) as drifted.
"""
from __future__ import annotations

from xds_helpers import compile_nodes, loopback_addr, shop_app, wait_until

from reconciler.intents.models import Application
from reconciler.model import thaw
from reconciler.status import Outcome

HOSTS = ("w1", "a1", "a2", "l1")


def billing_app(net: str, port: int, mtls: str) -> Application:
    return Application.model_validate({
        "apiVersion": "netintent/v1", "kind": "Application", "metadata": {"name": "billing"},
        "spec": {"segment": {"vni": 5002, "subnet": net + "0/24"},
                 "services": {"ledger": {"instances": [{"host": "l1", "address": net + "31"}],
                                         "ports": [{"name": "grpc", "port": port}]}},
                 "policy": {"allow": [{"from": "shop/web", "to": "ledger", "ports": ["grpc"]}]},
                 "traffic": {"ledger": {"mtls": mtls}}}})


def _ok(w, target, n=50):
    t = w.run(target, n=n, timeout_s=3)
    return t if not t["errors"] and sum(t["servers"].values()) == n else None


def test_nack_is_a_failure_of_its_application_only(mesh):
    net, port = loopback_addr()
    # plaintext RBAC allows callers by source address: on loopback that is 127.0.0.1
    shop = shop_app(net, port, split={"v1": 50, "v2": 50}, web_address="127.0.0.1")
    nodes = compile_nodes({"shop": shop, "billing": billing_app(net, port, "disable")}, HOSTS)
    mesh.push(nodes)
    api, ledger = f"xds:///api.shop:{port}", f"xds:///ledger.billing:{port}"
    mesh.start_api(net, port)
    mesh.start("l1", serve=[("ledger", net + "31", port)])
    w1 = mesh.start("w1", warm=[api, ledger])
    assert wait_until(lambda: _ok(w1, api) and _ok(w1, ledger), 15), "mesh never worked"

    nodes = compile_nodes({"shop": shop, "billing": billing_app(net, port, "strict")}, HOSTS)
    res = mesh.push(nodes)

    cluster_key = f"sidecar/w1/cluster/ledger.billing:{port}"
    server_key = f"sidecar/l1/server-listener/grpc/server?xds.resource.listening_address={net}31:{port}"
    assert res["w1"].outcome is Outcome.FAILED, res["w1"]
    assert res["w1"].failed_keys == (cluster_key,), res["w1"]
    assert "web.shop" in res["w1"].error and "NACK" in res["w1"].error
    assert res["l1"].outcome is Outcome.FAILED, res["l1"]
    assert res["l1"].failed_keys == (server_key,), res["l1"]
    assert res["a1"].outcome is Outcome.NOOP and res["a2"].outcome is Outcome.NOOP

    # nothing else breaks: shop still works, and billing runs on its last accepted version
    assert _ok(w1, api, 200), "shop broke"
    assert _ok(w1, ledger, 50), "billing lost its last accepted config"

    # CSDS: the client holds the old cluster, marked NACKED with the error
    entry = next(e for e in w1.csds() if e.name == f"ledger.billing:{port}" and e.type_url.endswith("Cluster"))
    assert entry.status == "NACKED" and entry.error

    obs = mesh.driver.observe([mesh.target("w1"), mesh.target("l1")])
    assert "NACKED" in obs["w1"].error
    desired = {r.key: r for n in ("w1", "l1") for r in nodes[n]}
    drifted = {str(r.key) for n in ("w1", "l1") for r in obs[n].resources
               if r.key in desired and thaw(r.spec) != thaw(desired[r.key].spec)}
    assert drifted == {cluster_key, server_key}
    apps = {r.app for n in ("w1", "l1") for r in obs[n].resources if str(r.key) in drifted}
    assert apps == {"billing"}
    # every shop client resource on w1 is exactly as desired (w1 runs no server here, so
    # web's server listener is, correctly, reported missing)
    shop_obs = {r.key: thaw(r.spec) for r in obs["w1"].resources if r.app == "shop"}
    assert shop_obs == {r.key: thaw(r.spec) for r in nodes["w1"]
                        if r.app == "shop" and r.key.kind != "server-listener"}
