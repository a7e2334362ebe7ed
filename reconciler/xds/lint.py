"""Lint of normalised sidecar specs: configurations grpcio ACKs but cannot use.

Contract: `lint([(kind, name, spec)])` over one node's resources returns human-readable
problems, each starting with "kind/name:" of the resource at fault: virtual host domains
not matching the target of the listener using the route, localities without a
load_balancing_weight, a last HTTP filter that is not the router, RDS sources other than
ADS, dangling references, and server listeners whose name does not match their address.
These are the silent failure modes: the client ACKs, then RPCs fail UNAVAILABLE. Pure.
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping

from reconciler.names import server_listener_name


def lint(resources: Iterable[tuple[str, str, Mapping[str, Any]]]) -> list[str]:
    """Problems in one node's resources [(kind, name, spec)] that make RPCs fail silently."""
    res = {(k, n): s for k, n, s in resources}
    problems: list[str] = []
    for (kind, name), spec in sorted(res.items()):
        where = f"{kind}/{name}"
        if kind == "listener":
            filters = list(spec.get("http_filters") or ())
            if not filters or filters[-1] != "router":
                problems.append(f"{where}: last HTTP filter must be the router, got {filters}")
            if spec.get("config_source") != "ads":
                problems.append(f"{where}: RDS config source must be ads, got {spec.get('config_source')!r}")
            if ("route", spec.get("route")) not in res:
                problems.append(f"{where}: route {spec.get('route')!r} is not served")
        elif kind == "route":
            domains = list(spec.get("domains") or ())
            for (k2, lname), lspec in sorted(res.items()):
                if k2 == "listener" and lspec.get("route") == name and \
                        lname not in domains and "*" not in domains:
                    problems.append(f"{where}: domains {domains} do not match the target "
                                    f"{lname!r} of the listener using it")
            total = 0
            for c in spec.get("clusters") or ():
                total += int(c.get("weight") or 0)
                if ("cluster", c.get("name")) not in res:
                    problems.append(f"{where}: cluster {c.get('name')!r} is not served")
            if not spec.get("clusters") or total <= 0:
                problems.append(f"{where}: no cluster with a positive weight")
        elif kind == "cluster":
            if ("endpoints", spec.get("eds")) not in res:
                problems.append(f"{where}: endpoints {spec.get('eds')!r} are not served")
        elif kind == "endpoints":
            for i, loc in enumerate(spec.get("localities") or ()):
                if not loc.get("weight"):
                    problems.append(f"{where}: locality {i} has no load_balancing_weight "
                                    "(grpc ignores it: RPCs fail UNAVAILABLE)")
            if not any(loc.get("endpoints") for loc in spec.get("localities") or ()):
                problems.append(f"{where}: no endpoints")
        elif kind == "server-listener":
            filters = list(spec.get("http_filters") or ())
            if not filters or filters[-1] != "router":
                problems.append(f"{where}: last HTTP filter must be the router, got {filters}")
            expected = server_listener_name(str(spec.get("address")), int(spec.get("port") or 0))
            if name != expected:
                problems.append(f"{where}: name does not match its address (expected {expected!r})")
    return problems
