"""A long-lived ADS server with a local control channel, and the client the sidecar driver uses.

Why: a one-shot `reconciler apply` ends, and with it any ADS server it hosts; grpc's xDS
clients then back off (up to minutes) before they reconnect, so the next apply could not push.
The lab therefore runs one ADS server for its whole life (`lab up` starts it, `lab down`
ends it); `apply`, `serve` and `serve-xds` hand it snapshots and read the ACK/NACK records
back through the control channel instead of binding the ADS port themselves.

Contract:
- `control_path(address)`: the control socket of the ADS server serving `address` (host:port):
  `<RUN_DIR>/<host>_<port>.sock`. RUN_DIR (env RECONCILER_ADS_RUN_DIR, default
  /run/netintent/ads) is made 0700 and the socket 0600: the channel is authenticated by
  file-system permissions (only root, or the user running the reconciler, can connect).
- `serve(address, ...)` (`python -m reconciler.xds.relay --listen HOST:PORT`): runs XdsServer
  on `address` and, on the control socket, a gRPC service (`/netintent.ads.Control/Call`,
  JSON in and out) exposing the SnapshotCache operations the sidecar driver uses: has,
  set_node, resources, owners, versions, status, connected, subscriptions, wait_for. Resources travel as
  serialized `Any`s. Writes the ready file when both listen; stops on SIGTERM/SIGINT.
- `RemoteCache(path)` implements those operations over the channel (same signatures and
  return types as SnapshotCache), so `SidecarDriver(cache=RemoteCache(...))` works unchanged.
  `RemoteCache.reachable()` says whether a server answers there.
"""
from __future__ import annotations

import argparse
import base64
import json
import os
import signal
import sys
import threading
from concurrent import futures
from pathlib import Path
from typing import Any, Mapping

import grpc
from google.protobuf import any_pb2

from reconciler.xds.cache import AckState, SnapshotCache, TypeStatus
from reconciler.xds.paths import control_path, run_dir  # noqa: F401 (re-exported)

METHOD = "/netintent.ads.Control/Call"


# ---- wire forms ---------------------------------------------------------------------------
def _pack(msg: Any) -> str:
    if not isinstance(msg, any_pb2.Any):
        a = any_pb2.Any()
        a.Pack(msg, deterministic=True)
        msg = a
    return base64.b64encode(msg.SerializeToString(deterministic=True)).decode()


def _unpack(data: str) -> any_pb2.Any:
    a = any_pb2.Any()
    a.ParseFromString(base64.b64decode(data))
    return a


def _res_out(res: Mapping[str, Mapping[str, Any]]) -> dict:
    return {t: {n: _pack(m) for n, m in items.items()} for t, items in res.items()}


def _res_in(res: Mapping[str, Mapping[str, str]]) -> dict[str, dict[str, any_pb2.Any]]:
    return {t: {n: _unpack(d) for n, d in items.items()} for t, items in res.items()}


def _st_out(st: TypeStatus) -> dict:
    return {"version": st.version, "state": st.state.value, "error": st.error, "streams": st.streams}


def _st_in(d: Mapping[str, Any]) -> TypeStatus:
    return TypeStatus(d["version"], AckState(d["state"]), d.get("error", ""), int(d.get("streams", 0)))


# ---- server side --------------------------------------------------------------------------
def _handler(cache: SnapshotCache):
    def call(request: bytes, context: Any) -> bytes:
        req = json.loads(request)
        op, a = req["op"], req.get("args") or {}
        if op == "has":
            out: Any = cache.has(a["node"])
        elif op == "set_node":
            owners = None if a.get("owners") is None else {(t, n): app for t, n, app in a["owners"]}
            out = cache.set_node(a["node"], _res_in(a["resources"]), owners)
        elif op == "resources":
            out = _res_out(cache.resources(a["node"]))
        elif op == "owners":
            out = [[t, n, app] for (t, n), app in cache.owners(a["node"]).items()]
        elif op == "versions":
            out = cache.versions(a["node"])
        elif op == "status":
            out = {t: _st_out(s) for t, s in cache.status(a["node"]).items()}
        elif op == "connected":
            out = cache.connected(a["node"])
        elif op == "subscriptions":
            out = cache.subscriptions(a["node"])
        elif op == "wait_for":
            got = cache.wait_for(a["expected"], min(float(a["timeout_s"]), 120.0), bool(a.get("settle_no_stream")))
            out = {n: {t: _st_out(s) for t, s in ts.items()} for n, ts in got.items()}
        else:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"unknown op {op!r}")
        return json.dumps({"result": out}).encode()
    return grpc.method_handlers_generic_handler(
        "netintent.ads.Control", {"Call": grpc.unary_unary_rpc_method_handler(call)})


def start_control(cache: SnapshotCache, path: Path) -> grpc.Server:
    path.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    path.unlink(missing_ok=True)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
    server.add_generic_rpc_handlers((_handler(cache),))
    old = os.umask(0o177)   # the socket is created 0600
    try:
        if not server.add_insecure_port(f"unix:{path}"):
            raise RuntimeError(f"cannot listen on {path}")
    finally:
        os.umask(old)
    server.start()
    return server


def serve(address: str, ready_file: str | None = None, stop: threading.Event | None = None) -> int:
    from reconciler.xds.server import XdsServer
    stop = stop or threading.Event()
    xds = XdsServer(address)
    xds.start()
    path = control_path(xds.target)   # the bound port when `address` asked for any (:0)
    control = start_control(xds.cache, path)
    mine = path.stat().st_ino
    if ready_file:
        tmp = ready_file + ".tmp"
        Path(tmp).write_text(json.dumps({"pid": os.getpid(), "address": xds.target, "control": str(path)}))
        os.replace(tmp, ready_file)
    try:
        stop.wait()
    finally:
        control.stop(0.2)
        xds.stop()
        try:
            if path.stat().st_ino == mine:   # not a successor's socket
                path.unlink()
        except FileNotFoundError:
            pass
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="ADS server with a local control channel (the lab's)")
    ap.add_argument("--listen", required=True, help="ADS address HOST:PORT")
    ap.add_argument("--ready-file")
    args = ap.parse_args(argv)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        return serve(args.listen, args.ready_file, stop)
    except RuntimeError as e:
        print(f"ads relay: {e}", file=sys.stderr)
        return 2


# ---- client side --------------------------------------------------------------------------
class RemoteCache:
    """The SnapshotCache operations of a relay, over its control socket."""

    def __init__(self, path: str | os.PathLike, timeout: float = 10.0) -> None:
        self.path = Path(path)
        self.timeout = timeout
        self._channel = grpc.insecure_channel(f"unix:{self.path}")
        self._call = self._channel.unary_unary(METHOD)

    def _do(self, op: str, timeout: float | None = None, **args: Any) -> Any:
        resp = self._call(json.dumps({"op": op, "args": args}).encode(), timeout=timeout or self.timeout)
        return json.loads(resp)["result"]

    def reachable(self) -> bool:
        try:
            self._do("has", timeout=2.0, node="")
            return True
        except grpc.RpcError:
            return False

    def has(self, node: str) -> bool:
        return bool(self._do("has", node=node))

    def set_node(self, node: str, resources: Mapping[str, Mapping[str, Any]],
                 owners: Mapping[tuple[str, str], str] | None = None) -> dict[str, str]:
        return self._do("set_node", node=node, resources=_res_out(resources),
                        owners=None if owners is None else [[t, n, a] for (t, n), a in owners.items()])

    def resources(self, node: str) -> dict[str, dict[str, any_pb2.Any]]:
        return _res_in(self._do("resources", node=node))

    def owners(self, node: str) -> dict[tuple[str, str], str]:
        return {(t, n): a for t, n, a in self._do("owners", node=node)}

    def versions(self, node: str) -> dict[str, str]:
        return dict(self._do("versions", node=node))

    def status(self, node: str) -> dict[str, TypeStatus]:
        return {t: _st_in(s) for t, s in self._do("status", node=node).items()}

    def connected(self, node: str) -> int:
        return int(self._do("connected", node=node))

    def subscriptions(self, node: str) -> dict[str, list[str] | None]:
        return dict(self._do("subscriptions", node=node))

    def wait_for(self, expected: Mapping[str, Mapping[str, str]], timeout: float,
                 settle_no_stream: bool = False) -> dict[str, dict[str, TypeStatus]]:
        got = self._do("wait_for", timeout=timeout + self.timeout, expected=expected, timeout_s=timeout,
                       settle_no_stream=settle_no_stream)
        return {n: {t: _st_in(s) for t, s in ts.items()} for n, ts in got.items()}

    def close(self) -> None:
        self._channel.close()


if __name__ == "__main__":
    sys.exit(main())
