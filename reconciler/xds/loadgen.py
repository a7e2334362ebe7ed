"""ADS load clients in child processes, for bench/xds_fanout.py and the ADS scale test.

Contract: `LoadClients(target, n, procs, per_conn)` starts `procs` child processes
(`python -m reconciler.xds.loadgen`) that together run the streams of nodes `bench-0` ..
`bench-<n-1>`, `per_conn` streams per HTTP/2 connection (every channel gets its own
connection), each stream subscribing to `NAMES` (one Listener, two Clusters) and ACKing every
response, SotW or delta; `snapshot(route)` is the matching resources of a node (its Listener
names `route`, so a new `route` is a change). A child connects its channels, then says ready; `wait_ready(timeout)`
waits for all, `go()` opens every stream at once and returns that instant (`time.monotonic`,
the same clock in every process). `read()` folds the children's reports (written every
0.2 s): responses per stream, when each stream got its first response, and the streams
that failed, by status code and details. A failed stream is not retried, so a server that
refuses or drops streams shows it. `close()` kills the children (their process groups) and
removes their reports; every wait is bounded.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import select
import subprocess
import sys
import time
from pathlib import Path

LDS = "type.googleapis.com/envoy.config.listener.v3.Listener"
CDS = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
NAMES = {LDS: ["svc:80"], CDS: ["svc:80/v1", "svc:80/v2"]}
REPORT_EVERY_S = 0.2


def node_id(i: int) -> str:
    return f"bench-{i}"


def snapshot(route: str) -> dict:
    """type URL -> name -> packed resource: what every load node subscribes to."""
    from google.protobuf import any_pb2

    from reconciler.xds import resources as R

    def packed(kind: str, name: str, spec: dict) -> any_pb2.Any:
        a = any_pb2.Any()
        a.Pack(R.to_proto(kind, name, spec), deterministic=True)
        return a

    listener, (v1, v2) = NAMES[LDS][0], NAMES[CDS]
    return {R.LISTENER: {listener: packed("listener", listener, {"route": route, "config_source": "ads",
                                                                 "http_filters": ["router"]})},
            R.CLUSTER: {c: packed("cluster", c, {"eds": c, "lb": "round_robin", "tls": None}) for c in (v1, v2)},
            R.ROUTE: {}, R.ENDPOINTS: {}}


class LoadClients:
    """`procs` child processes sharing `n` ADS streams; see the module docstring."""

    def __init__(self, target: str, n: int, procs: int, per_conn: int = 100, delta: bool = False,
                 report_dir: str = "/tmp") -> None:
        share = [n // procs + (1 if p < n % procs else 0) for p in range(procs)]
        tag = f"{os.getpid()}-{time.monotonic_ns()}"
        self.reports = [Path(report_dir) / f"xds-load-{tag}-{p}.json" for p in range(procs)]
        self.procs: list[subprocess.Popen] = []
        self.counts = share
        root = Path(__file__).resolve().parents[2]  # the checkout holding reconciler/
        first = 0
        try:
            for p, count in enumerate(share):
                self.procs.append(subprocess.Popen(
                    [sys.executable, "-m", "reconciler.xds.loadgen", target, "--first", str(first),
                     "--streams", str(count), "--per-conn", str(per_conn), "--report", str(self.reports[p])]
                    + (["--delta"] if delta else []),
                    cwd=root, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, start_new_session=True))
                first += count
        except BaseException:
            self.close()
            raise

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for p in self.procs:
            assert p.stdout is not None
            left = deadline - time.monotonic()
            ready = left > 0 and select.select([p.stdout], [], [], left)[0]
            if not ready or p.stdout.readline().strip() != "ready":
                raise RuntimeError(f"load client process {p.pid} not ready within {timeout} s")

    def go(self) -> float:
        for p in self.procs:
            assert p.stdin is not None
            p.stdin.write("go\n")
            p.stdin.flush()
        return time.monotonic()

    def read(self) -> tuple[list[int], list[float | None], dict[str, int]]:
        """(responses per stream, monotonic time of each stream's first response, failures)."""
        received: list[int] = []
        first_at: list[float | None] = []
        errors: dict[str, int] = {}
        for path, count in zip(self.reports, self.counts):
            try:
                r = json.loads(path.read_text())
            except FileNotFoundError:  # not written yet
                r = {"received": [0] * count, "first_at": [None] * count, "errors": {}}
            received += r["received"]
            first_at += r["first_at"]
            for k, v in r["errors"].items():
                errors[k] = errors.get(k, 0) + v
        return received, first_at, errors

    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    def close(self) -> None:
        for p in self.procs:
            try:
                os.killpg(p.pid, 15)
            except ProcessLookupError:
                pass
        for p in self.procs:
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, 9)
                p.wait(5)
            for pipe in (p.stdin, p.stdout):
                if pipe is not None:
                    pipe.close()
        for path in self.reports:
            for f in (path, path.with_name(path.name + ".tmp")):
                f.unlink(missing_ok=True)

    def __enter__(self) -> "LoadClients":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ---- the child process ------------------------------------------------------------------------
async def _run(target: str, first: int, n: int, per_conn: int, report: str, delta: bool) -> None:
    import grpc
    from envoy.config.core.v3 import base_pb2
    from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2

    received = [0] * n
    first_at: list[float | None] = [None] * n
    errors: dict[str, int] = {}

    def request(i: int, type_url: str, nonce: str = "", version: str = "", initial: bool = False):
        if delta:
            req = discovery_pb2.DeltaDiscoveryRequest(
                type_url=type_url, response_nonce=nonce, resource_names_subscribe=NAMES[type_url] if initial else ())
        else:
            req = discovery_pb2.DiscoveryRequest(type_url=type_url, resource_names=NAMES[type_url],
                                                 version_info=version, response_nonce=nonce)
        if initial and type_url == LDS:
            req.node.CopyFrom(base_pb2.Node(id=node_id(first + i)))
        return req

    async def stream(stub, i: int) -> None:
        call = stub.DeltaAggregatedResources() if delta else stub.StreamAggregatedResources()
        try:
            await call.write(request(i, LDS, initial=True))
            await call.write(request(i, CDS, initial=True))
            while (resp := await call.read()) is not grpc.aio.EOF:
                if first_at[i] is None:
                    first_at[i] = time.monotonic()
                received[i] += 1
                await call.write(request(i, resp.type_url, resp.nonce, "" if delta else resp.version_info))
            raise RuntimeError("stream ended by the server")
        except grpc.aio.AioRpcError as e:
            key = f"{e.code().name}: {e.details()}"
            errors[key] = errors.get(key, 0) + 1
        except Exception as e:  # noqa: BLE001 - one stream's failure is data, not a crash
            key = f"{type(e).__name__}: {e}"
            errors[key] = errors.get(key, 0) + 1

    # a subchannel pool per channel, so channels do not share one connection
    channels = [grpc.aio.insecure_channel(target, options=[("grpc.use_local_subchannel_pool", 1)])
                for _ in range((n + per_conn - 1) // per_conn)]
    await asyncio.wait_for(asyncio.gather(*(c.channel_ready() for c in channels)), 30)
    stubs = [ads_pb2_grpc.AggregatedDiscoveryServiceStub(c) for c in channels]
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)  # the go signal
    streams = [asyncio.ensure_future(stream(stubs[i // per_conn], i)) for i in range(n)]
    while streams:  # until killed; keeps the stream tasks referenced
        await asyncio.sleep(REPORT_EVERY_S)
        tmp = report + ".tmp"
        with open(tmp, "w") as f:
            json.dump({"received": received, "first_at": first_at, "errors": errors}, f)
        os.replace(tmp, report)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="ADS load client (child of LoadClients)")
    ap.add_argument("target")
    ap.add_argument("--first", type=int, default=0)
    ap.add_argument("--streams", type=int, required=True)
    ap.add_argument("--per-conn", type=int, default=100)
    ap.add_argument("--report", required=True)
    ap.add_argument("--delta", action="store_true")
    args = ap.parse_args(argv)
    asyncio.run(_run(args.target, args.first, args.streams, args.per_conn, args.report, args.delta))
    return 0


if __name__ == "__main__":
    sys.exit(main())
