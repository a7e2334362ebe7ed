"""ADS protocol behaviour of reconciler.xds.server, driven by a raw ADS client on loopback.

Covers: no response to a node without a snapshot (so clients keep their config after a
server restart), ACK and NACK records, stale nonces ignored, pushes only to the node whose
resources changed, responses follow subscription changes.
"""
from __future__ import annotations

import queue
import threading

import grpc
import pytest
from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2
from google.rpc import status_pb2

from reconciler.xds import resources as R
from reconciler.xds.server import AckState, XdsServer


class RawAds:
    RPC = "StreamAggregatedResources"

    def __init__(self, target: str, node: str) -> None:
        self.node = node
        self._out: queue.Queue = queue.Queue()
        self.inbox: queue.Queue = queue.Queue()
        self.ch = grpc.insecure_channel(target)
        stub = ads_pb2_grpc.AggregatedDiscoveryServiceStub(self.ch)
        self._call = getattr(stub, self.RPC)(iter(self._out.get, None))
        self._t = threading.Thread(target=self._read, daemon=True)
        self._t.start()
        self._first = True

    def _read(self) -> None:
        try:
            for r in self._call:
                self.inbox.put(r)
        except grpc.RpcError:
            pass

    def send(self, type_url, names=(), version="", nonce="", error=None) -> None:
        req = discovery_pb2.DiscoveryRequest(type_url=type_url, resource_names=list(names),
                                             version_info=version, response_nonce=nonce)
        self._put(req, error)

    def _put(self, req, error) -> None:
        """Queue `req`: the stream's first request carries the node; `error` makes it a NACK."""
        if self._first:
            req.node.CopyFrom(base_pb2.Node(id=self.node))
            self._first = False
        if error:
            req.error_detail.CopyFrom(status_pb2.Status(code=3, message=error))
        self._out.put(req)

    def recv(self, timeout: float = 3.0):
        try:
            return self.inbox.get(timeout=timeout)
        except queue.Empty:
            return None

    def close(self) -> None:
        self._out.put(None)
        self._call.cancel()
        self.ch.close()


def listener(name: str, route: str = "r"):
    return R.to_proto("listener", name, {"route": route, "config_source": "ads",
                                         "http_filters": ["router"]})


@pytest.fixture
def server():
    s = XdsServer("127.0.0.1:0")
    s.start()
    clients: list[RawAds] = []
    s.client = lambda node: clients.append(RawAds(s.target, node)) or clients[-1]
    try:
        yield s
    finally:
        for c in clients:
            c.close()
        s.stop()


def test_unknown_node_gets_nothing_until_its_snapshot_is_set(server):
    c = server.client("ghost")
    c.send(R.LISTENER, ["a"])
    assert c.recv(0.5) is None
    server.cache.set_node("ghost", {R.LISTENER: {"a": listener("a")}})
    r = c.recv()
    assert r is not None and [R.from_any(a)[1] for a in r.resources] == ["a"]


def test_ack_and_nack_are_recorded_per_version(server):
    v1 = server.cache.set_node("n", {R.LISTENER: {"a": listener("a")}})[R.LISTENER]
    c = server.client("n")
    c.send(R.LISTENER, ["a"])
    r = c.recv()
    assert r.version_info == v1
    c.send(R.LISTENER, ["a"], version=v1, nonce=r.nonce)
    st = server.cache.wait_for({"n": {R.LISTENER: v1}}, 3)
    assert st["n"][R.LISTENER].state is AckState.ACKED

    v2 = server.cache.set_node("n", {R.LISTENER: {"a": listener("a", "r2")}})[R.LISTENER]
    assert v2 != v1
    r = c.recv()
    assert r.version_info == v2
    c.send(R.LISTENER, ["a"], version=v1, nonce=r.nonce, error="a: bad field")
    st = server.cache.wait_for({"n": {R.LISTENER: v2}}, 3)["n"][R.LISTENER]
    assert st.state is AckState.NACKED and st.error == "a: bad field"


def test_stale_nonce_is_ignored(server):
    server.cache.set_node("n", {R.LISTENER: {"a": listener("a")}})
    c = server.client("n")
    c.send(R.LISTENER, ["a"])
    old = c.recv()
    v2 = server.cache.set_node("n", {R.LISTENER: {"a": listener("a", "r2")}})[R.LISTENER]
    new = c.recv()
    assert new.nonce != old.nonce
    # a late answer to the old response: must neither count as NACK of v2 nor resubscribe
    c.send(R.LISTENER, ["a", "b"], version="", nonce=old.nonce, error="late")
    assert c.recv(0.3) is None
    assert server.cache.status("n")[R.LISTENER].state is AckState.PENDING
    c.send(R.LISTENER, ["a"], version=v2, nonce=new.nonce)
    assert server.cache.wait_for({"n": {R.LISTENER: v2}}, 3)["n"][R.LISTENER].state is AckState.ACKED


def test_push_goes_only_to_the_changed_node(server):
    for n in ("n1", "n2"):
        server.cache.set_node(n, {R.LISTENER: {"a": listener("a")}})
    c1, c2 = server.client("n1"), server.client("n2")
    for c in (c1, c2):
        c.send(R.LISTENER, ["a"])
        r = c.recv()
        c.send(R.LISTENER, ["a"], version=r.version_info, nonce=r.nonce)
    # same content again: no push to anybody
    server.cache.set_node("n2", {R.LISTENER: {"a": listener("a")}})
    assert c2.recv(0.3) is None
    server.cache.set_node("n1", {R.LISTENER: {"a": listener("a", "r9")}})
    assert c1.recv() is not None
    assert c2.recv(0.3) is None


def test_response_follows_subscription(server):
    server.cache.set_node("n", {R.LISTENER: {"a": listener("a"), "b": listener("b")},
                                R.ROUTE: {}})
    c = server.client("n")
    c.send(R.LISTENER, ["a"])
    r = c.recv()
    assert [R.from_any(a)[1] for a in r.resources] == ["a"]
    c.send(R.LISTENER, ["a", "b", "zz"], version=r.version_info, nonce=r.nonce)
    r2 = c.recv()
    # LDS in SotW: every subscribed resource that exists; "zz" is absent = does not exist
    assert sorted(R.from_any(a)[1] for a in r2.resources) == ["a", "b"]


class RawDelta(RawAds):
    RPC = "DeltaAggregatedResources"  # same plumbing, delta RPC

    def dsend(self, type_url, subscribe=(), unsubscribe=(), nonce="", error=None, initial=None):
        req = discovery_pb2.DeltaDiscoveryRequest(
            type_url=type_url, resource_names_subscribe=list(subscribe),
            resource_names_unsubscribe=list(unsubscribe), response_nonce=nonce)
        for k, v in (initial or {}).items():
            req.initial_resource_versions[k] = v
        self._put(req, error)


@pytest.fixture
def delta(server):
    clients: list[RawDelta] = []

    def make(node):
        clients.append(RawDelta(server.target, node))
        return clients[-1]
    try:
        yield make
    finally:
        for c in clients:
            c.close()


def test_delta_sends_only_changes_and_removals(server, delta):
    server.cache.set_node("d", {R.LISTENER: {"a": listener("a"), "b": listener("b")}})
    c = delta("d")
    c.dsend(R.LISTENER)  # wildcard
    r = c.recv()
    held = {x.name: x.version for x in r.resources}
    assert sorted(held) == ["a", "b"] and not r.removed_resources
    c.dsend(R.LISTENER, nonce=r.nonce)
    v1 = server.cache.versions("d")[R.LISTENER]
    assert server.cache.wait_for({"d": {R.LISTENER: v1}}, 3)["d"][R.LISTENER].state is AckState.ACKED

    server.cache.set_node("d", {R.LISTENER: {"a": listener("a", "r2")}})
    r = c.recv()
    assert [x.name for x in r.resources] == ["a"] and list(r.removed_resources) == ["b"]
    assert r.resources[0].version != held["a"]
    c.dsend(R.LISTENER, nonce=r.nonce, error="a: rejected")
    v2 = server.cache.versions("d")[R.LISTENER]
    st = server.cache.wait_for({"d": {R.LISTENER: v2}}, 3)["d"][R.LISTENER]
    assert st.state is AckState.NACKED and st.error == "a: rejected"

    # after the NACK the server assumes the client still holds what it had before that
    # response: the fix for "a" is sent, and the removal of "b" again
    server.cache.set_node("d", {R.LISTENER: {"a": listener("a", "r3")}})
    r = c.recv()
    assert [x.name for x in r.resources] == ["a"] and list(r.removed_resources) == ["b"]


def test_delta_reconnect_with_initial_versions_sends_nothing(server, delta):
    server.cache.set_node("d", {R.LISTENER: {"a": listener("a")}})
    c = delta("d")
    c.dsend(R.LISTENER, subscribe=["a"])
    r = c.recv()
    version = r.resources[0].version
    c.dsend(R.LISTENER, nonce=r.nonce)
    c.close()
    c2 = delta("d")
    c2.dsend(R.LISTENER, subscribe=["a"], initial={"a": version})
    assert c2.recv(0.5) is None  # it holds the current version: nothing to send
    v = server.cache.versions("d")[R.LISTENER]
    assert wait_for_state(server, "d", R.LISTENER, v) is AckState.ACKED


def wait_for_state(server, node, type_url, version):
    return server.cache.wait_for({node: {type_url: version}}, 3)[node][type_url].state
