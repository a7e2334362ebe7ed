"""Compile one application's services into sidecar (xDS) resources.

Contract: `compile_app(app, ctx) -> list[Resource]` is pure. Every resource has
layer SIDECAR, target = the xDS node id of a workload host (a host in the inventory's
`sidecars` group; node id = its `netintent_xds_node` var or the host name) and app = `app`.
The application that owns a service owns every resource about it, on the server's node and
on every caller's node, so keys never collide between applications:

  per service port P (tcp) of service S of app A, with target authority T = "S.A:P":
    server side, on the node of each instance I of S:
      server-listener  grpc/server?xds.resource.listening_address=I.address:P
                       TLS from `traffic.S.mtls`; RBAC allows exactly the callers of the
                       policy's flows to S on P: by SPIFFE identity when mTLS is on
                       (strict, permissive) and by source address when it is not
                       (disable, permissive); no flow = deny all
    client side, on the node of each caller instance of a flow to S on P:
      listener T -> route T (domains [T]; timeout_ms, retries from `traffic.S`)
      route weighted clusters: one cluster "T/version" per `traffic.S.split` version that
        has instances (weights as given); without a split one cluster "T"
      cluster -> endpoints of the same name, one locality of weight 1 with the instances

Shapes of the specs are documented in reconciler/xds/resources.py. mTLS certificates come
from bootstrap certificate provider instances named "S.A" (see `provider_name`); a caller
node uses the provider of its calling service (the first by name when several services
on one node call the same target). `permissive` means: TLS server, client certificate
optional, callers allowed by identity or by source address (gRPC cannot accept plaintext
and TLS on one port).
"""
from __future__ import annotations

from reconciler.compile.context import CompileContext, Flow, ServiceRef
from reconciler.diff import Normalizer
from reconciler.intents.models import Application, Traffic
from reconciler.model import Layer, Resource, ResourceKey
from reconciler.names import server_listener_name

# What CSDS reports beyond the intent: the xDS version a resource was served in. No set fields:
# the order of weighted clusters, endpoints and filters is part of the config.
NORMALIZER = Normalizer(volatile={"*": ("version_info",)})

SIDECARS_GROUP = "sidecars"
RETRY_ON = ("unavailable",)


def provider_name(app: str, service: str) -> str:
    """Name of the bootstrap certificate provider instance holding a service's identity."""
    return f"{service}.{app}"


def target_authority(app: str, service: str, port: int) -> str:
    """What clients dial as `xds:///<authority>`; also the listener and route name."""
    return f"{service}.{app}:{port}"


def node_of(ctx: CompileContext, host: str) -> str | None:
    """xDS node id of the workload on `host`, or None when the host runs no sidecar."""
    if not ctx.inventory.in_group(host, SIDECARS_GROUP):
        return None
    return str(ctx.hvar(host, "netintent_xds_node") or host)


def compile_app(app: Application, ctx: CompileContext) -> list[Resource]:
    out: dict[ResourceKey, Resource] = {}

    def put(node: str, kind: str, name: str, spec: dict) -> None:
        key = ResourceKey(Layer.SIDECAR, node, kind, name)
        out.setdefault(key, Resource(key, spec, app.name))

    inbound = ctx.inbound(app.name)
    for sname in sorted(app.spec.services):
        svc = app.spec.services[sname]
        traffic = app.spec.traffic.get(sname) or Traffic()
        me = ServiceRef(app.name, sname)
        for port in svc.ports:
            if port.protocol != "tcp":
                continue
            flows = _flows_to(inbound, me, port.name)
            _server_side(ctx, app, sname, port.port, traffic, flows, put)
            _client_side(ctx, app, sname, port.port, traffic, flows, put)
    return [out[k] for k in sorted(out, key=ResourceKey.sort_key)]


def _flows_to(inbound: tuple[Flow, ...], callee: ServiceRef, port_name: str) -> list[Flow]:
    seen: dict[tuple[str, str], Flow] = {}
    for f in inbound:
        if f.callee == callee and port_name in f.ports:
            seen.setdefault((f.caller.app, f.caller.service), f)
    return [seen[k] for k in sorted(seen)]


def _server_side(ctx, app, sname, port, traffic, flows, put) -> None:
    mtls = traffic.mtls
    principals = sorted({ctx.identity(f.caller) for f in flows}) if mtls != "disable" else []
    sources = sorted({f"{a}/32" for f in flows for a in ctx.addresses(f.caller)}) \
        if mtls != "strict" else []
    tls = None
    if mtls != "disable":
        prov = provider_name(app.name, sname)
        tls = {"cert_provider": prov, "ca_provider": prov,
               "require_client_cert": mtls == "strict"}
    for inst in app.spec.services[sname].instances:
        node = node_of(ctx, inst.host)
        if node is None:
            continue
        put(node, "server-listener", server_listener_name(inst.address, port), {
            "address": inst.address, "port": port, "http_filters": ["rbac", "router"],
            "tls": tls, "rbac": {"principals": principals, "source_ips": sources}})


def _client_side(ctx, app, sname, port, traffic, flows, put) -> None:
    instances = app.spec.services[sname].instances
    if not instances or not flows:
        return
    target = target_authority(app.name, sname, port)
    by_version: dict[str, list[dict]] = {}
    for inst in instances:
        by_version.setdefault(inst.version, []).append({"address": inst.address, "port": port})
    split = {v: int(w) for v, w in sorted((traffic.split or {}).items())
             if int(w) > 0 and v in by_version}
    if split:
        groups = {f"{target}/{v}": (by_version[v], w) for v, w in split.items()}
    else:
        groups = {target: ([e for v in sorted(by_version) for e in by_version[v]], 1)}

    # caller node -> providers of the services calling from it
    callers: dict[str, list[str]] = {}
    for f in flows:
        caller_svc = ctx.service(f.caller)
        for inst in caller_svc.instances if caller_svc else ():
            node = node_of(ctx, inst.host)
            if node is not None:
                callers.setdefault(node, []).append(provider_name(f.caller.app, f.caller.service))
    peer = ctx.identity(ServiceRef(app.name, sname))
    retries = {"num": int(traffic.retries), "on": list(RETRY_ON)} if traffic.retries else None
    for node in sorted(callers):
        put(node, "listener", target,
            {"route": target, "config_source": "ads", "http_filters": ["router"]})
        put(node, "route", target, {
            "domains": [target],
            "clusters": [{"name": c, "weight": w} for c, (_, w) in groups.items()],
            "timeout_ms": traffic.timeout_ms, "retries": retries})
        tls = None
        if traffic.mtls != "disable":
            prov = sorted(callers[node])[0]
            tls = {"cert_provider": prov, "ca_provider": prov, "peer_ids": [peer]}
        for cname, (eps, _) in groups.items():
            put(node, "cluster", cname, {"eds": cname, "lb": "round_robin", "tls": tls})
            put(node, "endpoints", cname, {"localities": [
                {"weight": 1, "endpoints": sorted(eps, key=lambda e: (e["address"], e["port"]))}]})
