"""Per-node xDS snapshots, versions, ownership and ACK/NACK records (thread safe).

Contract: `SnapshotCache.set_node(node, {type_url: {name: message|Any}}, owners)` replaces
a node's resources and computes one version per type from the content (a short hash), so
identical content keeps its version and wakes nobody; only the streams of that node are
woken when some type's version changed. `owners` records which resources the reconciler
owns and for which app. Streams (server.py) attach per node and record, per type, the
version they last ACKed or NACKed. `status(node)` and the bounded `wait_for(...)` fold the
streams' records into one `TypeStatus` per type: ACKED (every stream of the node that
subscribes to the type acked the current version), NACKED (one rejected it, with the
client's error detail), PENDING, or NO_STREAM.

Scale: every change (a snapshot set, an ACK, a stream attaching or leaving) marks only its
node dirty for the waiters that asked about that node, and a waiter re-reads only its dirty
nodes, so waiting for N nodes costs O(N + events), not O(N) per event. Wake-ups of streams
from another thread are coalesced into one event-loop callback per burst (`LoopWaker`).
"""
from __future__ import annotations

import asyncio
import enum
import hashlib
import threading
import time
from dataclasses import dataclass, field
from typing import Mapping

from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf import any_pb2
from google.protobuf.message import Message

from reconciler.xds.resources import CLUSTER, LISTENER

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
    # incremental (delta) streams only: what the client holds, name -> resource version
    known: dict[str, str] | None = None
    prev_known: dict[str, str] | None = None
    wildcard: bool = False


class LoopWaker:
    """Sets the events of streams of one asyncio loop from any thread, one loop callback per
    burst: a change to 10,000 nodes costs one `call_soon_threadsafe`, not 10,000."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._lock = threading.Lock()
        self._pending: list[asyncio.Event] = []

    def wake(self, event: asyncio.Event) -> None:
        with self._lock:
            self._pending.append(event)
            if len(self._pending) > 1:
                return  # a flush is already scheduled and will take this one too
        try:
            self.loop.call_soon_threadsafe(self._flush)
        except RuntimeError:  # loop already closed
            pass

    def _flush(self) -> None:
        with self._lock:
            batch, self._pending = self._pending, []
        for event in batch:
            event.set()


@dataclass(eq=False)
class _Stream:
    id: int
    waker: LoopWaker
    event: asyncio.Event
    node: str | None = None
    subs: dict[str, _Sub] = field(default_factory=dict)
    closed: bool = False

    def wake(self) -> None:
        self.waker.wake(self.event)


@dataclass(eq=False)
class _Waiter:
    """One `wait_for` call: the nodes it waits on and those changed since it last looked."""
    cond: threading.Condition
    nodes: frozenset[str]
    dirty: set[str] = field(default_factory=set)


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
        self._lock = threading.RLock()
        self._waiters: list[_Waiter] = []
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
        return self.set_nodes({node: resources}, {node: owners} if owners is not None else None)[node]

    def set_nodes(self, snapshots: Mapping[str, Mapping[str, Mapping[str, Message]]],
                  owners: Mapping[str, Mapping[tuple[str, str], str] | None] | None = None
                  ) -> dict[str, dict[str, str]]:
        """`set_node` for many nodes under one lock hold; the streams of every changed node
        are woken together. Returns node -> versions per type."""
        packed = {node: _pack(resources) for node, resources in snapshots.items()}
        out: dict[str, dict[str, str]] = {}
        streams: list[_Stream] = []
        with self._lock:
            for node, snap in packed.items():
                versions = {t: _version(v) for t, v in snap.items()}
                present = {(t, n) for t, items in snap.items() for n in items}
                mine = (owners or {}).get(node)
                if mine is None:  # a hand edit keeps the ownership of the names still present
                    mine = self._owners.get(node, {})
                self._owners[node] = {k: v for k, v in mine.items() if k in present}
                self._snap[node] = snap
                old, self._ver[node] = self._ver.get(node), versions
                if old != versions:
                    streams.extend(self._streams.get(node, ()))
                    self._touch(node)
                out[node] = dict(versions)
        for st in streams:
            st.wake()
        return out

    def owners(self, node: str) -> dict[tuple[str, str], str]:
        """(type_url, name) -> app of the resources of `node` the reconciler owns."""
        with self._lock:
            return dict(self._owners.get(node, {}))

    def remove_node(self, node: str) -> None:
        with self._lock:
            self._snap.pop(node, None)
            self._ver.pop(node, None)
            self._owners.pop(node, None)
            self._touch(node)

    def has(self, node: str) -> bool:
        with self._lock:
            return node in self._snap

    def nodes(self) -> list[str]:
        with self._lock:
            return sorted(self._snap)

    def versions(self, node: str) -> dict[str, str]:
        with self._lock:
            return dict(self._ver.get(node, {}))

    def resources(self, node: str) -> dict[str, dict[str, any_pb2.Any]]:
        with self._lock:
            return {t: dict(v) for t, v in self._snap.get(node, {}).items()}

    def connected(self, node: str) -> int:
        with self._lock:
            return len(self._streams.get(node, ()))

    def subscriptions(self, node: str) -> dict[str, list[str] | None]:
        """type URL -> the names the node's streams subscribe to (None: every name, a wildcard)."""
        with self._lock:
            out: dict[str, set[str] | None] = {}
            for st in self._streams.get(node, ()):
                for t, sub in st.subs.items():
                    wild = sub.wildcard or (not sub.names and t in WILDCARD_TYPES and sub.known is None)
                    have = out.get(t, set())
                    out[t] = None if wild or have is None else have | sub.names
            return {t: None if names is None else sorted(names) for t, names in out.items()}

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
        with self._lock:
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

        def look(node: str) -> tuple[dict[str, TypeStatus], bool]:
            """The node's expected types and whether all of them settled."""
            got: dict[str, TypeStatus] = {}
            for t, v in expected[node].items():
                s = self._type_status(node, t)
                if s.version != v:
                    s = TypeStatus(v, AckState.PENDING, "", s.streams)
                got[t] = s
            return got, all(s.state.settled or (settle_no_stream and s.state is AckState.NO_STREAM)
                            for s in got.values())

        with self._lock:
            waiter = _Waiter(threading.Condition(self._lock), frozenset(expected))
            self._waiters.append(waiter)
            try:
                out: dict[str, dict[str, TypeStatus]] = {}
                unsettled: set[str] = set()
                for node in expected:
                    out[node], done = look(node)
                    if not done:
                        unsettled.add(node)
                while unsettled:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    waiter.cond.wait(min(left, 0.5))
                    dirty, waiter.dirty = waiter.dirty, set()
                    for node in dirty:
                        out[node], done = look(node)
                        (unsettled.discard if done else unsettled.add)(node)
                return out
            finally:
                self._waiters.remove(waiter)

    def _touch(self, node: str) -> None:
        """Tell the waiters on `node` that its state changed. Call with `_lock` held."""
        for w in self._waiters:
            if node in w.nodes:
                if not w.dirty:  # the first change since the waiter looked wakes it
                    w.cond.notify()
                w.dirty.add(node)

    # ---- stream side (server loop) ------------------------------------------------------
    def _attach(self, st: _Stream) -> None:
        assert st.node is not None  # streams attach once their first request named the node
        with self._lock:
            self._streams.setdefault(st.node, set()).add(st)
            self._touch(st.node)

    def _detach(self, st: _Stream) -> None:
        if st.node is None:
            return
        with self._lock:
            s = self._streams.get(st.node)
            if s is not None:
                s.discard(st)
                if not s:
                    del self._streams[st.node]
            self._touch(st.node)

    def _record(self, st: _Stream, sub: _Sub, nack_message: str | None) -> None:
        with self._lock:
            if nack_message is None:
                sub.acked, sub.nacked = sub.sent_version, None
            else:
                sub.nacked = (sub.sent_version or "", nack_message)
            if st.node is not None:
                self._touch(st.node)

    def _pending(self, st: _Stream, type_url: str, sub: _Sub):
        """(version, resources) the stream does not hold yet for `type_url`; None when it is
        up to date or the node has no snapshot. Call with `_lock` held."""
        if st.node not in self._snap:
            return None
        version = self._ver[st.node].get(type_url, _version({}))
        if not sub.dirty and sub.sent_version == version:
            return None
        return version, self._snap[st.node].get(type_url, {})

    def _outdated(self, st: _Stream) -> bool:
        """Whether the stream lacks something it subscribes to (the writer has work)."""
        with self._lock:
            return any(self._pending(st, t, sub) is not None for t, sub in list(st.subs.items()))

    def _response(self, st: _Stream, type_url: str, sub: _Sub, nonce: str):
        with self._lock:
            pending = self._pending(st, type_url, sub)
            if pending is None:
                return None
            version, items = pending
            if not sub.names and type_url in WILDCARD_TYPES:
                names = sorted(items)
            else:
                names = sorted(n for n in sub.names if n in items)
            sub.dirty, sub.sent_version, sub.nonce = False, version, nonce
            return discovery_pb2.DiscoveryResponse(
                version_info=version, type_url=type_url, nonce=nonce,
                resources=[items[n] for n in names])

    def _delta_response(self, st: _Stream, type_url: str, sub: _Sub, nonce: str):
        """Incremental xDS: only resources whose version the client does not hold, plus
        the names it holds that are gone. Nothing to send for a new version = the stream is
        up to date with it (counted as acked when nothing else is outstanding)."""
        with self._lock:
            pending = self._pending(st, type_url, sub)
            if pending is None:
                return None
            version, items = pending
            known = sub.known if sub.known is not None else {}
            wanted = set(items) if sub.wildcard else {n for n in sub.names if n in items}
            changed = [n for n in sorted(wanted) if known.get(n) != _resource_version(items[n])]
            removed = sorted(n for n in known if n not in items)
            sub.dirty = False
            if not changed and not removed:
                if sub.acked == sub.sent_version:
                    sub.acked = version
                    if st.node is not None:
                        self._touch(st.node)
                sub.sent_version = version
                return None
            sub.prev_known = dict(known)
            for n in changed:
                known[n] = _resource_version(items[n])
            for n in removed:
                del known[n]
            sub.known = known
            sub.sent_version, sub.nonce = version, nonce
            return discovery_pb2.DeltaDiscoveryResponse(
                system_version_info=version, type_url=type_url, nonce=nonce,
                removed_resources=removed,
                resources=[discovery_pb2.Resource(name=n, version=known[n], resource=items[n])
                           for n in changed])


def _pack(resources: Mapping[str, Mapping[str, Message]]) -> dict[str, dict[str, any_pb2.Any]]:
    """type_url -> name -> `Any` (messages are packed deterministically, `Any`s kept)."""
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
    return packed


def _resource_version(a: any_pb2.Any) -> str:
    return hashlib.sha256(a.value).hexdigest()[:12]
