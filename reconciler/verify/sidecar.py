"""The RPC plane: what a caller's xDS config and the callee's xDS server do with a call (pure).

Contract: `client_hop(m, node, authority, dst, port, selected)` follows the caller node's
listener (named by the target authority `<service>.<app>:<port>`) -> route (its domains must
hold the authority) -> weighted clusters -> endpoints, and says whether calls reach `dst:port`
(a locality without weight is a silent failure grpcio ACKs; so is a route timeout under
~1.5 s: grpcio ends every call at once, see EARLY_TIMEOUT_*). A destination the intents' traffic
split leaves out (`selected` False) is not a failure. It returns the hop and the TLS config of
the cluster that carries the calls. `server_hops(m, node, dst, port, client_tls, presented, src,
dst_identity)` reads the server listener `grpc/server?xds.resource.listening_address=dst:port`:
TLS on both ends or neither (the client must accept the server's identity; a server that requires
a client certificate needs one; `client_tls="auto"`: a caller that dials directly speaks what
the server wants and presents `presented` when it has a certificate), then RBAC: admitted when the presented SPIFFE
identity (mTLS only) is a principal or the source address is in `source_ips`; no RBAC filter
admits everyone, an RBAC filter without policy admits no one. A server listener that is not
observed is UNKNOWN: the workload is either not an xDS server or has not asked for it.
"""
from __future__ import annotations

from typing import Any

from reconciler.names import server_listener_name
from reconciler.verify.addr import prefix
from reconciler.verify.model import DENY, ENFORCE, FILTER, PERMIT, UNKNOWN, Hop, Model

SIDE = "sidecar"
AUTO = "auto"   # client_tls of a caller without xDS config for the destination
# grpcio (Python) applies a route's timeout (max_stream_duration, which it turns into a service-config
# method timeout) early by a clock offset (open upstream: grpc/grpc#34547, #40633). Measured on the
# reference lab with grpcio 1.85.3 (docs/verify.md): under a route timeout of <= 1,500 ms every call ends
# at once with DEADLINE_EXCEEDED and never reaches the server, whatever the call's own deadline
# (1, 3, 10 s) or retries; >= 1,900 ms works. In between the model does not know.
EARLY_TIMEOUT_FAILS_MS, EARLY_TIMEOUT_WORKS_MS = 1500, 1900


def _kinds(m: Model, node: str) -> dict[str, dict[str, Any]]:
    return m.nodes.get(node, {})


def client_hop(m: Model, node: str, authority: str, dst: str, port: int, selected: bool,
               leg: str = "forward") -> tuple[Hop, Any]:
    def hop(decision: str, rule: str, detail: str, tls: Any = None) -> tuple[Hop, Any]:
        return Hop(SIDE, node, "xds-client", rule, decision, detail, FILTER, leg), tls

    why = m.unobserved.get((SIDE, node))
    if why is not None:
        return hop(UNKNOWN, authority, f"not observed: {why}")
    res = _kinds(m, node)
    lst = res.get("listener", {}).get(authority)
    if lst is None:
        return hop(DENY, f"listener {authority}", f"the caller's node has no listener for xds:///{authority}")
    route = res.get("route", {}).get(lst.get("route"))
    if route is None:
        return hop(DENY, f"listener {authority}", f"its route {lst.get('route')} is not served to the node")
    if authority not in (route.get("domains") or ()) and "*" not in (route.get("domains") or ()):
        return hop(DENY, f"route {lst.get('route')}", f"domains {list(route.get('domains') or ())} do not match")
    first_tls: Any = None
    for wc in route.get("clusters") or ():
        cl = res.get("cluster", {}).get(wc.get("name"))
        if cl is None or not wc.get("weight"):
            continue
        first_tls = first_tls if first_tls is not None else cl.get("tls")
        eps = res.get("endpoints", {}).get(cl.get("eds"))
        for loc in (eps or {}).get("localities") or ():
            if any(e.get("address") == dst and e.get("port") == port for e in loc.get("endpoints") or ()):
                if not loc.get("weight"):
                    return hop(DENY, f"endpoints {cl.get('eds')}", "locality without weight: grpcio never "
                               "picks it (silent failure)", cl.get("tls"))
                early = _early_timeout(route)
                if early is not None:
                    return hop(early[0], f"route {lst.get('route')} timeout_ms {route.get('timeout_ms')}",
                               early[1], cl.get("tls"))
                return hop(PERMIT, f"route {lst.get('route')} -> cluster {wc['name']} (weight {wc['weight']})",
                           f"endpoint {dst}:{port}", cl.get("tls"))
    if not selected:
        return hop(PERMIT, f"route {lst.get('route')}", f"{dst} is left out by the intents' traffic split", first_tls)
    return hop(DENY, f"route {lst.get('route')}", f"no weighted cluster of the caller sends to {dst}:{port}", first_tls)


def _early_timeout(route: Any) -> tuple[str, str] | None:
    """(decision, why) when the route's timeout is one grpcio ends calls at once under; else None."""
    ms = route.get("timeout_ms")
    if not ms or ms >= EARLY_TIMEOUT_WORKS_MS:
        return None
    if ms <= EARLY_TIMEOUT_FAILS_MS:
        return UNKNOWN, ("grpcio applies a route timeout early by ~1.5-1.9 s (grpc/grpc#34547): on the reference "
                         "lab every call under it ended at once with DEADLINE_EXCEEDED, before reaching the server "
                         "(docs/verify.md); the offset is grpcio's, not the network's, so the model does not decide")
    return UNKNOWN, (f"grpcio applies a route timeout early by ~1.5-1.9 s (grpc/grpc#34547): under "
                     f"{EARLY_TIMEOUT_WORKS_MS} ms calls may end at once (not measured between "
                     f"{EARLY_TIMEOUT_FAILS_MS} and {EARLY_TIMEOUT_WORKS_MS} ms)")


def server_hops(m: Model, node: str, dst: str, port: int, client_tls: Any, presented: str | None, src: str,
                dst_identity: str, leg: str = "forward") -> list[Hop]:
    name = server_listener_name(dst, port)

    def hop(what: str, decision: str, rule: str, detail: str, kind: str = ENFORCE) -> Hop:
        return Hop(SIDE, node, what, rule, decision, detail, kind, leg)

    why = m.unobserved.get((SIDE, node))
    if why is not None:
        return [hop("rbac", UNKNOWN, name, f"not observed: {why}")]
    sl = _kinds(m, node).get("server-listener", {}).get(name)
    if sl is None:
        return [hop("rbac", UNKNOWN, name, "no server listener observed: the workload is not an xDS server "
                    "or has not asked for it")]
    if client_tls == AUTO:      # a caller dialing directly speaks what the server wants, with its own certificate
        client_tls = None if not sl.get("tls") else {"cert_provider": presented or "", "peer_ids": ()}
    out = [_tls(sl, client_tls, presented, dst_identity, hop)]
    if "rbac" not in (sl.get("http_filters") or ()):
        out.append(hop("rbac", PERMIT, name, "no RBAC filter: every caller is admitted"))
        return out
    rbac = sl.get("rbac") or {}
    principals, cidrs = rbac.get("principals") or (), rbac.get("source_ips") or ()
    if client_tls and presented and presented in principals:
        out.append(hop("rbac", PERMIT, f"principal {presented}", name))
    elif any(_in(src, c) for c in cidrs):
        out.append(hop("rbac", PERMIT, f"source_ips {next(c for c in cidrs if _in(src, c))}", name))
    elif client_tls and client_tls.get("cert_provider") and presented is None and principals:
        out.append(hop("rbac", UNKNOWN, name, "the caller's certificate provider maps to no known identity"))
    else:
        who = f"principal {presented}" if client_tls and presented else "no client identity"
        out.append(hop("rbac", DENY, name, f"neither {who} nor source {src} is admitted "
                       f"(principals {list(principals)}, source_ips {list(cidrs)})"))
    return out


def _in(src: str, cidr: str) -> bool:
    return prefix(cidr).holds(src)


def _tls(sl: Any, client_tls: Any, presented: str | None, dst_identity: str, hop) -> Hop:
    stls = sl.get("tls")
    if stls and not client_tls:
        return hop("tls", DENY, "tls", "the server requires TLS; the caller speaks plaintext", FILTER)
    if client_tls and not stls:
        return hop("tls", DENY, "tls", "the caller expects TLS; the server speaks plaintext", FILTER)
    if not stls:
        return hop("tls", PERMIT, "plaintext", "", FILTER)
    peers = client_tls.get("peer_ids") or ()
    if peers and dst_identity not in peers:
        return hop("tls", DENY, "peer_ids", f"the caller does not accept the server identity {dst_identity}", FILTER)
    if stls.get("require_client_cert") and not client_tls.get("cert_provider"):
        return hop("tls", DENY, "tls", "the server requires a client certificate; the caller has none", FILTER)
    return hop("tls", PERMIT, f"mTLS {presented or '?'} -> {dst_identity}", "", FILTER)
