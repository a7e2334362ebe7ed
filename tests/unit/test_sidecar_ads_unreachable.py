"""A sidecar node that never opened an ADS stream is UNREACHABLE, and the report names the ADS
address its bootstrap was given (`netintent_ads`), so "the host cannot reach the ADS server" is
told apart from "the workload is down"."""
from reconciler.drivers.base import Target, TargetPlan
from reconciler.drivers.sidecar import SidecarDriver
from reconciler.model import Layer, Resource, ResourceKey
from reconciler.status import Outcome
from reconciler.xds.cache import SnapshotCache


def test_no_stream_names_the_ads_address_of_the_bootstrap():
    name = "grpc/server?xds.resource.listening_address=10.0.0.5:80"
    spec = {"address": "10.0.0.5", "port": 80, "http_filters": ["rbac", "router"], "tls": None,
            "rbac": {"principals": [], "source_ips": []}}
    want = Resource(ResourceKey(Layer.SIDECAR, "h9", "server-listener", name), spec, "app")
    driver = SidecarDriver(cache=SnapshotCache(), ack_timeout=0.2)
    plan = TargetPlan(Target("h9", Layer.SIDECAR, {"netintent_ads": "172.20.20.1:18001"}), (), (want,), (), True)
    res = driver.apply([plan])["h9"]
    assert res.outcome is Outcome.UNREACHABLE
    assert "172.20.20.1:18001" in res.error and "no ADS stream from node h9" in res.error


def test_a_snapshot_set_before_and_never_fetched_is_still_no_stream():
    """A workload restarted where the ADS server cannot be reached: its snapshot is already set
    (the version does not move), so nothing is pushed; the node is UNREACHABLE all the same,
    not a quiet no-op that leaves the change 'still differing' with no reason given."""
    name = "grpc/server?xds.resource.listening_address=10.0.0.5:80"
    spec = {"address": "10.0.0.5", "port": 80, "http_filters": ["rbac", "router"], "tls": None,
            "rbac": {"principals": [], "source_ips": []}}
    want = Resource(ResourceKey(Layer.SIDECAR, "h9", "server-listener", name), spec, "app")
    driver = SidecarDriver(cache=SnapshotCache(), ack_timeout=0.2)
    plan = TargetPlan(Target("h9", Layer.SIDECAR, {"netintent_ads": "172.20.20.1:18001"}), (), (want,), (), True)
    driver.apply([plan])
    again = driver.apply([plan])["h9"]
    assert again.outcome is Outcome.UNREACHABLE and again.writes == 0
    assert "172.20.20.1:18001" in again.error
