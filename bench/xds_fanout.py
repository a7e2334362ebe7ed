#!/usr/bin/env python3
"""Bench: ADS fan-out of reconciler.xds.server to N concurrent client streams on loopback.

The ADS server runs in this process. The load comes from `--procs` client processes (default:
one per core; reconciler/xds/loadgen.py), each running its share of the N streams on grpc.aio,
`--per-conn` streams per HTTP/2 connection (each channel gets its own connection), one stream
per xDS node, subscribing to one Listener and two Clusters and ACKing every response. Clients
connect their channels first and open their streams together on a go signal, so the figures
are the server's and not the clients' start-up. Measured and printed (with the CPU seconds
the server and the clients spent meanwhile):
  - time from the go signal to every stream's ACK of its initial config (at the server)
  - per round: time from a change of every node's resources (start of setting the
    snapshots) to the ACK of every node (target <= 1 s)
  - time from a change of one node to its ACK, and that no other stream got a push
  - resident memory of the server process with the snapshots and with the N streams
A stream the server refuses or drops is reported with its status code (it is not retried).
Every wait is bounded; the client processes are killed on exit.
Usage: python bench/xds_fanout.py [--streams 1000] [--procs 2] [--per-conn 100] [--rounds 5]
                                  [--delta] [--timeout 60]
"""
from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import time

# bench/ holds other scripts (e.g. validate.py) that would shadow packages the protos import
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]


def cpu_s(pid: int | None = None) -> float:
    """User + system CPU seconds of a process (all its threads) so far."""
    with open(f"/proc/{pid or 'self'}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def clients_cpu_s(clients) -> float:
    return sum(cpu_s(p) for p in clients.pids())


class GcPauses:
    """Time this process spends in the cyclic garbage collector (every thread waits for it)."""

    total = 0.0
    runs = 0
    _t0 = 0.0

    @classmethod
    def _callback(cls, phase: str, info: dict) -> None:
        if phase == "start":
            cls._t0 = time.perf_counter()
        else:
            cls.total += time.perf_counter() - cls._t0
            cls.runs += 1

    def __init__(self) -> None:
        if GcPauses._callback not in gc.callbacks:
            gc.callbacks.append(GcPauses._callback)
        self.since = (GcPauses.runs, GcPauses.total)

    def __str__(self) -> str:
        return f"{GcPauses.runs - self.since[0]} GC runs, {(GcPauses.total - self.since[1]) * 1000:.0f} ms"


def rss_mb(pid: int | None = None) -> float:
    with open(f"/proc/{pid or 'self'}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--streams", type=int, default=1000)
    ap.add_argument("--procs", type=int, default=os.cpu_count() or 1, help="client processes")
    ap.add_argument("--per-conn", type=int, default=100, help="ADS streams per HTTP/2 connection")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--delta", action="store_true", help="clients use incremental (delta) xDS")
    ap.add_argument("--timeout", type=float, default=60, help="bound of every wait, s")
    return run(ap.parse_args())


def run(args) -> int:
    sys.path.append(os.path.dirname(_HERE))
    from reconciler.xds import resources as R
    from reconciler.xds.loadgen import LoadClients, node_id, snapshot
    from reconciler.xds.server import AckState, XdsServer

    n = args.streams
    nodes = [node_id(i) for i in range(n)]
    rss0 = rss_mb()
    server = XdsServer("127.0.0.1:0")
    server.start()
    server.cache.set_nodes({node: snapshot("svc:80-r0") for node in nodes})
    clients = LoadClients(server.target, n, args.procs, args.per_conn, args.delta)
    try:
        clients.wait_ready(args.timeout)
        gc.collect()
        rss_idle = rss_mb()
        kind = "delta" if args.delta else "SotW"
        print(f"{n} {kind} ADS streams from {args.procs} client processes, {args.per_conn} streams per connection "
              f"({(n + args.per_conn - 1) // args.per_conn} connections), {os.cpu_count()} cores")
        want = {node: {t: v[t] for t in (R.LISTENER, R.CLUSTER)}
                for node, v in ((nd, server.cache.versions(nd)) for nd in nodes)}
        cpu0, gc_pauses = (cpu_s(), clients_cpu_s(clients)), GcPauses()
        t0 = clients.go()
        st = server.cache.wait_for(want, args.timeout)
        t_initial = time.monotonic() - t0
        cpu = (cpu_s() - cpu0[0], clients_cpu_s(clients) - cpu0[1])
        acked = sum(all(s.state is AckState.ACKED for s in v.values()) for v in st.values())
        time.sleep(0.3)  # one more client report
        received, first_at, errors = clients.read()
        got = [t for t in first_at if t is not None]
        print(f"initial config: {acked}/{n} streams ACKed in {t_initial:.2f} s; first response at the client "
              f"after median {statistics.median(got) - t0:.2f} s, max {max(got) - t0:.2f} s" if got else
              f"initial config: {acked}/{n} streams ACKed in {t_initial:.2f} s; no client got a response")
        print(f"  meanwhile: CPU server {cpu[0]:.2f} s, clients {cpu[1]:.2f} s; server {gc_pauses}")
        if errors:
            print(f"streams that failed: {errors}")
        if acked < n:
            print(f"FAIL: {n - acked} streams without their initial config after {args.timeout:.0f} s")
            return 1
        gc.collect()
        rss_streams = rss_mb()
        times = rounds(server, clients, nodes, args.rounds, args.timeout)
        one_node(server, clients, nodes)
        print(f"all-node change to all ACKs: median {statistics.median(times) * 1000:.0f} ms, "
              f"max {max(times) * 1000:.0f} ms (target <= 1000 ms)")
        print(f"server RSS: {rss0:.0f} MB before start, {rss_idle:.0f} MB with {n} snapshots, "
              f"{rss_streams:.0f} MB with {n} streams (~{(rss_streams - rss_idle) * 1024 / n:.1f} KB per stream); "
              f"client processes RSS {sum(rss_mb(p) for p in clients.pids()):.0f} MB")
        return 0 if max(times) <= 1.0 else 2
    finally:
        clients.close()
        server.stop()


def rounds(server, clients, nodes: list[str], count: int, timeout: float) -> list[float]:
    """Change every node `count` times; each time: seconds from setting to the last ACK."""
    from reconciler.xds import resources as R
    from reconciler.xds.loadgen import snapshot
    from reconciler.xds.server import AckState

    times = []
    for r in range(1, count + 1):
        snap = snapshot(f"svc:80-r{r}")
        cpu0, gc_pauses = (cpu_s(), clients_cpu_s(clients)), GcPauses()
        t0 = time.monotonic()
        versions = server.cache.set_nodes({node: snap for node in nodes})
        t_set = time.monotonic() - t0
        st = server.cache.wait_for({nd: {R.LISTENER: v[R.LISTENER]} for nd, v in versions.items()}, timeout)
        dt = time.monotonic() - t0
        ok = sum(v[R.LISTENER].state is AckState.ACKED for v in st.values())
        times.append(dt if ok == len(nodes) else float("inf"))
        print(f"round {r}: change on all {len(nodes)} nodes -> {ok}/{len(nodes)} ACKed in {dt * 1000:.0f} ms "
              f"(setting snapshots {t_set * 1000:.0f} ms; CPU server {cpu_s() - cpu0[0]:.2f} s, "
              f"clients {clients_cpu_s(clients) - cpu0[1]:.2f} s; {gc_pauses})")
    return times


def one_node(server, clients, nodes: list[str]) -> None:
    from reconciler.xds import resources as R
    from reconciler.xds.loadgen import snapshot

    time.sleep(0.5)
    before = clients.read()[0]
    t0 = time.monotonic()
    v = server.cache.set_node(nodes[0], snapshot("svc:80-one"))
    server.cache.wait_for({nodes[0]: {R.LISTENER: v[R.LISTENER]}}, 10)
    one = time.monotonic() - t0
    time.sleep(0.5)
    after = clients.read()[0]
    pushed = [i for i, (a, b) in enumerate(zip(before, after)) if a != b]
    print(f"change on one node -> ACK in {one * 1000:.1f} ms; streams that got a push: {pushed}")


if __name__ == "__main__":
    sys.exit(main())
