"""The reconciler's ADS server (xDS v3, State of the World) for proxyless gRPC workloads.

Contract:
- `SnapshotCache` holds, per node id, the full set of resources per type URL (already
  packed as `Any`). `set_node(node, {type_url: {name: message}})` computes a version per
  type from the content (a short hash), and wakes only the streams of that node, and only
  when the version of some type changed: nodes whose resources did not change get nothing.
- `XdsServer` runs `AggregatedDiscoveryService` on grpc.aio in its own thread (so one
  process serves thousands of streams). Per stream and type it remembers the subscribed
  names, the last nonce and the version sent. A request whose `response_nonce` is not the
  last nonce sent for that type on that stream is stale and ignored (the client will send
  another). A request carrying the last nonce is an ACK, or a NACK when `error_detail` is
  set; both are recorded per stream, per type, with the version they refer to.
- A node the cache has no snapshot for gets no response at all (so after a restart of the
  server, clients keep the configuration they hold until the reconciler sets snapshots).
- LDS/CDS responses carry every subscribed resource that exists (an empty subscription is
  a wildcard); RDS/EDS responses carry the subscribed ones that exist.
- `status(node)` and `wait_for({node: {type: version}}, timeout)` report per type:
  ACKED (every stream of the node subscribed to that type acked the version), NACKED (some
  stream rejected it: message from `error_detail`), PENDING, or NO_STREAM. Waits are bounded.
"""
from __future__ import annotations

import asyncio
import enum
import hashlib
import itertools
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Mapping

import grpc
from google.protobuf import any_pb2
from google.protobuf.message import Message

from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2

from .resources import CLUSTER, LISTENER

log = logging.getLogger(__name__)
WILDCARD_TYPES = (LISTENER, CLUSTER)


class AckState(str, enum.Enum):
    ACKED = "acked"
    NACKED = "nacked"
    PENDING = "pending"
    NO_STREAM = "no-stream"

    @property
    def settled(self) -> bool:
        return self in (AckState.ACKED, AckState.NACKED)


@dataclass(frozen=True)
class TypeStatus:
    version: str           # version the server holds for this node and type
    state: AckState
    error: str = ""        # error_detail message of a NACK of `version`
    streams: int = 0       # streams of the node subscribed to this type


@dataclass
class _Sub:
    names: frozenset[str]
    nonce: str = ""
    sent_version: str | None = None
    dirty: bool = True
    acked: str | None = None          # version last acked on this stream
    nacked: tuple[str, str] | None = None  # (version, message) last nacked


@dataclass(eq=False)
class _Stream:
    id: int
    loop: asyncio.AbstractEventLoop
    event: asyncio.Event
    node: str | None = None
    subs: dict[str, _Sub] = field(default_factory=dict)
    inbox: deque = field(default_factory=deque)
    closed: bool = False

    def wake(self) -> None:
        try:
            self.loop.call_soon_threadsafe(self.event.set)
        except RuntimeError:  # loop already closed
            pass


def _version(resources: Mapping[str, any_pb2.Any]) -> str:
    h = hashlib.sha256()
    for name in sorted(resources):
        h.update(name.encode())
        h.update(b"\0")
        h.update(resources[name].value)
        h.update(b"\0")
    return h.hexdigest()[:12]


class SnapshotCache:
    """Per-node resources, versions and the ACK/NACK records of the streams. Thread safe."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._snap: dict[str, dict[str, dict[str, any_pb2.Any]]] = {}
        self._ver: dict[str, dict[str, str]] = {}
        self._streams: dict[str, set[_Stream]] = {}
        self._owners: dict[str, dict[tuple[str, str], str]] = {}

    # ---- writer side (reconciler) -------------------------------------------------------
    def set_node(self, node: str, resources: Mapping[str, Mapping[str, Message]],
                 owners: Mapping[tuple[str, str], str] | None = None) -> dict[str, str]:
        """Replace the node's resources; return the versions per type. Pushes changed types.

        Values may be messages or already packed `Any`s. `owners` maps (type_url, name) of
        the resources the reconciler owns to their application; None keeps the ownership
        of names still present (a hand edit), and new names are then not owned."""
        packed: dict[str, dict[str, any_pb2.Any]] = {}
        for type_url, items in resources.items():
            out = packed.setdefault(type_url, {})
            for name, msg in items.items():
                if isinstance(msg, any_pb2.Any):
                    out[name] = msg
                    continue
                a = any_pb2.Any()
                a.Pack(msg, deterministic=True)
                out[name] = a
        versions = {t: _version(v) for t, v in packed.items()}
        present = {(t, n) for t, items in packed.items() for n in items}
        with self._cond:
            old = self._ver.get(node)
            if owners is None:
                owners = {k: v for k, v in self._owners.get(node, {}).items() if k in present}
            self._owners[node] = {k: v for k, v in owners.items() if k in present}
            self._snap[node] = packed
            self._ver[node] = versions
            changed = old is None or old != versions
            streams = list(self._streams.get(node, ())) if changed else []
            self._cond.notify_all()
        for st in streams:
            st.wake()
        return dict(versions)

    def owners(self, node: str) -> dict[tuple[str, str], str]:
        """(type_url, name) -> app of the resources of `node` the reconciler owns."""
        with self._cond:
            return dict(self._owners.get(node, {}))

    def remove_node(self, node: str) -> None:
        with self._cond:
            self._snap.pop(node, None)
            self._ver.pop(node, None)
            self._owners.pop(node, None)
            self._cond.notify_all()

    def has(self, node: str) -> bool:
        with self._cond:
            return node in self._snap

    def nodes(self) -> list[str]:
        with self._cond:
            return sorted(self._snap)

    def versions(self, node: str) -> dict[str, str]:
        with self._cond:
            return dict(self._ver.get(node, {}))

    def resources(self, node: str) -> dict[str, dict[str, any_pb2.Any]]:
        with self._cond:
            return {t: dict(v) for t, v in self._snap.get(node, {}).items()}

    def connected(self, node: str) -> int:
        with self._cond:
            return len(self._streams.get(node, ()))

    # ---- ACK/NACK state -----------------------------------------------------------------
    def _type_status(self, node: str, type_url: str) -> TypeStatus:
        version = self._ver.get(node, {}).get(type_url, "")
        subs = [st.subs[type_url] for st in self._streams.get(node, ()) if type_url in st.subs]
        if not subs:
            return TypeStatus(version, AckState.NO_STREAM)
        for s in subs:
            if s.nacked and s.nacked[0] == version:
                return TypeStatus(version, AckState.NACKED, s.nacked[1], len(subs))
        if all(s.acked == version for s in subs):
            return TypeStatus(version, AckState.ACKED, "", len(subs))
        return TypeStatus(version, AckState.PENDING, "", len(subs))

    def status(self, node: str) -> dict[str, TypeStatus]:
        with self._cond:
            types = set(self._ver.get(node, {}))
            for st in self._streams.get(node, ()):
                types.update(st.subs)
            return {t: self._type_status(node, t) for t in sorted(types)}

    def wait_for(self, expected: Mapping[str, Mapping[str, str]], timeout: float,
                 settle_no_stream: bool = False) -> dict[str, dict[str, TypeStatus]]:
        """Wait (bounded) until every (node, type) reached `version` as ACKED or NACKED.

        A type no stream of the node subscribes to counts as settled only when
        `settle_no_stream` is set (a client that never asked for it cannot answer)."""
        deadline = time.monotonic() + max(0.0, timeout)

        def snapshot() -> tuple[bool, dict[str, dict[str, TypeStatus]]]:
            out: dict[str, dict[str, TypeStatus]] = {}
            done = True
            for node, types in expected.items():
                out[node] = {}
                for t, v in types.items():
                    s = self._type_status(node, t)
                    if s.version != v:
                        s = TypeStatus(v, AckState.PENDING, "", s.streams)
                    out[node][t] = s
                    if not (s.state.settled or (settle_no_stream and s.state is AckState.NO_STREAM)):
                        done = False
            return done, out

        with self._cond:
            while True:
                done, out = snapshot()
                left = deadline - time.monotonic()
                if done or left <= 0:
                    return out
                self._cond.wait(min(left, 0.5))

    # ---- stream side (server loop) ------------------------------------------------------
    def _attach(self, st: _Stream) -> None:
        with self._cond:
            self._streams.setdefault(st.node, set()).add(st)
            self._cond.notify_all()

    def _detach(self, st: _Stream) -> None:
        with self._cond:
            s = self._streams.get(st.node)
            if s is not None:
                s.discard(st)
                if not s:
                    del self._streams[st.node]
            self._cond.notify_all()

    def _record(self, st: _Stream, sub: _Sub, nack_message: str | None) -> None:
        with self._cond:
            if nack_message is None:
                sub.acked, sub.nacked = sub.sent_version, None
            else:
                sub.nacked = (sub.sent_version or "", nack_message)
            self._cond.notify_all()

    def _response(self, st: _Stream, type_url: str, sub: _Sub, nonce: str):
        with self._cond:
            if st.node not in self._snap:
                return None
            version = self._ver[st.node].get(type_url, _version({}))
            if not sub.dirty and sub.sent_version == version:
                return None
            items = self._snap[st.node].get(type_url, {})
            if not sub.names and type_url in WILDCARD_TYPES:
                names = sorted(items)
            else:
                names = sorted(n for n in sub.names if n in items)
            sub.dirty, sub.sent_version, sub.nonce = False, version, nonce
            return discovery_pb2.DiscoveryResponse(
                version_info=version, type_url=type_url, nonce=nonce,
                resources=[items[n] for n in names])


class _Ads(ads_pb2_grpc.AggregatedDiscoveryServiceServicer):
    def __init__(self, cache: SnapshotCache) -> None:
        self.cache = cache
        self._ids = itertools.count(1)
        self._nonces = itertools.count(1)
        self.streams = 0

    async def StreamAggregatedResources(self, request_iterator, context):
        loop = asyncio.get_running_loop()
        st = _Stream(next(self._ids), loop, asyncio.Event())
        self.streams += 1

        async def reader() -> None:
            try:
                async for req in request_iterator:
                    st.inbox.append(req)
                    st.event.set()
            except (asyncio.CancelledError, grpc.RpcError, Exception):  # stream gone
                pass
            finally:
                st.closed = True
                st.event.set()

        task = asyncio.ensure_future(reader())
        try:
            while True:
                await st.event.wait()
                st.event.clear()
                while st.inbox:
                    self._on_request(st, st.inbox.popleft())
                if st.closed:
                    break
                if st.node is None:
                    continue
                for type_url, sub in list(st.subs.items()):
                    resp = self.cache._response(st, type_url, sub, str(next(self._nonces)))
                    if resp is not None:
                        await context.write(resp)
        except (asyncio.CancelledError, grpc.RpcError, RuntimeError):
            pass  # the stream or the server is going away
        finally:
            self.streams -= 1
            task.cancel()
            if st.node is not None:
                self.cache._detach(st)

    def _on_request(self, st: _Stream, req: discovery_pb2.DiscoveryRequest) -> None:
        if st.node is None:
            if not req.node.id:
                return
            st.node = req.node.id
            self.cache._attach(st)
        t = req.type_url
        sub = st.subs.get(t)
        if req.response_nonce:
            if sub is None or req.response_nonce != sub.nonce:
                return  # stale nonce: the client will send a current one
            nack = req.error_detail.message if req.HasField("error_detail") and \
                req.error_detail.code != 0 else None
            self.cache._record(st, sub, nack)
            if nack is not None:
                log.warning("node %s NACKed %s version %s: %s", st.node, t, sub.sent_version, nack)
        names = frozenset(req.resource_names)
        if sub is None:
            st.subs[t] = _Sub(names)
        elif names != sub.names:
            sub.names, sub.dirty = names, True


class XdsServer:
    """The ADS gRPC server, running its own asyncio loop in a background thread."""

    def __init__(self, address: str = "127.0.0.1:0", cache: SnapshotCache | None = None,
                 credentials: grpc.ServerCredentials | None = None) -> None:
        self.address = address
        self.cache = cache or SnapshotCache()
        self.credentials = credentials
        self.port: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: grpc.aio.Server | None = None
        self._ads = _Ads(self.cache)
        self._grace = 0.2
        self._stopping: asyncio.Event | None = None

    @property
    def target(self) -> str:
        host = self.address.rsplit(":", 1)[0]
        return f"{host}:{self.port}"

    def start(self, timeout: float = 10.0) -> int:
        ready = threading.Event()
        errors: list[BaseException] = []

        async def main() -> None:
            try:
                self._server = grpc.aio.server(options=[
                    ("grpc.max_concurrent_streams", 100000),
                    ("grpc.keepalive_permit_without_calls", 1),
                    ("grpc.http2.min_ping_interval_without_data_ms", 5000)])
                ads_pb2_grpc.add_AggregatedDiscoveryServiceServicer_to_server(self._ads, self._server)
                if self.credentials is not None:
                    self.port = self._server.add_secure_port(self.address, self.credentials)
                else:
                    self.port = self._server.add_insecure_port(self.address)
                await self._server.start()
            except BaseException as e:  # reported to start()
                errors.append(e)
                ready.set()
                return
            self._stopping = asyncio.Event()
            ready.set()
            await self._stopping.wait()
            await self._server.stop(self._grace)
            # let the cancelled stream handlers finish before the loop closes
            me = asyncio.current_task()
            rest = [t for t in asyncio.all_tasks() if t is not me]
            for t in rest:
                t.cancel()
            await asyncio.wait(rest, timeout=2.0) if rest else None

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(main())
            finally:
                loop.close()

        self._thread = threading.Thread(target=run, name="xds-ads", daemon=True)
        self._thread.start()
        if not ready.wait(timeout):
            raise RuntimeError(f"ADS server on {self.address} did not start within {timeout}s")
        if errors:
            raise RuntimeError(f"ADS server on {self.address} failed to start: {errors[0]}")
        if not self.port:
            raise RuntimeError(f"ADS server could not bind {self.address}")
        return self.port

    def stop(self, grace: float = 0.2, timeout: float = 10.0) -> None:
        if self._loop is None or self._server is None:
            return
        self._grace = grace
        try:
            self._loop.call_soon_threadsafe(self._stopping.set)
        except RuntimeError:  # loop already closed
            pass
        if self._thread is not None:
            self._thread.join(timeout)
        self._loop = self._server = None

    @property
    def open_streams(self) -> int:
        return self._ads.streams

    def __enter__(self) -> "XdsServer":
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def tls_credentials(cert_file: str, key_file: str, client_ca_file: str | None = None) -> grpc.ServerCredentials:
    """TLS for the ADS port; with `client_ca_file` clients must present a certificate."""
    from pathlib import Path
    cert, key = Path(cert_file).read_bytes(), Path(key_file).read_bytes()
    ca = Path(client_ca_file).read_bytes() if client_ca_file else None
    return grpc.ssl_server_credentials([(key, cert)], root_certificates=ca,
                                       require_client_auth=ca is not None)
