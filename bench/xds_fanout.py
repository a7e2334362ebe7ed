#!/usr/bin/env python3
"""Bench: ADS fan-out of reconciler.xds.server to N concurrent client streams on loopback.

The ADS server runs in this process; N lightweight raw ADS clients (grpc.aio, one stream per
xDS node, subscribing to one Listener and two Clusters, ACKing every response) run in a
child process so the server's CPU and memory are its own. Measured and printed:
  - time from a change of every node's resources to the ACK of every node (target <= 1 s)
  - time from a change of one node to its ACK, and that no other stream got a push
  - resident memory of the server process before and with the N streams
Usage: python bench/xds_fanout.py [--streams 1000] [--rounds 5] [--per-conn 50] [--delta]
"""
from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time

# bench/ holds other scripts (e.g. validate.py) that would shadow packages the protos import
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]


def rss_mb(pid: int | None = None) -> float:
    with open(f"/proc/{pid or 'self'}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


# ---- client side (child process) ------------------------------------------------------------
async def _client_main(target: str, n: int, per_conn: int, counts_file: str, delta: bool = False) -> None:
    import grpc
    from envoy.config.core.v3 import base_pb2
    from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2

    lds = "type.googleapis.com/envoy.config.listener.v3.Listener"
    cds = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
    received = [0] * n

    async def delta_stream(stub, i: int) -> None:
        q: asyncio.Queue = asyncio.Queue()
        node = base_pb2.Node(id=f"bench-{i}")
        await q.put(discovery_pb2.DeltaDiscoveryRequest(node=node, type_url=lds,
                                                        resource_names_subscribe=["svc:80"]))
        await q.put(discovery_pb2.DeltaDiscoveryRequest(
            type_url=cds, resource_names_subscribe=["svc:80/v1", "svc:80/v2"]))

        async def requests():
            while True:
                yield await q.get()

        async for resp in stub.DeltaAggregatedResources(requests()):
            received[i] += 1
            await q.put(discovery_pb2.DeltaDiscoveryRequest(type_url=resp.type_url,
                                                            response_nonce=resp.nonce))

    async def stream(stub, i: int) -> None:
        if delta:
            return await delta_stream(stub, i)
        q: asyncio.Queue = asyncio.Queue()
        node = base_pb2.Node(id=f"bench-{i}")
        await q.put(discovery_pb2.DiscoveryRequest(node=node, type_url=lds, resource_names=["svc:80"]))
        await q.put(discovery_pb2.DiscoveryRequest(type_url=cds, resource_names=["svc:80/v1", "svc:80/v2"]))

        async def requests():
            while True:
                yield await q.get()

        call = stub.StreamAggregatedResources(requests())
        async for resp in call:
            received[i] += 1
            names = ["svc:80"] if resp.type_url == lds else ["svc:80/v1", "svc:80/v2"]
            await q.put(discovery_pb2.DiscoveryRequest(
                type_url=resp.type_url, resource_names=names,
                version_info=resp.version_info, response_nonce=resp.nonce))

    channels = [grpc.aio.insecure_channel(target) for _ in range((n + per_conn - 1) // per_conn)]
    stubs = [ads_pb2_grpc.AggregatedDiscoveryServiceStub(c) for c in channels]
    tasks = [asyncio.ensure_future(stream(stubs[i // per_conn], i)) for i in range(n)]

    async def report():
        while True:
            await asyncio.sleep(0.2)
            with open(counts_file + ".tmp", "w") as f:
                f.write(" ".join(map(str, received)))
            os.replace(counts_file + ".tmp", counts_file)

    tasks.append(asyncio.ensure_future(report()))
    await asyncio.gather(*tasks, return_exceptions=True)


# ---- server side (this process) -------------------------------------------------------------
def snapshot(version: int):
    from reconciler.xds import resources as R

    def cluster(name: str):
        return R.to_proto("cluster", name, {"eds": name, "lb": "round_robin", "tls": None})

    route = R.to_proto("listener", "svc:80", {"route": f"svc:80-r{version}", "config_source": "ads",
                                              "http_filters": ["router"]})
    return {R.LISTENER: {"svc:80": route},
            R.CLUSTER: {"svc:80/v1": cluster("svc:80/v1"), "svc:80/v2": cluster("svc:80/v2")},
            R.ROUTE: {}, R.ENDPOINTS: {}}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--streams", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--per-conn", type=int, default=50, help="ADS streams per HTTP/2 connection")
    ap.add_argument("--delta", action="store_true", help="clients use incremental (delta) xDS")
    ap.add_argument("--client", help=argparse.SUPPRESS)
    ap.add_argument("--counts", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.client:
        asyncio.run(_client_main(args.client, args.streams, args.per_conn, args.counts, args.delta))
        return 0

    sys.path.append(os.path.dirname(_HERE))
    from reconciler.xds import resources as R
    from reconciler.xds.server import AckState, XdsServer

    n = args.streams
    nodes = [f"bench-{i}" for i in range(n)]
    rss0 = rss_mb()
    server = XdsServer("127.0.0.1:0")
    server.start()
    counts = f"/tmp/xds-fanout-{os.getpid()}.counts"
    for node in nodes:
        server.cache.set_node(node, snapshot(0))
    rss_idle = rss_mb()
    child = subprocess.Popen([sys.executable, __file__, "--client", server.target, "--streams", str(n),
                              "--per-conn", str(args.per_conn), "--counts", counts]
                             + (["--delta"] if args.delta else []),
                             stdout=subprocess.DEVNULL, start_new_session=True)
    try:
        t0 = time.monotonic()
        want = {node: dict(server.cache.versions(node)) for node in nodes}
        want = {node: {t: v[t] for t in (R.LISTENER, R.CLUSTER)} for node, v in want.items()}
        st = server.cache.wait_for(want, 60)
        acked = sum(all(s.state is AckState.ACKED for s in v.values()) for v in st.values())
        print(f"{n} {'delta' if args.delta else 'SotW'} ADS streams ({args.per_conn} per connection) connected and ACKed the initial "
              f"config: {acked}/{n} in {time.monotonic() - t0:.2f} s")
        if acked < n:
            return 1
        rss_streams = rss_mb()

        times = []
        for r in range(1, args.rounds + 1):
            t0 = time.monotonic()
            versions = {node: server.cache.set_node(node, snapshot(r)) for node in nodes}
            t_set = time.monotonic() - t0
            st = server.cache.wait_for({nd: {R.LISTENER: v[R.LISTENER]} for nd, v in versions.items()}, 30)
            dt = time.monotonic() - t0
            ok = sum(v[R.LISTENER].state is AckState.ACKED for v in st.values())
            times.append(dt)
            print(f"round {r}: change on all {n} nodes -> {ok}/{n} ACKed in {dt * 1000:.0f} ms "
                  f"(setting snapshots {t_set * 1000:.0f} ms)")

        time.sleep(0.5)
        before = open(counts).read().split()
        t0 = time.monotonic()
        v = server.cache.set_node(nodes[0], snapshot(999))
        server.cache.wait_for({nodes[0]: {R.LISTENER: v[R.LISTENER]}}, 10)
        one = time.monotonic() - t0
        time.sleep(0.5)
        after = open(counts).read().split()
        pushed = [i for i, (a, b) in enumerate(zip(before, after)) if a != b]
        print(f"change on one node -> ACK in {one * 1000:.1f} ms; streams that got a push: {pushed}")
        print(f"all-node change to all ACKs: median {statistics.median(times) * 1000:.0f} ms, "
              f"max {max(times) * 1000:.0f} ms (target <= 1000 ms)")
        print(f"server RSS: {rss0:.0f} MB before start, {rss_idle:.0f} MB with {n} snapshots, "
              f"{rss_streams:.0f} MB with {n} streams "
              f"(~{(rss_streams - rss_idle) * 1024 / n:.0f} KB per stream); client process RSS "
              f"{rss_mb(child.pid):.0f} MB")
    finally:
        os.killpg(child.pid, 15)
        try:
            child.wait(5)
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, 9)
            child.wait(5)
        server.stop()
        for p in (counts, counts + ".tmp"):
            if os.path.exists(p):
                os.unlink(p)
    return 0


if __name__ == "__main__":
    sys.exit(main())
