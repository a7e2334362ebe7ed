"""gRPC probes of callers the intents do not allow: a direct dial with the caller's own certificate.

Contract: for a pair the intents do not allow, the model (verify/sidecar.py, AUTO) judges a caller
that dials the destination directly, speaking what the server wants and presenting the SPIFFE
identity of its own service. `probe_direct(lab, pairs, calls, timeout_s)` reproduces exactly that
with real gRPC: per source host, one probe workload (labs/workloads/agent.py) in the source's
network namespace, under its own xDS node id `verify-probe-<host>` (the node's own config and
observed state are untouched), with a certificate for the source's identity issued by the
reconciler's CA; the lab ADS server is given, for that node only, one listener/route/cluster/
endpoints per destination (`xds:///verify-probe-<ip>-<port>`, mTLS with the source's provider
when the model's TLS hop says the server speaks TLS, one endpoint: the destination instance).
Only pairs whose L4 verdict is delivered are probed (where L4 drops, the TCP probe confirms it).
It returns (pairs probed, defects, pairs skipped): `Defect`-shaped tuples where the server's
answers (>= 1 answered call = delivered) disagree with the `rpc` verdict. The probe node's
snapshot is emptied and the workload stopped afterwards, whatever happens. Every call has a
deadline, every wait a bound.
"""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Sequence

from reconciler.verify.grpc_probe import Pair, RpcDefect
from reconciler.verify.verdict import DELIVERED, DROPPED

PROBE_NODE = "verify-probe-{host}"
ADMIN_OFFSET = 20       # admin port of the probe workload: the lab's default + this


def direct_pairs(chosen: Sequence[Pair], callers: set[str]) -> tuple[dict[str, list[Pair]], int]:
    """Pairs judged without the caller's xDS client, per source host; and how many must be skipped."""
    out: dict[str, list[Pair]] = {}
    skipped = 0
    for p in chosen:
        s, d, _, v = p
        if v.l4 != DELIVERED or v.rpc not in (DELIVERED, DROPPED) or any(h.what == "xds-client" for h in v.hops):
            continue        # a TCP drop is the TCP probe's to confirm; an xDS-client path is grpc_probe's
        if s.host is None or s.host not in callers or not s.identity:
            skipped += 1
            continue
        out.setdefault(s.host, []).append(p)
    return out, skipped


def authority(ip: str, port: int) -> str:
    return f"verify-probe-{ip.replace('.', '-')}:{port}"


def snapshot(pairs: Sequence[Pair]) -> dict[str, dict[str, Any]]:
    """The probe node's resources: one direct path per destination."""
    from reconciler.compile.sidecar import provider_name
    from reconciler.xds import resources as R
    snap: dict[str, dict[str, Any]] = {t: {} for t in R.TYPE_URLS}
    for s, d, _, v in pairs:
        name = authority(d.address, d.port)
        prov = provider_name(s.app, s.service)
        plain = any(h.what == "tls" and h.rule == "plaintext" for h in v.hops)
        tls = None if plain else {"cert_provider": prov, "ca_provider": prov, "peer_ids": []}
        specs: list[tuple[str, dict[str, Any]]] = [
                 ("listener", {"route": name, "config_source": "ads", "http_filters": ["router"]}),
                 ("route", {"domains": [name], "clusters": [{"name": name, "weight": 1}],
                            "timeout_ms": None, "retries": None}),
                 ("cluster", {"eds": name, "lb": "round_robin", "tls": tls}),
                 ("endpoints", {"localities": [{"weight": 1, "endpoints": [{"address": d.address,
                                                                            "port": d.port}]}]})]
        for kind, spec in specs:
            snap[R.type_url_of(kind)][name] = R.to_proto(kind, name, spec)
    return snap


def probe_direct(lab: Any, chosen: Sequence[Pair], calls: int = 10, timeout_s: float = 1.0
                 ) -> tuple[int, list[RpcDefect], int]:
    from reconciler.verify.grpc_probe import callers_of
    per_host, skipped = direct_pairs(chosen, callers_of(lab))
    defects: list[RpcDefect] = []
    probed = 0
    for host, pairs in sorted(per_host.items()):
        with tempfile.TemporaryDirectory(prefix="verify-probe-") as tmp:
            defects += _probe_host(lab, host, pairs, Path(tmp), calls, timeout_s)
        probed += len(pairs)
    return probed, defects, skipped


def _probe_host(lab: Any, host: str, pairs: Sequence[Pair], tmp: Path, calls: int,
                timeout_s: float) -> list[RpcDefect]:
    from reconciler.compile.sidecar import provider_name
    from reconciler.lab.grpc_checks import admin_address
    from reconciler.lab.workloads import DEFAULT_ADMIN_PORT
    from reconciler.xds.bootstrap import write_workload_files
    from reconciler.xds.ca import CA, default_ca_dir
    from reconciler.xds.relay import RemoteCache, control_path
    from reconciler.xds.workload import Workload

    ca = CA.load(default_ca_dir())
    if ca is None:
        return [_failed(p, host, f"no reconciler CA in {default_ca_dir()}") for p in pairs]
    node = PROBE_NODE.format(host=host)
    idents = {provider_name(s.app, s.service): s.identity or "" for s, _, _, _ in pairs}
    boot = write_workload_files(tmp, node, lab.ads_address, ca, idents)
    targets = {(d.address, d.port): f"xds:///{authority(d.address, d.port)}" for _, d, _, _ in pairs}
    cache = RemoteCache(control_path(lab.ads_address))
    try:
        cache.set_node(node, snapshot(pairs), None)
        w = Workload(node, tmp / "w", boot, warm=sorted(targets.values()),
                     admin=admin_address(lab, host, DEFAULT_ADMIN_PORT + ADMIN_OFFSET), netns=lab.netns(host))
        with w:
            tallies = {k: w.run(t, n=calls, timeout_s=timeout_s, concurrency=calls) for k, t in targets.items()}
    except Exception as exc:        # the probe could not run: every pair of the host is unconfirmed
        return [_failed(p, host, f"{type(exc).__name__}: {str(exc)[:200]}") for p in pairs]
    finally:
        try:
            cache.set_node(node, {}, None)
        finally:
            cache.close()
    return [d for p in pairs if (d := _judge(p, host, tallies[(p[1].address, p[1].port)])) is not None]


def _judge(p: Pair, host: str, tally: dict) -> RpcDefect | None:
    s, d, _, v = p
    n = sum((tally.get("servers") or {}).values())
    if (n > 0) == (v.rpc == DELIVERED):
        return None
    errors = tally.get("errors") or {}
    return RpcDefect(s.id, d.id, f"rpc {v.rpc}", "gRPC answered" if n else "gRPC not answered",
                     f"grpc direct from {host} with {s.identity}: {n} answered, errors {dict(errors)} "
                     f"{tally.get('first_error') or ''}".rstrip())


def _failed(p: Pair, host: str, why: str) -> RpcDefect:
    s, d, _, v = p
    return RpcDefect(s.id, d.id, f"rpc {v.rpc}", "gRPC probe failed", f"grpc direct from {host}: {why}")
