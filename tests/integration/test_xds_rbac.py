"""Sidecar check 2: RBAC from the policy, identities from our CA, mTLS strict.

A caller whose SPIFFE identity the policy does not allow is refused by the server's RBAC
(PERMISSION_DENIED) even when it knows the route; the allowed caller succeeds and the
server sees its identity; a plaintext caller is refused by the TLS handshake. Allowing the
second caller in the intents lets it in after one push.
"""
from __future__ import annotations

import grpc
import pytest
from xds_helpers import BATCH_ID, WEB_ID, compile_nodes, loopback_addr, shop_app, wait_until

from reconciler.model import Layer, Resource, ResourceKey, thaw
from reconciler.status import Outcome

HOSTS = ("w1", "a1", "a2", "b1")


def _as_batch(resources):
    """w1's client-side resources, moved to node b1 with batch's certificate provider."""
    out = []
    for r in resources:
        spec = thaw(r.spec)
        if r.key.kind == "server-listener":
            continue
        if r.key.kind == "cluster" and spec["tls"]:
            spec["tls"]["cert_provider"] = spec["tls"]["ca_provider"] = "batch.shop"
        out.append(Resource(ResourceKey(Layer.SIDECAR, "b1", r.key.kind, r.key.name), spec, r.app))
    return out


def _start_with_certificates(mesh, net, port, target):
    """api (a1, a2), web (w1) and batch (b1), each with its own certificate; w1 and b1
    warm `target`. Returns (w1, b1)."""
    mesh.start_api(net, port, mtls=True)
    w1 = mesh.start("w1", {"web.shop": WEB_ID}, warm=[target])
    b1 = mesh.start("b1", {"batch.shop": BATCH_ID}, warm=[target])
    return w1, b1


def test_rbac_by_identity_with_mtls(mesh):
    net, port = loopback_addr()
    nodes = compile_nodes({"shop": shop_app(net, port, mtls="strict")}, HOSTS)
    # compile gives batch nothing to call api with, and api's RBAC names only web
    assert not [r for r in nodes.get("b1", []) if r.key.kind != "server-listener"]
    rbac = thaw(next(r for r in nodes["a1"] if r.key.kind == "server-listener").spec)["rbac"]
    assert rbac == {"principals": ["spiffe://test.example/shop/web"], "source_ips": []}
    nodes["b1"] = nodes.get("b1", []) + _as_batch(nodes["w1"])
    mesh.push(nodes)

    target = f"xds:///api.shop:{port}"
    w1, b1 = _start_with_certificates(mesh, net, port, target)

    ok = wait_until(lambda: (t := w1.run(target, n=20, timeout_s=3)) and not t["errors"] and t, 15)
    assert ok, "allowed caller never succeeded"
    assert sum(ok["servers"].values()) == 20

    denied = b1.run(target, n=20, timeout_s=3)
    assert denied["servers"] == {}, denied
    assert denied["errors"] == {"PERMISSION_DENIED": 20}, denied

    # plaintext straight to the server's address: refused by the TLS handshake
    with grpc.insecure_channel(f"{net}21:{port}") as ch:
        with pytest.raises(grpc.RpcError) as exc:
            ch.unary_unary("/netintent.lab.Echo/Call")(b"{}", timeout=3)
    assert exc.value.code() is grpc.StatusCode.UNAVAILABLE

    # the policy now allows batch: one push, and it gets in
    nodes = compile_nodes({"shop": shop_app(net, port, mtls="strict", allow_batch=True)}, HOSTS)
    res = mesh.push(nodes)
    assert res["a1"].outcome is Outcome.APPLIED and res["a2"].outcome is Outcome.APPLIED, res
    allowed = wait_until(lambda: (t := b1.run(target, n=20, timeout_s=3)) and not t["errors"] and t, 5)
    assert allowed and sum(allowed["servers"].values()) == 20, allowed


def test_rbac_by_source_address_in_plaintext(mesh):
    """mtls: disable -> RBAC allows the callers' instance addresses. On loopback every call
    comes from 127.0.0.1: denied while web's address is another one, allowed once the
    intent gives web 127.0.0.1."""
    net, port = loopback_addr()
    mesh.push(compile_nodes({"shop": shop_app(net, port, mtls="disable")}, HOSTS))
    target = f"xds:///api.shop:{port}"
    mesh.start_api(net, port)
    w1 = mesh.start("w1", warm=[target])
    denied = wait_until(lambda: (t := w1.run(target, n=10, timeout_s=3))["errors"].get("PERMISSION_DENIED") == 10 and t, 15)
    assert denied and denied["servers"] == {}, denied

    mesh.push(compile_nodes({"shop": shop_app(net, port, mtls="disable", web_address="127.0.0.1")}, HOSTS))
    ok = wait_until(lambda: (t := w1.run(target, n=10, timeout_s=3)) and not t["errors"] and t, 5)
    assert ok and sum(ok["servers"].values()) == 10, ok


def test_permissive_is_tls_with_identity_or_address(mesh):
    """mtls: permissive -> TLS server, client certificate optional; RBAC allows the
    callers by identity or by address. web (cert, not calling from its address) gets in by
    identity; batch (cert of an identity the policy does not name) is refused; plaintext
    is refused by the handshake."""
    net, port = loopback_addr()
    nodes = compile_nodes({"shop": shop_app(net, port, mtls="permissive")}, HOSTS)
    sl = thaw(next(r for r in nodes["a1"] if r.key.kind == "server-listener").spec)
    assert sl["tls"]["require_client_cert"] is False
    assert sl["rbac"] == {"principals": ["spiffe://test.example/shop/web"], "source_ips": [net + "11/32"]}
    nodes["b1"] = _as_batch(nodes["w1"])
    mesh.push(nodes)
    target = f"xds:///api.shop:{port}"
    w1, b1 = _start_with_certificates(mesh, net, port, target)
    ok = wait_until(lambda: (t := w1.run(target, n=10, timeout_s=3)) and not t["errors"] and t, 15)
    assert ok and sum(ok["servers"].values()) == 10, ok
    assert b1.run(target, n=10, timeout_s=3)["errors"] == {"PERMISSION_DENIED": 10}
    with grpc.insecure_channel(f"{net}21:{port}") as ch:
        with pytest.raises(grpc.RpcError) as exc:
            ch.unary_unary("/netintent.lab.Echo/Call")(b"{}", timeout=3)
    assert exc.value.code() is grpc.StatusCode.UNAVAILABLE
