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
"""
from __future__ import annotations

import asyncio
import enum
import hashlib
import threading
import time
from collections import deque
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
        assert st.node is not None  # streams attach once their first request named the node
        with self._cond:
            self._streams.setdefault(st.node, set()).add(st)
            self._cond.notify_all()

    def _detach(self, st: _Stream) -> None:
        if st.node is None:
            return
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

    def _pending(self, st: _Stream, type_url: str, sub: _Sub):
        """(version, resources) the stream does not hold yet for `type_url`; None when it is
        up to date or the node has no snapshot. Call with `_cond` held."""
        if st.node not in self._snap:
            return None
        version = self._ver[st.node].get(type_url, _version({}))
        if not sub.dirty and sub.sent_version == version:
            return None
        return version, self._snap[st.node].get(type_url, {})

    def _response(self, st: _Stream, type_url: str, sub: _Sub, nonce: str):
        with self._cond:
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
        with self._cond:
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
                    self._cond.notify_all()
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


def _resource_version(a: any_pb2.Any) -> str:
    return hashlib.sha256(a.value).hexdigest()[:12]
