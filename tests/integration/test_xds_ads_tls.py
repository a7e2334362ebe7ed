"""TLS on the ADS connection: a workload whose bootstrap uses `tls` channel creds (CA from
our lab CA) gets its config from an ADS server started with `tls_credentials`; one with
plaintext creds gets nothing (its RPCs never succeed)."""
from __future__ import annotations

import json

import pytest
from xds_helpers import compile_nodes, loopback_addr, shop_app, wait_until

from reconciler.drivers.sidecar import SidecarDriver
from reconciler.xds.bootstrap import write_workload_files
from reconciler.xds.ca import CA
from reconciler.xds.server import XdsServer, tls_credentials
from reconciler.xds.workload import Workload

HOSTS = ("w1", "a1", "a2")


@pytest.fixture
def tls_server(tmp_path):
    ca = CA.create("test.example")
    cert, key = ca.issue("spiffe://test.example/reconciler", dns=("localhost",))
    (tmp_path / "ads.pem").write_bytes(cert)
    (tmp_path / "ads.key").write_bytes(key)
    (tmp_path / "ca.pem").write_bytes(ca.ca_pem)
    server = XdsServer("localhost:0", credentials=tls_credentials(
        str(tmp_path / "ads.pem"), str(tmp_path / "ads.key")))
    server.start()
    procs: list[Workload] = []
    try:
        yield server, ca, tmp_path, procs
    finally:
        for p in procs:
            p.stop()
        server.stop()


def test_ads_over_tls(tls_server):
    server, ca, tmp, procs = tls_server
    net, port = loopback_addr()
    nodes = compile_nodes({"shop": shop_app(net, port, web_address="127.0.0.1")}, HOSTS)
    from reconciler.drivers.base import Target, TargetPlan
    from reconciler.model import Layer
    SidecarDriver(server, ack_timeout=0.5).apply(
        [TargetPlan(Target(n, Layer.SIDECAR), (), tuple(rs), (), True) for n, rs in nodes.items()])
    uri = f"localhost:{server.port}"
    tls = {"ca": str(tmp / "ca.pem")}

    def start(node, serve=(), warm=(), ads_tls=tls):
        boot = write_workload_files(tmp / node, node, uri, ca, {}, ads_tls)
        w = Workload(node, tmp / node, boot, serve=serve, warm=warm)
        procs.append(w)
        return w.start()

    start("a1", serve=[("v1", net + "21", port)])
    start("a2", serve=[("v2", net + "22", port)])
    target = f"xds:///api.shop:{port}"
    w1 = start("w1", warm=[target])
    assert json.loads((tmp / "w1" / "bootstrap.json").read_text())["xds_servers"][0]["channel_creds"][0]["type"] == "tls"
    ok = wait_until(lambda: (t := w1.run(target, n=20, timeout_s=2)) and not t["errors"] and t, 15)
    assert ok and sum(ok["servers"].values()) == 20, ok

    plain = start("p1", warm=[target], ads_tls=None)  # plaintext to a TLS port: no config
    t = plain.run(target, n=1, timeout_s=2)
    assert t["servers"] == {} and t["errors"], t
    assert server.cache.connected("p1") == 0  # its plaintext ADS stream never got through
    assert server.cache.connected("w1") > 0
