"""ADS at scale: a burst of thousands of streams all get their initial config, and a change to
every node is ACKed by all of them.

Regression: grpc.aio accepts one call per event-loop round trip, and grpc core refused calls
queued past 1,000 (at random up to 3,000, all of them past it) with RESOURCE_EXHAUSTED, so a
burst of 1,500-5,000 streams left 1-20 % of them without any config, forever. The load comes
from 2 client processes (reconciler/xds/loadgen.py: raw grpc.aio ADS streams that never
retry, so a refused stream stays refused) on loopback; every wait is bounded.
"""
from __future__ import annotations

from reconciler.xds import resources as R
from reconciler.xds.loadgen import LoadClients, node_id, snapshot
from reconciler.xds.server import AckState, XdsServer

STREAMS = 3000
PROCS = 2
BOUND_S = 30.0  # ~3 s here on 2 cores; generous for a loaded CI machine


def _not_acked(waited: dict) -> list[str]:
    return [node for node, types in waited.items() if not all(s.state is AckState.ACKED for s in types.values())]


def test_a_burst_of_streams_all_get_their_config_and_ack_a_change_to_every_node(tmp_path):
    server = XdsServer("127.0.0.1:0")
    server.start()
    try:
        nodes = [node_id(i) for i in range(STREAMS)]
        versions = server.cache.set_nodes({n: snapshot("r0") for n in nodes})
        with LoadClients(server.target, STREAMS, PROCS, per_conn=100, report_dir=str(tmp_path)) as clients:
            clients.wait_ready(BOUND_S)
            clients.go()
            waited = server.cache.wait_for(
                {n: {t: v[t] for t in (R.LISTENER, R.CLUSTER)} for n, v in versions.items()}, BOUND_S)
            missing = _not_acked(waited)
            assert not missing, (f"{len(missing)} of {STREAMS} streams without their initial config after "
                                 f"{BOUND_S} s; client-side failures: {clients.read()[2]}")
            assert server.open_streams == STREAMS

            versions = server.cache.set_nodes({n: snapshot("r1") for n in nodes})
            waited = server.cache.wait_for({n: {R.LISTENER: v[R.LISTENER]} for n, v in versions.items()}, BOUND_S)
            missing = _not_acked(waited)
            assert not missing, f"{len(missing)} of {STREAMS} nodes did not ACK a change within {BOUND_S} s"
            assert clients.read()[2] == {}
    finally:
        server.stop()
