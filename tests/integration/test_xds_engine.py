"""The engine's closed loop over the sidecar layer with real grpcio workloads.

Engine(observe via CSDS -> plan -> apply via ADS -> observe again) converges two
applications, a second run writes nothing, a hand edit on the ADS server (another writer
serving a broken route) is drift of that application and gets repaired, and a NACK is a
failed target naming the application while the other application stays in sync.
"""
from __future__ import annotations

from test_xds_nack import billing_app
from xds_helpers import compile_nodes, loopback_addr, shop_app, wait_until

from reconciler.engine import Engine
from reconciler.events import EventKind
from reconciler.model import Layer, State
from reconciler.status import Outcome
from reconciler.xds import resources as R

NODES = ("w1", "a1", "a2", "l1")


def test_engine_converges_repairs_and_reports_nack(mesh):
    net, port = loopback_addr()
    shop = shop_app(net, port, split={"v1": 70, "v2": 30}, web_address="127.0.0.1")
    api, ledger = f"xds:///api.shop:{port}", f"xds:///ledger.billing:{port}"
    mesh.start_api(net, port)
    mesh.start("l1", serve=[("ledger", net + "31", port)])
    w1 = mesh.start("w1", warm=[api, ledger])
    targets = {Layer.SIDECAR: [mesh.target(n) for n in NODES]}
    engine = Engine({Layer.SIDECAR: mesh.driver}, attempts=3, backoff_s=0.2)

    def desired(mtls: str) -> State:
        nodes = compile_nodes({"shop": shop, "billing": billing_app(net, port, mtls)}, NODES)
        # w1 runs no server: web's server listener is not part of this lab
        return State.of(r for n in NODES for r in nodes.get(n, ()) if not
                        (n == "w1" and r.key.kind == "server-listener"))

    want = desired("disable")
    observed_events: list = []
    engine.bus.subscribe(lambda ev: observed_events.append(ev.target) if ev.kind is EventKind.OBSERVED else None)
    rep = engine.run(want, targets, prune=True)
    assert rep.converged, rep.to_json()
    assert rep.writes > 0
    # each node is observed once, before the push: after it, the driver's CSDS read-back is the
    # observation (the engine does not observe every node again)
    assert sorted(observed_events) == sorted(NODES), observed_events
    assert wait_until(lambda: not w1.run(api, n=50)["errors"] and not w1.run(ledger, n=20)["errors"], 10)
    # what the node's clients subscribe to, as the server records it (names, or a wildcard)
    subs = mesh.cache.subscriptions("w1")
    assert f"api.shop:{port}" in (subs[R.LISTENER] or ()), subs
    assert engine.drivers[Layer.SIDECAR].observe([mesh.target("w1")])["w1"].resources == \
        engine.readbacks[(Layer.SIDECAR, "w1")]

    again = engine.run(want, targets, prune=True)
    assert again.converged and again.writes == 0 and again.initial.empty

    # another writer serves shop's route with domains that cannot match: drift of shop
    snap = mesh.cache.resources("w1")
    name = f"api.shop:{port}"
    kind, _, spec = R.from_any(snap[R.ROUTE][name])
    snap[R.ROUTE][name] = R.to_proto("route", name, dict(spec, domains=["api.shop"]))
    mesh.cache.set_node("w1", snap)
    assert wait_until(lambda: w1.run(api, n=5, timeout_s=1)["errors"], 5)
    fixed = engine.run(want, targets, prune=True)
    assert [str(c.key) for c in fixed.initial.changes] == [f"sidecar/w1/route/{name}"]
    assert fixed.initial.changes[0].app == "shop"
    assert fixed.converged, fixed.to_json()
    assert wait_until(lambda: not w1.run(api, n=50)["errors"], 5)

    # billing turns strict without certificates: both its nodes NACK, shop stays in sync
    bad = engine.run(desired("strict"), targets, prune=True)
    assert not bad.converged
    failed = {t: r for (layer, t), r in bad.targets.items() if r.outcome is Outcome.FAILED}
    assert set(failed) == {"w1", "l1"}, bad.to_json()
    assert all("NACK" in r.error for r in failed.values())
    assert {c.app for c in bad.residual.changes} == {"billing"}
    assert not w1.run(api, n=50)["errors"] and not w1.run(ledger, n=20)["errors"]
