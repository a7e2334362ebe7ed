"""gRPC traffic checks on a lab with workloads (the demo, lab tests and benches use them).

Contract:
- `calls(lab, node, target, n)` asks the workload on `node` (its admin port on the management
  network, workloads.py) to make `n` calls to `target` and returns its tally
  {"servers": {instance: count}, "errors": {CODE: count}, "first_error", "elapsed_s"}.
- `share(tally, instances)` is the percentage of answered calls served by `instances`.
- `intruder_calls(lab, node, identity, target, n, workdir)` runs a second workload on `node` with
  the same xDS node id but a certificate for `identity` (issued by the reconciler's CA) under the
  provider names of the node's own services: what a caller with a stolen node id but a
  disallowed identity gets (RBAC on the server refuses it: PERMISSION_DENIED). Ends it after.
- `hand_edit_route(lab, node, route, weights)` changes, behind the reconciler's back, one route
  the lab ADS server serves to `node` (the weighted clusters' weights, in order), keeping its
  ownership: the sidecar drift of an old version a workload then holds.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

from reconciler.lab.workloads import DEFAULT_ADMIN_PORT


def admin_address(lab: Any, node: str, port: int = DEFAULT_ADMIN_PORT) -> str:
    return f"{lab.mgmt_ip(node)}:{port}"


def calls(lab: Any, node: str, target: str, n: int = 100, timeout_s: float = 2.0, concurrency: int = 20,
          admin: str | None = None) -> dict:
    import grpc
    req = json.dumps({"target": target, "n": n, "timeout_s": timeout_s, "concurrency": concurrency}).encode()
    bound = 10.0 + n * timeout_s / max(1, concurrency)
    with grpc.insecure_channel(admin or admin_address(lab, node)) as ch:
        return json.loads(ch.unary_unary("/netintent.lab.Admin/Run")(req, timeout=bound))


def share(tally: dict, instances: Sequence[str]) -> float:
    total = sum(tally.get("servers", {}).values())
    return 100.0 * sum(tally.get("servers", {}).get(i, 0) for i in instances) / total if total else 0.0


def intruder_calls(lab: Any, node: str, providers: Sequence[str], identity: str, target: str, n: int,
                   workdir: Path, admin_port: int = DEFAULT_ADMIN_PORT + 10) -> dict:
    from reconciler.xds.bootstrap import write_workload_files
    from reconciler.xds.ca import CA, default_ca_dir
    from reconciler.xds.workload import Workload

    ca = CA.load(default_ca_dir())
    if ca is None:
        raise RuntimeError(f"no reconciler CA in {default_ca_dir()} (apply first)")
    boot = write_workload_files(workdir, node, lab.ads_address, ca, {p: identity for p in providers})
    w = Workload(f"{node}-intruder", workdir, boot, warm=[target], admin=admin_address(lab, node, admin_port),
                 netns=lab.netns(node))
    with w:
        return w.run(target, n=n)


def hand_edit_route(lab: Any, node: str, route: str, weights: Sequence[int]) -> None:
    from reconciler.xds import resources as R
    from reconciler.xds.relay import RemoteCache, control_path

    cache = RemoteCache(control_path(lab.ads_address))
    try:
        snap = cache.resources(node)
        a = snap[R.ROUTE][route]
        kind, name, spec = R.from_any(a)
        spec = dict(spec)
        spec["clusters"] = [dict(c, weight=w) for c, w in zip(spec["clusters"], weights)]
        snap[R.ROUTE][route] = R.to_proto(kind, name, spec)
        versions = cache.set_node(node, snap, None)   # None: ownership of names still there is kept
        cache.wait_for({node: {R.ROUTE: versions[R.ROUTE]}}, 5.0)   # the workload holds it now
    finally:
        cache.close()
