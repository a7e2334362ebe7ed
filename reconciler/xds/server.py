"""The reconciler's ADS server (xDS v3, State of the World) for proxyless gRPC workloads.

Contract:
- `SnapshotCache` (cache.py) holds, per node id, the full set of resources per type URL
  with content-hash versions, and wakes only the streams of a node whose content changed:
  nodes whose resources did not change get nothing.
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
- Incremental xDS (DeltaAggregatedResources) is served too: per-resource versions (content
  hashes), only changed resources and removed names are sent, `initial_resource_versions`
  on reconnect avoid resending what the client holds; same nonce and ACK/NACK rules (a NACK
  rolls back what the server assumes the client holds). grpcio's clients speak SotW.
- `cache.status(node)` and `cache.wait_for({node: {type: version}}, timeout)` report the
  ACK/NACK state per type (see cache.py). Waits are bounded.
- `tls_credentials(cert, key, client_ca)` gives TLS (optionally mTLS) for the ADS port.

Scale (docs/sidecar.md, "Limits"): every stream is accepted however many arrive at once
(`SERVER_OPTIONS`: grpc core's pending-call queue would otherwise refuse streams past 1,000
queued); an ACK is handled by the stream's reader alone, the writer wakes only when the stream
lacks something. Starting, the server raises the process's cyclic-GC gen-0 threshold to
`GC_THRESHOLD0` unless it is higher already (`gc_threshold0=None` leaves it): ~100 tracked
objects per stream made the default (700) walk the whole heap several times a second under
load, up to half the server's CPU at 10,000 streams.
"""
from __future__ import annotations

import asyncio
import gc
import itertools
import logging
import threading
from typing import Any

import grpc
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2

from reconciler.xds.cache import (  # noqa: F401 (AckState, TypeStatus: re-exported)
    WILDCARD_TYPES,
    AckState,
    LoopWaker,
    SnapshotCache,
    TypeStatus,
    _Stream,
    _Sub,
)

log = logging.getLogger(__name__)

# Why these options: grpc core holds calls the application has not accepted yet in a pending
# queue and, past `max_pending_requests` (default 1,000), refuses new calls at random with
# RESOURCE_EXHAUSTED "Too many pending requests for this server", every one past the hard
# limit (default 3,000). grpc.aio accepts one call per event-loop round trip, so a burst of
# ADS streams (every workload connecting at once, or reconnecting after a restart) queues
# there: with the defaults 19 of 1,500 and ~1,000 of 5,000 streams were refused and never
# got a config. An ADS stream is long lived and a queued call costs a few KB, so the queue
# is sized for bursts of all workloads, and a queued call may wait longer than the default
# 30 s before core drops it.
MAX_PENDING_STREAMS = 200_000
SERVER_OPTIONS: tuple[tuple[str, int], ...] = (
    ("grpc.max_concurrent_streams", 100_000),
    ("grpc.server.max_pending_requests", MAX_PENDING_STREAMS),
    ("grpc.server.max_pending_requests_hard_limit", MAX_PENDING_STREAMS),
    ("grpc.server_max_unrequested_time_in_server", 300),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_ping_interval_without_data_ms", 5000),
)
GC_THRESHOLD0 = 50_000


class _Ads(ads_pb2_grpc.AggregatedDiscoveryServiceServicer):
    def __init__(self, cache: SnapshotCache) -> None:
        self.cache = cache
        self._ids = itertools.count(1)
        self._nonces = itertools.count(1)
        self._waker: LoopWaker | None = None
        self.streams = 0

    async def StreamAggregatedResources(self, request_iterator, context):
        await self._run(context, delta=False)

    async def DeltaAggregatedResources(self, request_iterator, context):
        await self._run(context, delta=True)

    async def _run(self, context, delta: bool) -> None:
        """One stream: a reader task handles each request as it comes (an ACK needs nothing
        more) and wakes the writer (this coroutine) only when the stream lacks something;
        the cache wakes the writer when the node's resources change."""
        loop = asyncio.get_running_loop()
        if self._waker is None or self._waker.loop is not loop:
            self._waker = LoopWaker(loop)
        st = _Stream(next(self._ids), self._waker, asyncio.Event())
        self.streams += 1
        handle = self._on_delta if delta else self._on_request
        make = self.cache._delta_response if delta else self.cache._response

        async def reader() -> None:
            try:
                while (req := await context.read()) is not grpc.aio.EOF:
                    handle(st, req)
                    if st.node is not None and self.cache._outdated(st):
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
                if st.closed:
                    break
                for type_url, sub in list(st.subs.items()):
                    resp = make(st, type_url, sub, str(next(self._nonces)))
                    if resp is not None:
                        await context.write(resp)
        except (asyncio.CancelledError, grpc.RpcError, RuntimeError):
            pass  # the stream or the server is going away
        finally:
            self.streams -= 1
            task.cancel()
            if st.node is not None:
                self.cache._detach(st)

    def _ack(self, st: _Stream, req) -> tuple[bool, _Sub | None]:
        """Node registration and ACK/NACK bookkeeping shared by SotW and delta.
        Returns (go on with the request, the stream's subscription for its type)."""
        if st.node is None:
            if not req.node.id:
                return False, None
            st.node = req.node.id
            self.cache._attach(st)
        t = req.type_url
        sub = st.subs.get(t)
        if req.response_nonce:
            if sub is None or req.response_nonce != sub.nonce:
                return False, sub  # stale nonce: the client will send a current one
            nack = req.error_detail.message if req.HasField("error_detail") and \
                req.error_detail.code != 0 else None
            self.cache._record(st, sub, nack)
            if nack is not None:
                log.warning("node %s NACKed %s version %s: %s", st.node, t, sub.sent_version, nack)
                if sub.known is not None and sub.prev_known is not None:
                    sub.known = dict(sub.prev_known)  # the client kept what it had
        return True, sub

    def _on_delta(self, st: _Stream, req: discovery_pb2.DeltaDiscoveryRequest) -> None:
        go, sub = self._ack(st, req)
        if not go:
            return
        t = req.type_url
        add, drop = set(req.resource_names_subscribe), set(req.resource_names_unsubscribe)
        if sub is None:
            sub = _Sub(frozenset(), known=dict(req.initial_resource_versions))
            sub.wildcard = (t in WILDCARD_TYPES and not add) or "*" in add
            st.subs[t] = sub
        elif "*" in add:
            sub.wildcard, sub.dirty = True, True
        if "*" in drop:
            sub.wildcard, sub.dirty = False, True
        for n in drop:
            (sub.known or {}).pop(n, None)
        names = frozenset((set(sub.names) | add) - drop - {"*"})
        if names != sub.names:
            sub.names, sub.dirty = names, True

    def _on_request(self, st: _Stream, req: discovery_pb2.DiscoveryRequest) -> None:
        go, sub = self._ack(st, req)
        if not go:
            return
        t = req.type_url
        names = frozenset(req.resource_names)
        if sub is None:
            st.subs[t] = _Sub(names)
        elif names != sub.names:
            sub.names, sub.dirty = names, True


class XdsServer:
    """The ADS gRPC server, running its own asyncio loop in a background thread."""

    def __init__(self, address: str = "127.0.0.1:0", cache: SnapshotCache | None = None,
                 credentials: grpc.ServerCredentials | None = None,
                 gc_threshold0: int | None = GC_THRESHOLD0) -> None:
        self.address = address
        self.gc_threshold0 = gc_threshold0
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
        if self.gc_threshold0 is not None:
            gen0, gen1, gen2 = gc.get_threshold()
            if 0 < gen0 < self.gc_threshold0:  # 0 = collection disabled: leave it so
                gc.set_threshold(self.gc_threshold0, gen1, gen2)
        ready = threading.Event()
        errors: list[BaseException] = []

        async def main() -> None:
            try:
                self._server = grpc.aio.server(options=list(SERVER_OPTIONS))
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
            if rest:
                _, pending = await asyncio.wait(rest, timeout=2.0)
                for t in pending:
                    t.cancel()
                if pending:
                    await asyncio.wait(pending, timeout=1.0)

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
            if self._stopping is not None:
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
