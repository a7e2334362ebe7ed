#!/usr/bin/env python3
"""Lab workload: a gRPC Echo service and client that use grpcio's own xDS support.

Contract: one process per workload host (xDS node). Configuration comes only from the
bootstrap file named by GRPC_XDS_BOOTSTRAP (written by reconciler.xds.bootstrap) and the
arguments; nothing here imports the reconciler, so the file runs on any lab node.

  agent.py --admin 127.0.0.1:0 --ready-file F [--serve NAME@IP:PORT ...] [--warm xds:///T ...]

- every `--serve` starts an xDS-enabled server (`grpc.server(..., xds=True)`, port added
  with `xds_server_credentials`, so TLS and RBAC come from the server Listener the ADS
  server sends) answering `/netintent.lab.Echo/Call` with JSON
  {"server": NAME, "peer": ..., "peer_ids": [URI SANs of the caller's certificate]};
- the admin port (plaintext, loopback or management network) serves CSDS (grpc_csds) and
  `/netintent.lab.Admin/Run`: JSON {"target", "n", "timeout_s", "concurrency", "sleep_ms",
  "fail_every" (servers fail every k-th call they get with UNAVAILABLE)}
  -> {"servers": {NAME: count}, "errors": {CODE: count}, "first_error": str, "elapsed_s"},
  and `/netintent.lab.Admin/Stats` (any request) -> JSON {"started": unix time the counts
  began (a new value = a restart: counts reset), "pid", "buckets": [upper bounds, seconds],
  "targets": {TARGET: {"codes": {CODE: count}, "latency": {"counts": [cumulative count per
  bucket, then +Inf], "sum": seconds, "count": n}}}, "served": {NAME: {CODE: count}}}:
  every call a Run made, per dialed target (e.g. xds:///api.shop:8080), by final status code
  ("OK" or the grpc.StatusCode name) and client-side latency, and every Echo call a served
  name answered, by code. Counts only grow while the process lives (the reconciler's
  telemetry reads them: reconciler/telemetry/rpc.py);
  Clients dial `xds:///` targets with `xds_channel_credentials` (mTLS from the Cluster),
  channels are kept per target so their xDS watches (and CSDS entries) stay alive;
- once the admin port listens, {"admin": port, "pid": pid} is written to the ready file;
  with `--wait-bootstrap` the xDS servers and clients start only once the bootstrap file
  exists (the lab starts workloads before the host layer has written it), CSDS answering
  empty meanwhile; when they are up, "xds": true is added to the ready file.
The process exits on SIGTERM/SIGINT.
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import signal
import sys
import threading
import time
from collections import Counter
from concurrent import futures

import grpc
import grpc.experimental
import grpc_csds

ECHO = "/netintent.lab.Echo/Call"
RUN = "/netintent.lab.Admin/Run"
STATS = "/netintent.lab.Admin/Stats"
# Prometheus' default latency buckets (seconds): fixed, so readers can sum across processes
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)


class Stats:
    """Per-target call counts by status code and latency histogram, per served name codes."""

    def __init__(self) -> None:
        self.started = time.time()
        self._lock = threading.Lock()
        self._codes: dict[str, Counter] = {}
        self._hist: dict[str, list] = {}          # target -> [per-bucket counts (+Inf last), sum]
        self._served: dict[str, Counter] = {}

    def call(self, target: str, code: str, latency_s: float) -> None:
        with self._lock:
            self._codes.setdefault(target, Counter())[code] += 1
            h = self._hist.setdefault(target, [[0] * (len(BUCKETS) + 1), 0.0])
            i = next((i for i, b in enumerate(BUCKETS) if latency_s <= b), len(BUCKETS))
            h[0][i] += 1
            h[1] += latency_s

    def served(self, name: str, code: str) -> None:
        with self._lock:
            self._served.setdefault(name, Counter())[code] += 1

    def snapshot(self, _request: bytes = b"", _context=None) -> bytes:
        with self._lock:
            targets = {}
            for t, codes in self._codes.items():
                per, total = self._hist[t]
                cum = list(itertools.accumulate(per))
                targets[t] = {"codes": dict(codes),
                              "latency": {"counts": cum, "sum": round(total, 6), "count": cum[-1]}}
            served = {n: dict(c) for n, c in self._served.items()}
        return json.dumps({"started": self.started, "pid": os.getpid(), "buckets": list(BUCKETS),
                           "targets": targets, "served": served}).encode()


def _peer_ids(context) -> list[str]:
    try:
        ac = context.auth_context() or {}
    except Exception:
        return []
    out = []
    for k in ("x509_subject_alternative_name", "peer_dns"):
        out += [v.decode() if isinstance(v, bytes) else str(v) for v in ac.get(k, [])]
    return [v for v in out if v.startswith("spiffe://")]


def echo_handler(name: str, plain: bool = False, stats: Stats | None = None) -> grpc.GenericRpcHandler:
    calls = itertools.count(1)
    count = stats.served if stats is not None else (lambda _n, _c: None)

    def call(request: bytes, context) -> bytes:
        try:
            req = json.loads(request or b"{}")
        except ValueError:
            req = {}
        n = next(calls)
        fail_every = int(req.get("fail_every") or 0)
        if fail_every > 0 and n % fail_every == 0:
            # abort() (trailers-only, retryable) crashes grpcio 1.85's xDS server
            # (pipe.h:85 Check failed); set_code works there but sends headers first, which
            # commits the call: clients do not retry it.
            count(name, grpc.StatusCode.UNAVAILABLE.name)
            if plain:
                context.abort(grpc.StatusCode.UNAVAILABLE, f"{name}: injected failure")
            context.set_code(grpc.StatusCode.UNAVAILABLE)
            context.set_details(f"{name}: injected failure")
            return b""
        sleep_ms = int(req.get("sleep_ms") or 0)
        if 0 < sleep_ms <= 60_000:
            time.sleep(sleep_ms / 1000)
        count(name, "OK")
        return json.dumps({"server": name, "peer": context.peer(),
                           "peer_ids": _peer_ids(context)}).encode()
    return grpc.method_handlers_generic_handler(
        "netintent.lab.Echo", {"Call": grpc.unary_unary_rpc_method_handler(call)})


class Client:
    def __init__(self, stats: Stats | None = None) -> None:
        self._channels: dict[str, grpc.Channel] = {}
        self._lock = threading.Lock()
        self.stats = stats if stats is not None else Stats()

    def channel(self, target: str) -> grpc.Channel:
        with self._lock:
            ch = self._channels.get(target)
            if ch is None:
                if target.startswith("xds:"):
                    creds = grpc.xds_channel_credentials(grpc.experimental.insecure_channel_credentials())
                    ch = grpc.secure_channel(target, creds)
                else:
                    ch = grpc.insecure_channel(target)
                self._channels[target] = ch
            return ch

    def run(self, request: bytes, context) -> bytes:
        req = json.loads(request)
        target = str(req["target"])
        n = max(0, min(int(req.get("n", 1)), 100_000))
        timeout = float(req.get("timeout_s", 2.0))
        conc = max(1, min(int(req.get("concurrency", 20)), 200))
        payload = json.dumps({"sleep_ms": int(req.get("sleep_ms", 0)),
                              "fail_every": int(req.get("fail_every", 0))}).encode()
        call = self.channel(target).unary_unary(ECHO)
        servers: Counter = Counter()
        errors: Counter = Counter()
        first_error = ""
        t0 = time.monotonic()
        for start in range(0, n, conc):
            sent = time.monotonic()
            futs = [call.future(payload, timeout=timeout) for _ in range(min(conc, n - start))]
            done: dict[int, float] = {}   # completion times, stamped when each call ends
            for i, f in enumerate(futs):
                f.add_done_callback(lambda _f, i=i: done.setdefault(i, time.monotonic()))
            for i, f in enumerate(futs):
                try:
                    servers[json.loads(f.result())["server"]] += 1
                    code = "OK"
                except grpc.RpcError as e:
                    code = e.code().name
                    errors[code] += 1
                    first_error = first_error or f"{code}: {e.details()}"
                self.stats.call(target, code, done.get(i, time.monotonic()) - sent)
        return json.dumps({"servers": dict(servers), "errors": dict(errors),
                           "first_error": first_error,
                           "elapsed_s": round(time.monotonic() - t0, 3)}).encode()

    def close(self) -> None:
        for ch in self._channels.values():
            ch.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--admin", default="127.0.0.1:0")
    ap.add_argument("--ready-file", required=True)
    ap.add_argument("--serve", action="append", default=[], metavar="NAME@IP:PORT")
    ap.add_argument("--serve-plain", action="append", default=[], metavar="NAME@IP:PORT",
                    help="a plain (not xDS) gRPC server: no TLS/RBAC from the control plane")
    ap.add_argument("--warm", action="append", default=[], metavar="TARGET")
    ap.add_argument("--wait-bootstrap", action="store_true",
                    help="start xDS only once the GRPC_XDS_BOOTSTRAP file exists")
    args = ap.parse_args(argv)
    if not os.environ.get("GRPC_XDS_BOOTSTRAP") and not os.environ.get("GRPC_XDS_BOOTSTRAP_CONFIG"):
        print("agent: GRPC_XDS_BOOTSTRAP is not set", file=sys.stderr)
        return 2
    for spec in args.serve + args.serve_plain:
        name, _, addr = spec.partition("@")
        if not name or ":" not in addr:
            print(f"agent: bad --serve {spec!r} (want NAME@IP:PORT)", file=sys.stderr)
            return 2

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    client = Client()
    admin = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    grpc_csds.add_csds_servicer(admin)
    admin.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
        "netintent.lab.Admin", {"Run": grpc.unary_unary_rpc_method_handler(client.run),
                                "Stats": grpc.unary_unary_rpc_method_handler(client.stats.snapshot)}),))
    port = admin.add_insecure_port(args.admin)
    admin.start()
    ready = {"admin": port, "pid": os.getpid()}
    boot = os.environ.get("GRPC_XDS_BOOTSTRAP", "")
    if args.wait_bootstrap and boot and not os.path.exists(boot):
        _write_ready(args.ready_file, ready)  # CSDS answers (empty) while the host layer is pending
        while not os.path.exists(boot) and not stop.wait(0.2):
            pass
    servers = [] if stop.is_set() else _start_xds(args, client)
    if not stop.is_set():
        _write_ready(args.ready_file, dict(ready, xds=True))
    stop.wait()
    client.close()
    for s in servers + [admin]:
        s.stop(0.2)
    return 0


def _write_ready(path: str, info: dict) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(info, f)
    os.replace(tmp, path)


def _start_xds(args: argparse.Namespace, client: Client) -> list:
    servers = []
    for spec, plain in [(s, False) for s in args.serve] + [(s, True) for s in args.serve_plain]:
        name, _, addr = spec.partition("@")
        srv = grpc.server(futures.ThreadPoolExecutor(max_workers=8), xds=not plain)
        srv.add_generic_rpc_handlers((echo_handler(name, plain, client.stats),))
        if plain:
            srv.add_insecure_port(addr)
        else:
            srv.add_secure_port(addr, grpc.xds_server_credentials(grpc.insecure_server_credentials()))
        srv.start()
        servers.append(srv)
    for t in args.warm:  # connect now: the xDS watches start before the first call
        client.channel(t).subscribe(lambda _state: None, try_to_connect=True)
    return servers


if __name__ == "__main__":
    sys.exit(main())
