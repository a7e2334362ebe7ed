"""Sidecar check 4: stop and restart the ADS server.

While the server is down the clients keep serving their last config. A restarted server
(fresh state, same address) that has no snapshot for a node sends it nothing, so the node
keeps its config after reconnecting; observe adopts what the nodes hold (the clients ACK
it, calls go on); once the reconciler sets the snapshots again (here with a changed split)
every client converges to it.
"""
from __future__ import annotations

import time

from xds_helpers import WEB_ID, compile_nodes, loopback_addr, share, shop_app, wait_until

from reconciler.status import Outcome

HOSTS = ("w1", "a1", "a2", "b1")


def _clean(tally, n):
    return not tally["errors"] and sum(tally["servers"].values()) == n


def test_ads_restart_keeps_config_then_converges(mesh):
    net, port = loopback_addr()
    mesh.push(compile_nodes({"shop": shop_app(net, port, split={"v1": 90, "v2": 10}, mtls="strict")}, HOSTS))
    target = f"xds:///api.shop:{port}"
    mesh.start_api(net, port, mtls=True)
    w1 = mesh.start("w1", {"web.shop": WEB_ID}, warm=[target])
    assert wait_until(lambda: _clean(w1.run(target, n=100, timeout_s=3), 100), 15)

    mesh.server.stop()
    assert mesh.server.open_streams == 0
    down = time.monotonic()
    while time.monotonic() - down < 2.0:  # clients keep serving without their control plane
        t = w1.run(target, n=100, timeout_s=2)
        assert _clean(t, 100), t
        time.sleep(0.2)

    mesh.restart_server()  # fresh state, same port
    assert wait_until(lambda: all(mesh.cache.connected(n) for n in ("w1", "a1", "a2")), 20), \
        "clients did not reconnect"
    t = w1.run(target, n=1000, timeout_s=2)
    assert _clean(t, 1000) and abs(share(t, "v1") - 0.90) <= 0.05, t

    # observe adopts what each node holds, so the new server answers with the same config
    obs = mesh.driver.observe([mesh.target(n) for n in ("w1", "a1", "a2")])
    assert all(o.ok for o in obs.values()), obs
    adopted = {n: mesh.cache.versions(n) for n in ("w1", "a1", "a2")}
    st = mesh.cache.wait_for({n: {t: v for t, v in vs.items() if n == "w1" or t.endswith("Listener")}
                              for n, vs in adopted.items()}, 5)
    assert all(s.state.settled for ts in st.values() for s in ts.values()), st
    assert all(s.state.name == "ACKED" for ts in st.values() for s in ts.values()), st
    t = w1.run(target, n=200, timeout_s=2)
    assert _clean(t, 200), t

    res = mesh.push(compile_nodes(
        {"shop": shop_app(net, port, split={"v1": 50, "v2": 50}, mtls="strict")}, HOSTS))
    # the adopted snapshots of a1/a2 are byte-identical to the compiled ones: no push there
    assert {n: r.outcome for n, r in res.items() if n != "b1"} == \
        {"w1": Outcome.APPLIED, "a1": Outcome.NOOP, "a2": Outcome.NOOP}, res
    t = w1.run(target, n=1000, timeout_s=2)
    assert _clean(t, 1000) and abs(share(t, "v1") - 0.50) <= 0.05, t
    obs = mesh.driver.observe([mesh.target("w1")])["w1"]
    assert obs.ok and obs.error == "", obs.error
