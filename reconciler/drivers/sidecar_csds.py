"""What a workload's CSDS dump says it holds, as the sidecar driver's resources.

Contract: `from_csds(node, entries)` -> (held, asked, errors): every resource the node's xDS
clients hold (the last version they accepted, also when a newer one was NACKed) keyed by
ResourceKey with (type_url, name, spec); the (type_url, name) pairs they asked for; and their
NACKs and unserved subscriptions as messages. `drop_stale(held, served)` removes routes and
endpoints a client still caches after nothing references them and the server no longer
serves them (SotW never deletes them). Pure: no I/O.
"""
from __future__ import annotations

from typing import Any, Mapping

from reconciler.model import Layer, ResourceKey
from reconciler.xds import resources as R

SHORT_TYPE = {R.LISTENER: "LDS", R.ROUTE: "RDS", R.CLUSTER: "CDS", R.ENDPOINTS: "EDS"}

# (type_url, name, spec) per key: what a node holds, before ownership is attached
Held = dict[ResourceKey, tuple[str, str, dict]]


def from_csds(node: str, entries) -> tuple[Held, set[tuple[str, str]], list[str]]:
    """Resources a workload holds (last accepted versions), what it asked for, and its
    NACKs / unserved subscriptions as messages."""
    found: Held = {}
    asked: set[tuple[str, str]] = set()
    errors: list[str] = []
    for e in entries:
        asked.add((e.type_url, e.name))
        short = SHORT_TYPE.get(e.type_url, e.type_url)
        if e.status == "NACKED" or e.error:
            errors.append(f"NACKED {short} {e.name} version {e.rejected_version}: {e.error}")
        if e.config is None:
            if e.status in ("REQUESTED", "DOES_NOT_EXIST"):
                errors.append(f"{short} {e.name} is asked for but not served ({e.status}; its "
                              "RPCs hang until grpc's does-not-exist timer, then fail)")
            continue
        try:
            kind, name, spec = R.from_any(e.config)
        except Exception as ex:  # a resource we cannot read is reported, not fatal
            errors.append(f"unreadable {e.type_url} {e.name}: {ex}")
            continue
        found.setdefault(ResourceKey(Layer.SIDECAR, node, kind, name), (e.type_url, name, spec))
    return found, asked, errors


def drop_stale(found: Held, served: Mapping[str, Mapping[str, Any]]) -> None:
    """SotW never deletes routes/endpoints (absence is not deletion): grpc keeps the last
    ones after the listener/cluster using them is gone. Unreferenced and no longer served,
    they cannot carry traffic: not state."""
    routes = {spec.get("route") for k, (_, _, spec) in found.items() if k.kind == "listener"}
    eds = {spec.get("eds") for k, (_, _, spec) in found.items() if k.kind == "cluster"}
    for k in [k for k, (t, name, _) in found.items()
              if name not in served.get(t, {}) and
              ((k.kind == "route" and k.name not in routes) or
               (k.kind == "endpoints" and k.name not in eds))]:
        del found[k]
