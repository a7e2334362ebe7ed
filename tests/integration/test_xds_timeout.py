"""`traffic.<svc>.timeout_ms` and `retries` reach the client through the route.

A call whose own deadline is 8 s to a server that takes 5 s fails DEADLINE_EXCEEDED no later
than the intent's 2 s; raising the timeout in the intents to 20 s lets a 1.5 s call through.
(Measured here: grpcio 1.85 cuts such calls earlier than the configured value, see the
printed figure; the test only claims the upper bound.)
"""
from __future__ import annotations

from xds_helpers import compile_nodes, loopback_addr, shop_app, wait_until

HOSTS = ("w1", "a1", "a2")


def test_route_timeout_from_intent(mesh):
    net, port = loopback_addr()
    mesh.push(compile_nodes({"shop": shop_app(net, port, timeout_ms=2000, web_address="127.0.0.1")}, HOSTS))
    target = f"xds:///api.shop:{port}"
    mesh.start_api(net, port)
    w1 = mesh.start("w1", warm=[target])
    assert wait_until(lambda: not (t := w1.run(target, n=5, timeout_s=3))["errors"] and t, 15)

    slow = w1.run(target, n=4, timeout_s=8, sleep_ms=5000, concurrency=4)
    print(f"timeout_ms=2000: slow calls cut after {slow['elapsed_s']} s")
    assert slow["errors"] == {"DEADLINE_EXCEEDED": 4}, slow
    assert slow["elapsed_s"] < 2.5, slow  # the intent's 2 s, not the caller's 8 s

    mesh.push(compile_nodes({"shop": shop_app(net, port, timeout_ms=20000, web_address="127.0.0.1")}, HOSTS))
    ok = w1.run(target, n=4, timeout_s=5, sleep_ms=1500, concurrency=4)
    assert ok["errors"] == {} and sum(ok["servers"].values()) == 4, ok


def test_route_retries_from_intent(mesh):
    """`traffic.api.retries` -> RetryPolicy(unavailable): with servers failing every 2nd
    call, calls fail without retries and all succeed with retries: 2. The api servers here
    are plain gRPC servers (the client side is xDS): a retryable (trailers-only) failure
    crashes grpcio 1.85's xDS server, see labs/workloads/agent.py."""
    net, port = loopback_addr()
    mesh.push(compile_nodes({"shop": shop_app(net, port, web_address="127.0.0.1")}, HOSTS))
    target = f"xds:///api.shop:{port}"
    mesh.start_api(net, port, plain=True)
    w1 = mesh.start("w1", warm=[target])
    assert wait_until(lambda: not (t := w1.run(target, n=5, timeout_s=3))["errors"] and t, 15)

    flaky = w1.run(target, n=40, timeout_s=3, concurrency=1, fail_every=2)
    assert flaky["errors"].get("UNAVAILABLE", 0) >= 10, flaky

    mesh.push(compile_nodes({"shop": shop_app(net, port, retries=2, web_address="127.0.0.1")}, HOSTS))
    retried = w1.run(target, n=40, timeout_s=3, concurrency=1, fail_every=2)
    assert retried["errors"] == {} and sum(retried["servers"].values()) == 40, retried
