"""Normalised sidecar spec shapes <-> Envoy v3 protos, in one place.

Contract: compile produces, and the sidecar driver observes (from CSDS dumps), resources of
five kinds whose specs are plain JSON values with a fixed set of keys (absent = None):

  listener         name = the client's target authority, e.g. "api.shop:8080"
                   {"route": str, "config_source": "ads", "http_filters": ["router"]}
  route            name = route config name (same as the listener)
                   {"domains": [str], "clusters": [{"name": str, "weight": int}],
                    "timeout_ms": int|None, "retries": {"num": int, "on": [str]}|None}
  cluster          name = "api.shop:8080" or "api.shop:8080/v1" (one per split version)
                   {"eds": str, "lb": "round_robin",
                    "tls": None | {"cert_provider": str, "ca_provider": str, "peer_ids": [str]}}
  endpoints        name = the cluster's EDS service name
                   {"localities": [{"weight": int|None,
                                    "endpoints": [{"address": str, "port": int}]}]}
  server-listener  name = "grpc/server?xds.resource.listening_address=IP:PORT"
                   {"address": str, "port": int, "http_filters": ["rbac", "router"],
                    "tls": None | {"cert_provider": str, "ca_provider": str,
                                   "require_client_cert": bool},
                    "rbac": None | {"principals": [spiffe id], "source_ips": [cidr]}}

`to_proto(kind, name, spec)` builds the message and `from_proto(message)` reads any message
of these types back into (kind, name, spec), so `from_proto(to_proto(k, n, s)) == (k, n, s)`.
`lint(resources)` (lint.py, re-exported here) finds configurations that grpcio ACKs but
that make RPCs fail silently.
Pure: no I/O.
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping

# The resource modules must be imported before json_format/Any unpacking (see DESIGN.md).
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import address_pb2, base_pb2, config_source_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2, endpoint_pb2
from envoy.config.listener.v3 import api_listener_pb2, listener_components_pb2, listener_pb2
from envoy.config.rbac.v3 import rbac_pb2
from envoy.config.route.v3 import route_components_pb2, route_pb2
from envoy.extensions.filters.http.rbac.v3 import rbac_pb2 as rbac_filter_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, tls_pb2
from envoy.type.matcher.v3 import string_pb2
from google.protobuf import any_pb2, duration_pb2, wrappers_pb2
from google.protobuf.message import Message

from reconciler.names import SERVER_LISTENER_PREFIX, server_listener_name  # noqa: F401 (re-export)

LISTENER = "type.googleapis.com/envoy.config.listener.v3.Listener"
ROUTE = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
CLUSTER = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
ENDPOINTS = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
TYPE_URLS = (LISTENER, ROUTE, CLUSTER, ENDPOINTS)

# kind -> type URL of the xDS resource that carries it
KIND_TYPE = {
    "listener": LISTENER,
    "server-listener": LISTENER,
    "route": ROUTE,
    "cluster": CLUSTER,
    "endpoints": ENDPOINTS,
}
KINDS = tuple(KIND_TYPE)

ROUTER_FILTER = "envoy.filters.http.router"
RBAC_FILTER = "envoy.filters.http.rbac"
HCM_FILTER = "envoy.filters.network.http_connection_manager"
TLS_SOCKET = "envoy.transport_sockets.tls"
RBAC_POLICY = "netintent-allowed-callers"

# HTTP filter short names <-> (filter name, typed_config type)
_FILTER_TYPES = {
    "router": router_pb2.Router,
    "rbac": rbac_filter_pb2.RBAC,
}
_FILTER_SHORT = {cls.DESCRIPTOR.full_name: short for short, cls in _FILTER_TYPES.items()}


class SpecError(ValueError):
    """A spec that cannot be turned into a proto (names the resource)."""


def _pack(msg: Message) -> any_pb2.Any:
    a = any_pb2.Any()
    a.Pack(msg)
    return a


def _ads() -> config_source_pb2.ConfigSource:
    return config_source_pb2.ConfigSource(
        ads=config_source_pb2.AggregatedConfigSource(),
        resource_api_version=config_source_pb2.ApiVersion.V3)


def _source_kind(cs: config_source_pb2.ConfigSource) -> str:
    which = cs.WhichOneof("config_source_specifier")
    return {"ads": "ads", "self": "self"}.get(which or "", which or "none")


def _http_filter(short: str, rbac: Mapping[str, Any] | None = None) -> hcm_pb2.HttpFilter:
    if short == "router":
        return hcm_pb2.HttpFilter(name=ROUTER_FILTER, typed_config=_pack(router_pb2.Router()))
    if short == "rbac":
        return hcm_pb2.HttpFilter(name=RBAC_FILTER, typed_config=_pack(_rbac(rbac or {})))
    raise SpecError(f"unknown http filter {short!r}")


def _filter_short(f: hcm_pb2.HttpFilter) -> str:
    tname = f.typed_config.type_url.rsplit("/", 1)[-1]
    return _FILTER_SHORT.get(tname, tname or f.name)


def _rbac(spec: Mapping[str, Any]) -> rbac_filter_pb2.RBAC:
    principals = [rbac_pb2.Principal(authenticated=rbac_pb2.Principal.Authenticated(
        principal_name=string_pb2.StringMatcher(exact=p))) for p in spec.get("principals") or ()]
    for cidr in spec.get("source_ips") or ():
        addr, _, plen = str(cidr).partition("/")
        principals.append(rbac_pb2.Principal(direct_remote_ip=address_pb2.CidrRange(
            address_prefix=addr, prefix_len=wrappers_pb2.UInt32Value(value=int(plen or 32)))))
    rules = rbac_pb2.RBAC(action=rbac_pb2.RBAC.ALLOW)
    if principals:  # ALLOW with no policy denies everyone: default deny
        rules.policies[RBAC_POLICY].CopyFrom(rbac_pb2.Policy(
            permissions=[rbac_pb2.Permission(any=True)], principals=principals))
    return rbac_filter_pb2.RBAC(rules=rules)


def _rbac_spec(msg: rbac_filter_pb2.RBAC) -> dict:
    principals: list[str] = []
    ips: list[str] = []
    for name in sorted(msg.rules.policies):
        for p in msg.rules.policies[name].principals:
            which = p.WhichOneof("identifier")
            if which == "authenticated":
                principals.append(p.authenticated.principal_name.exact)
            elif which in ("direct_remote_ip", "remote_ip", "source_ip"):
                r = getattr(p, which)
                plen = r.prefix_len.value if r.HasField("prefix_len") else 0
                ips.append(f"{r.address_prefix}/{plen}")
    return {"principals": principals, "source_ips": ips}


def _provider(name: str) -> common_pb2.CertificateProviderPluginInstance:
    return common_pb2.CertificateProviderPluginInstance(instance_name=name)


def _tls_common(tls: Mapping[str, Any], peer_ids: Iterable[str] = ()) -> tls_pb2.CommonTlsContext:
    return tls_pb2.CommonTlsContext(
        tls_certificate_provider_instance=_provider(tls["cert_provider"]),
        validation_context=common_pb2.CertificateValidationContext(
            ca_certificate_provider_instance=_provider(tls["ca_provider"]),
            match_subject_alt_names=[string_pb2.StringMatcher(exact=p) for p in peer_ids]))


def _tls_spec_common(ctx: tls_pb2.CommonTlsContext) -> dict:
    vc = ctx.validation_context
    ca = vc.ca_certificate_provider_instance.instance_name or \
        ctx.validation_context_certificate_provider_instance.instance_name
    cert = ctx.tls_certificate_provider_instance.instance_name or \
        ctx.tls_certificate_certificate_provider_instance.instance_name
    return {"cert_provider": cert, "ca_provider": ca,
            "_peer_ids": [m.exact for m in vc.match_subject_alt_names]}


# ---- to proto ---------------------------------------------------------------------------
def to_proto(kind: str, name: str, spec: Mapping[str, Any]) -> Message:
    """Build the Envoy v3 message for one normalised resource."""
    try:
        return _BUILDERS[kind](name, spec)
    except KeyError as e:
        raise SpecError(f"{kind}/{name}: missing or unknown field {e}") from None
    except (TypeError, ValueError) as e:
        raise SpecError(f"{kind}/{name}: {e}") from None


def _listener(name: str, spec: Mapping[str, Any]) -> Message:
    if spec.get("config_source", "ads") != "ads":
        cs = config_source_pb2.ConfigSource(path_config_source=config_source_pb2.PathConfigSource(
            path=str(spec["config_source"])))
    else:
        cs = _ads()
    hcm = hcm_pb2.HttpConnectionManager(
        rds=hcm_pb2.Rds(config_source=cs, route_config_name=spec["route"]),
        http_filters=[_http_filter(f) for f in spec.get("http_filters") or ("router",)])
    return listener_pb2.Listener(
        name=name, api_listener=api_listener_pb2.ApiListener(api_listener=_pack(hcm)))


def _route(name: str, spec: Mapping[str, Any]) -> Message:
    action = route_components_pb2.RouteAction(
        weighted_clusters=route_components_pb2.WeightedCluster(clusters=[
            route_components_pb2.WeightedCluster.ClusterWeight(
                name=c["name"], weight=wrappers_pb2.UInt32Value(value=int(c["weight"])))
            for c in spec["clusters"]]))
    if spec.get("timeout_ms"):
        ms = int(spec["timeout_ms"])
        action.max_stream_duration.grpc_timeout_header_max.CopyFrom(
            duration_pb2.Duration(seconds=ms // 1000, nanos=(ms % 1000) * 1_000_000))
    if spec.get("retries"):
        action.retry_policy.CopyFrom(route_components_pb2.RetryPolicy(
            retry_on=",".join(spec["retries"]["on"]),
            num_retries=wrappers_pb2.UInt32Value(value=int(spec["retries"]["num"]))))
    vhost = route_components_pb2.VirtualHost(
        name=name, domains=list(spec["domains"]),
        routes=[route_components_pb2.Route(match=route_components_pb2.RouteMatch(prefix=""),
                                           route=action)])
    return route_pb2.RouteConfiguration(name=name, virtual_hosts=[vhost])


def _cluster(name: str, spec: Mapping[str, Any]) -> Message:
    if spec.get("lb", "round_robin") != "round_robin":
        raise SpecError(f"cluster/{name}: unsupported lb {spec['lb']!r}")
    c = cluster_pb2.Cluster(
        name=name, type=cluster_pb2.Cluster.EDS, lb_policy=cluster_pb2.Cluster.ROUND_ROBIN,
        eds_cluster_config=cluster_pb2.Cluster.EdsClusterConfig(
            eds_config=_ads(), service_name=spec["eds"]))
    tls = spec.get("tls")
    if tls:
        ctx = tls_pb2.UpstreamTlsContext(common_tls_context=_tls_common(tls, tls.get("peer_ids") or ()))
        c.transport_socket.CopyFrom(base_pb2.TransportSocket(name=TLS_SOCKET, typed_config=_pack(ctx)))
    return c


def _endpoints(name: str, spec: Mapping[str, Any]) -> Message:
    cla = endpoint_pb2.ClusterLoadAssignment(cluster_name=name)
    for i, loc in enumerate(spec["localities"]):
        lle = endpoint_components_pb2.LocalityLbEndpoints(
            locality=base_pb2.Locality(zone=f"l{i}"))
        if loc.get("weight") is not None:
            lle.load_balancing_weight.value = int(loc["weight"])
        for ep in loc["endpoints"]:
            lle.lb_endpoints.append(endpoint_components_pb2.LbEndpoint(
                endpoint=endpoint_components_pb2.Endpoint(address=address_pb2.Address(
                    socket_address=address_pb2.SocketAddress(
                        address=ep["address"], port_value=int(ep["port"]))))))
        cla.endpoints.append(lle)
    return cla


def _server_listener(name: str, spec: Mapping[str, Any]) -> Message:
    filters = spec.get("http_filters") or ("rbac", "router")
    hcm = hcm_pb2.HttpConnectionManager(
        route_config=route_pb2.RouteConfiguration(name="inbound", virtual_hosts=[
            route_components_pb2.VirtualHost(name="inbound", domains=["*"], routes=[
                route_components_pb2.Route(
                    match=route_components_pb2.RouteMatch(prefix=""),
                    non_forwarding_action=route_components_pb2.NonForwardingAction())])]),
        http_filters=[_http_filter(f, spec.get("rbac")) for f in filters])
    chain = listener_components_pb2.FilterChain(
        name="inbound", filters=[listener_components_pb2.Filter(name=HCM_FILTER,
                                                                 typed_config=_pack(hcm))])
    tls = spec.get("tls")
    if tls:
        ctx = tls_pb2.DownstreamTlsContext(
            common_tls_context=_tls_common(tls),
            require_client_certificate=wrappers_pb2.BoolValue(value=bool(tls["require_client_cert"])))
        chain.transport_socket.CopyFrom(base_pb2.TransportSocket(name=TLS_SOCKET, typed_config=_pack(ctx)))
    return listener_pb2.Listener(
        name=name, filter_chains=[chain],
        traffic_direction=base_pb2.TrafficDirection.INBOUND,
        address=address_pb2.Address(socket_address=address_pb2.SocketAddress(
            address=spec["address"], port_value=int(spec["port"]))))


_BUILDERS = {
    "listener": _listener, "route": _route, "cluster": _cluster,
    "endpoints": _endpoints, "server-listener": _server_listener,
}


def type_url_of(kind: str) -> str:
    return KIND_TYPE[kind]


# ---- from proto -------------------------------------------------------------------------
def unpack(type_url: str, value: bytes) -> Message:
    cls = {LISTENER: listener_pb2.Listener, ROUTE: route_pb2.RouteConfiguration,
           CLUSTER: cluster_pb2.Cluster, ENDPOINTS: endpoint_pb2.ClusterLoadAssignment}[type_url]
    msg = cls()
    msg.ParseFromString(value)
    return msg


def from_any(a: any_pb2.Any) -> tuple[str, str, dict]:
    return from_proto(unpack(a.type_url, a.value))


def from_proto(msg: Message) -> tuple[str, str, dict]:
    """Normalise any Listener/RouteConfiguration/Cluster/ClusterLoadAssignment."""
    if isinstance(msg, listener_pb2.Listener):
        if msg.HasField("api_listener"):
            return "listener", msg.name, _listener_spec(msg)
        return "server-listener", msg.name, _server_listener_spec(msg)
    if isinstance(msg, route_pb2.RouteConfiguration):
        return "route", msg.name, _route_spec(msg)
    if isinstance(msg, cluster_pb2.Cluster):
        return "cluster", msg.name, _cluster_spec(msg)
    if isinstance(msg, endpoint_pb2.ClusterLoadAssignment):
        return "endpoints", msg.cluster_name, _endpoints_spec(msg)
    raise SpecError(f"not a sidecar resource: {type(msg).__name__}")


def _hcm_of(a: any_pb2.Any) -> hcm_pb2.HttpConnectionManager:
    hcm = hcm_pb2.HttpConnectionManager()
    a.Unpack(hcm)
    return hcm


def _listener_spec(msg: listener_pb2.Listener) -> dict:
    hcm = _hcm_of(msg.api_listener.api_listener)
    if hcm.HasField("rds"):
        route, source = hcm.rds.route_config_name, _source_kind(hcm.rds.config_source)
    else:
        route, source = hcm.route_config.name, "inline"
    return {"route": route, "config_source": source,
            "http_filters": [_filter_short(f) for f in hcm.http_filters]}


def _route_spec(msg: route_pb2.RouteConfiguration) -> dict:
    domains: list[str] = []
    clusters: list[dict] = []
    timeout_ms = retries = None
    if msg.virtual_hosts:
        vh = msg.virtual_hosts[0]
        domains = list(vh.domains)
        if vh.routes and vh.routes[0].HasField("route"):
            act = vh.routes[0].route
            if act.HasField("weighted_clusters"):
                clusters = [{"name": c.name, "weight": c.weight.value}
                            for c in act.weighted_clusters.clusters]
            elif act.cluster:
                clusters = [{"name": act.cluster, "weight": None}]
            if act.HasField("max_stream_duration") and \
                    act.max_stream_duration.HasField("grpc_timeout_header_max"):
                d = act.max_stream_duration.grpc_timeout_header_max  # what grpc uses (gRFC A31)
                timeout_ms = d.seconds * 1000 + d.nanos // 1_000_000
            if act.HasField("retry_policy"):
                rp = act.retry_policy
                retries = {"num": rp.num_retries.value if rp.HasField("num_retries") else 1,
                           "on": [s for s in rp.retry_on.split(",") if s]}
    return {"domains": domains, "clusters": clusters, "timeout_ms": timeout_ms, "retries": retries}


def _cluster_spec(msg: cluster_pb2.Cluster) -> dict:
    tls = None
    if msg.HasField("transport_socket"):
        ctx = tls_pb2.UpstreamTlsContext()
        msg.transport_socket.typed_config.Unpack(ctx)
        common = _tls_spec_common(ctx.common_tls_context)
        tls = {"cert_provider": common["cert_provider"], "ca_provider": common["ca_provider"],
               "peer_ids": common["_peer_ids"]}
    lb = cluster_pb2.Cluster.LbPolicy.Name(msg.lb_policy).lower()
    return {"eds": msg.eds_cluster_config.service_name or msg.name, "lb": lb, "tls": tls}


def _endpoints_spec(msg: endpoint_pb2.ClusterLoadAssignment) -> dict:
    locs = []
    for lle in msg.endpoints:
        locs.append({
            "weight": lle.load_balancing_weight.value if lle.HasField("load_balancing_weight") else None,
            "endpoints": [{"address": e.endpoint.address.socket_address.address,
                           "port": e.endpoint.address.socket_address.port_value}
                          for e in lle.lb_endpoints]})
    return {"localities": locs}


def _server_listener_spec(msg: listener_pb2.Listener) -> dict:
    sa = msg.address.socket_address
    spec: dict[str, Any] = {"address": sa.address, "port": sa.port_value, "http_filters": [],
                            "tls": None, "rbac": None}
    if not msg.filter_chains:
        return spec
    chain = msg.filter_chains[0]
    for f in chain.filters:
        if f.typed_config.type_url.endswith("HttpConnectionManager"):
            hcm = _hcm_of(f.typed_config)
            spec["http_filters"] = [_filter_short(h) for h in hcm.http_filters]
            for h in hcm.http_filters:
                if _filter_short(h) == "rbac":
                    r = rbac_filter_pb2.RBAC()
                    h.typed_config.Unpack(r)
                    spec["rbac"] = _rbac_spec(r)
    if chain.HasField("transport_socket"):
        ctx = tls_pb2.DownstreamTlsContext()
        chain.transport_socket.typed_config.Unpack(ctx)
        common = _tls_spec_common(ctx.common_tls_context)
        spec["tls"] = {"cert_provider": common["cert_provider"], "ca_provider": common["ca_provider"],
                       "require_client_cert": ctx.require_client_certificate.value}
    return spec


from reconciler.xds.lint import lint  # noqa: E402,F401  (re-export: one import for callers)
