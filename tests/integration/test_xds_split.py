"""Sidecar check 1: a split change in the intents reaches real grpcio xDS clients fast.

90/10 -> 50/50: the push is ACKed and 1,000 calls from the client land within +/-5
percentage points of the new split, all within 2 s of the push. Only the node whose
resources changed gets a push; CSDS shows the new route.
"""
from __future__ import annotations

import time

from xds_helpers import WEB_ID, compile_nodes, loopback_addr, share, shop_app, wait_until

from reconciler.model import thaw
from reconciler.status import Outcome

HOSTS = ("w1", "a1", "a2", "b1")


def test_split_change_lands_within_two_seconds(mesh):
    net, port = loopback_addr()
    nodes = compile_nodes({"shop": shop_app(net, port, split={"v1": 90, "v2": 10}, mtls="strict")}, HOSTS)
    first = mesh.push(nodes)
    # nobody is connected yet: the snapshot is set and reported as not delivered
    assert first["w1"].outcome is Outcome.UNREACHABLE
    mesh.start_api(net, port, mtls=True)
    target = f"xds:///api.shop:{port}"
    w1 = mesh.start("w1", {"web.shop": WEB_ID},
                    serve=[("web", net + "11", port)], warm=[target])
    before = wait_until(lambda: (t := w1.run(target, n=1000, timeout_s=5)) and not t["errors"] and t,
                        timeout=15)
    assert before, "client never got a working config"
    assert abs(share(before, "v1") - 0.90) <= 0.05, before

    nodes = compile_nodes({"shop": shop_app(net, port, split={"v1": 50, "v2": 50}, mtls="strict")}, HOSTS)
    t0 = time.monotonic()
    res = mesh.push(nodes)
    t_ack = time.monotonic() - t0
    after = w1.run(target, n=1000, timeout_s=2)
    t_total = time.monotonic() - t0
    print(f"split 90/10 -> 50/50: ACK after {t_ack * 1000:.0f} ms, 1,000 calls done after "
          f"{t_total * 1000:.0f} ms, v1 share {share(after, 'v1'):.3f}")
    assert res["w1"].outcome is Outcome.APPLIED, res["w1"]
    # only the caller's route changed: the servers' nodes got no push
    assert res["a1"].outcome is Outcome.NOOP and res["a2"].outcome is Outcome.NOOP
    assert after["errors"] == {}, after
    assert abs(share(after, "v1") - 0.50) <= 0.05, after
    assert t_total <= 2.0, f"new split took {t_total:.2f}s to land"

    obs = mesh.driver.observe([mesh.target("w1")])["w1"]
    assert obs.ok, obs.error
    route = next(r for r in obs.resources if r.key.kind == "route")
    want = next(r for r in nodes["w1"] if r.key.kind == "route")
    assert thaw(route.spec) == thaw(want.spec)
    assert route.app == "shop"
    assert obs.error == ""
