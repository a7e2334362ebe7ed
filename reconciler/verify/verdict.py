"""End-to-end verdicts per (source instance, destination instance, port), with witness hops (pure).

Contract: `evaluate(m, src, dst, allowed)` traces a TCP connection (or a UDP datagram): the
forward leg from the source (routing, segment, leaves; a packet from OUTSIDE enters at the
destination's leaf), the destination host's nftables (prerouting, input; `ct state new`, then
`ct state established` for the client's later packets: the handshake's last ACK, data), the
sidecar (the caller's xDS client for allowed pairs, then the server's TLS and RBAC) when the
destination's host runs one and the sidecar layer is modelled, and the return leg back to the
source (`ct state established`, a MAC learned on the way in needs no flood entry). The verdict
`l4` covers switch, hypervisor and host hops (what a TCP connect sees), `rpc` adds the sidecar
hops (None when there is no RPC plane); `outcome` is `rpc` when there is one, else `l4`.
Each is `dropped` when any hop denies (a deny is proven: a hop after an unknown forwarding
step is never computed, and the destination's filters and RBAC are on every path), `unknown`
when none denies but one could not be decided (the reasons say why), else `delivered`.
A caller that is not allowed is assumed to dial the server directly (no xDS client), with the
certificate of its own service when its host runs a sidecar.
A call to an address of the caller's own host does not leave from the caller's address: the
gRPC client does not bind, and the kernel takes the local route's preferred source (the primary
address of the destination's subnet). Its own connection is traced again from that address
(hops of leg `call`: a `source-address` hop, the destination's filters, the sidecar); `l4` stays
the connect from the caller's bound address, `rpc` is the call. When the subnet holds several
addresses and their outcomes differ, the call is `unknown` (the observation does not say which
address is primary).
`Verifier.dest(dst, sources)` evaluates one destination: every candidate source explicitly (the
allowed ones, the ones any nftables rule or RBAC policy there names, OUTSIDE) and every other
source at once through a representative address that no rule names (arriving on the
destination's interface, and on `lo` for sources on the destination's host): their verdicts at
the destination's filters are equal by construction, and those filters are on every path; when
a representative is not dropped there, or one filter admits it, every source is evaluated.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Iterable, NamedTuple

from reconciler.names import server_listener_name
from reconciler.verify.addr import Prefix, ip_int, no_gc, prefix
from reconciler.verify.fabric import HOST, Attach, Trace, host_leg, outside_leg
from reconciler.verify.model import DENY, ENFORCE, FILTER, L4_LAYERS, PERMIT, UNKNOWN, Hop, Model
from reconciler.verify.nft import Pkt, host_filter
from reconciler.verify.nftsets import saddr_terms
from reconciler.verify.pairs import OUTSIDE, Dest, Scope, Source
from reconciler.verify.sidecar import AUTO, client_hop, server_hops

DELIVERED, DROPPED, UNDECIDED = "delivered", "dropped", "unknown"
SIDECAR = "sidecar"
CALL = "call"      # leg of a same-host call's own connection (its source is the kernel's pick)
OTHER_IDENTITY = "(an identity no policy names)"
_REPRESENTATIVES = tuple(f"198.51.100.{i}" for i in range(1, 255))     # TEST-NET-2


class Verdict(NamedTuple):
    l4: str
    rpc: str | None
    hops: tuple[Hop, ...]

    @property
    def outcome(self) -> str:
        return self.rpc if self.rpc is not None else self.l4

    @property
    def reasons(self) -> tuple[str, ...]:
        return tuple(f"{h.layer} {h.device}: {h.rule}: {h.detail}" for h in self.hops if h.decision == UNKNOWN)

    def to_json(self) -> dict:
        return {"outcome": self.outcome, "l4": self.l4, "rpc": self.rpc, "hops": [h.to_json() for h in self.hops]}


def outcome_of(hops: Iterable[Hop]) -> str:
    decisions = {h.decision for h in hops}
    return DROPPED if DENY in decisions else UNDECIDED if UNKNOWN in decisions else DELIVERED


def _verdict(hops: list[Hop], rpc: bool) -> Verdict:
    l4 = outcome_of(h for h in hops if h.layer in L4_LAYERS)
    return Verdict(l4, outcome_of(hops) if rpc else None, tuple(hops))


def _dst_filter(m: Model, host: str, pkt: Pkt, iif: str, leg: str = "forward", kind: str = ENFORCE) -> Hop:
    why = m.unobserved.get((HOST, host))
    if why is not None or host not in m.hosts:
        return Hop(HOST, host, "nftables", "", UNKNOWN, f"not observed: {why or 'not a host of the inventory'}",
                   kind, leg)
    d, rule, detail, _ = host_filter(m.hosts[host], ("ingress", "prerouting", "input"), pkt._replace(iif=iif))
    return Hop(HOST, host, "nftables", rule or "(no rule)", d, detail, kind, leg)


def _established(m: Model, host: str, pkt: Pkt, iif: str) -> Hop:
    """The destination's filters for the rest of the client's packets (the handshake's last ACK, data):
    a connection whose SYN is admitted but whose established packets are dropped never completes."""
    h = _dst_filter(m, host, pkt._replace(ct="established"), iif, kind=FILTER)
    return h._replace(detail=f"ct established (the client's ACK and data): {h.detail}".rstrip(": "))


def _entry_leaf(m: Model, dst: Dest) -> str | None:
    wired = m.wiring.host_port.get((dst.host, dst.iface))
    return m.wiring.leaf_of_hv(wired[0]) if wired else None


def _forward(m: Model, src: Source, dst: Dest, pkt: Pkt) -> tuple[Trace, Attach | None]:
    tr = Trace(m, "forward", expect=dst.host)
    if src.host is not None:
        return tr, host_leg(tr, src.host, dst.address, pkt)
    leaf = _entry_leaf(m, dst)
    if leaf is None:
        tr.hop("switch", "?", "underlay", f"from {src.address}", UNKNOWN, f"{dst.host} has no leaf in the inventory")
        return tr, None
    return tr, outside_leg(tr, leaf, dst.address, pkt)


def _rpc_hops(m: Model, src: Source, dst: Dest, allowed: bool) -> list[Hop]:
    node = m.wiring.node.get(dst.host)
    src_node = m.wiring.node.get(src.host) if src.host else None
    hops: list[Hop] = []
    if allowed and src_node is not None:
        chop, tls = client_hop(m, src_node, dst.authority, dst.address, dst.port, dst.selected)
        hops.append(chop)
        presented = m.identities.get((tls or {}).get("cert_provider", ""))
    elif src_node is not None:
        tls, presented = AUTO, src.identity        # dials the server directly with its own certificate
    else:
        tls, presented = None, None
    return hops + server_hops(m, node or "", dst.address, dst.port, tls, presented, src.address, dst.identity)


def evaluate(m: Model, src: Source, dst: Dest, allowed: bool) -> Verdict:
    pkt = Pkt(src.address, dst.address, dst.proto, dst.port, "new")
    fwd, end = _forward(m, src, dst, pkt)
    host = end.device if end is not None and end.kind in (HOST, "lo") else dst.host
    iif = end.port if end is not None and end.kind in (HOST, "lo") else dst.iface
    hops = fwd.hops + [_dst_filter(m, host, pkt, iif)]
    if dst.proto == "tcp":     # the client's ACK and data arrive `ct state established`
        hops.append(_established(m, host, pkt, iif))
    rpc = SIDECAR in m.layers and dst.proto == "tcp" and dst.host in m.wiring.node
    ret = _return(m, src, dst, host, fwd) if dst.proto == "tcp" else []
    srcs = call_sources(m, src, dst) if rpc and end is not None and end.kind == "lo" else None
    if srcs is None:
        return _verdict(hops + (_rpc_hops(m, src, dst, allowed) if rpc else []) + ret, rpc)
    call = _call_hops(m, src, dst, allowed, host, iif, srcs)
    return Verdict(outcome_of(h for h in hops + ret if h.layer in L4_LAYERS),
                   outcome_of(fwd.hops + call + ret), tuple(hops + call + ret))


def call_sources(m: Model, src: Source, dst: Dest) -> list[str] | None:
    """The source addresses the kernel may give a call from `src` to an address of its own host.
    A gRPC client does not bind: for a local destination the kernel takes the preferred source of
    the local route, which is the primary address of the destination's subnet on its interface
    (the destination itself when it is the only one). None: not a same-host call."""
    return local_call_sources(m, dst) if src.host == dst.host else None


def local_call_sources(m: Model, dst: Dest) -> list[str] | None:
    view = m.hosts.get(dst.host)
    if view is None or dst.address not in view.addrs:
        return None
    iface, plen = view.addrs[dst.address]
    net = prefix(f"{dst.address}/{plen}")
    same = [a for a, (i, p) in view.addrs.items() if i == iface and p == plen and net.holds(a)]
    primary = [a for a in same if view.secondary.get(a) is False]
    return primary if len(primary) == 1 else same


def _call_hops(m: Model, src: Source, dst: Dest, allowed: bool, host: str, iif: str, srcs: list[str]) -> list[Hop]:
    """The call's own connection (leg `call`) from the source address(es) the kernel may pick: one
    `source-address` hop, then the destination's filters and the sidecar for that address. When
    the candidates' outcomes differ (the primary address is not observed), the call is unknown."""
    per = {a: _call_from(m, src, dst, allowed, host, iif, a) for a in srcs}
    outcomes = {a: outcome_of(hs) for a, hs in per.items()}
    rule = f"local route {dst.address} src {srcs[0]}" if len(srcs) == 1 else \
        f"local route {dst.address} src one of {', '.join(srcs)}"
    why = (f"a call to an address of {host} leaves from the local route's preferred source, not from "
           f"{src.address} (the gRPC client does not bind)")
    if len(set(outcomes.values())) > 1:
        seen = ", ".join(f"from {a}: {o}" for a, o in outcomes.items())
        return [Hop(HOST, host, "source-address", rule, UNKNOWN, f"{why}; it is the primary address of the "
                    f"subnet, which the host observation does not say ({seen})", FILTER, CALL)]
    return [Hop(HOST, host, "source-address", rule, PERMIT, why, FILTER, CALL)] + per[srcs[0]]


def _call_from(m: Model, src: Source, dst: Dest, allowed: bool, host: str, iif: str, saddr: str) -> list[Hop]:
    pkt = Pkt(saddr, dst.address, dst.proto, dst.port, "new")
    hops = [_dst_filter(m, host, pkt, iif, CALL), _established(m, host, pkt, iif)._replace(leg=CALL)]
    return hops + [h._replace(leg=CALL) for h in _rpc_hops(m, replace(src, address=saddr), dst, allowed)]


def _return(m: Model, src: Source, dst: Dest, host: str, fwd: Trace) -> list[Hop]:
    pkt = Pkt(dst.address, src.address, dst.proto, None, "established", sport=dst.port)
    tr = Trace(m, "return", expect=src.host, learned=fwd.learned)
    end = host_leg(tr, host, src.address, pkt)
    if end is not None and src.host is not None and end.kind in (HOST, "lo"):
        tr.hops.append(_dst_filter(m, end.device, pkt, end.port, "return", FILTER))
    return tr.hops


def evaluate_others(m: Model, dst: Dest, rep: str, iif: str | None = None) -> Verdict:
    """The destination's own filters (nftables, TLS/RBAC) for a source no rule names, arriving on
    `iif` (default: the destination's interface; `lo` for sources on the destination's host)."""
    pkt = Pkt(rep, dst.address, dst.proto, dst.port, "new")
    hops = [_dst_filter(m, dst.host, pkt, iif or dst.iface)]
    rpc = SIDECAR in m.layers and dst.proto == "tcp" and dst.host in m.wiring.node
    if rpc:
        hops += server_hops(m, m.wiring.node[dst.host], dst.address, dst.port, AUTO, OTHER_IDENTITY, rep,
                            dst.identity)
    return _verdict(hops, rpc)


@dataclass
class DestResult:
    dest: Dest
    pairs: list[tuple[Source, bool, Verdict]] = field(default_factory=list)
    others: int = 0                          # sources covered by `others_verdict`
    others_verdict: Verdict | None = None


class Verifier:
    """Evaluates destinations over one model and scope, caching what hosts share."""

    def __init__(self, m: Model, scope: Scope, expand: bool = False) -> None:
        self.m, self.scope, self.expand = m, scope, expand

    def terms(self, host: str, daddr: str) -> tuple[set[str], list[Any], bool]:
        view = self.m.hosts.get(host)
        return saddr_terms(view, daddr) if view is not None else (set(), [], True)

    def _rbac_terms(self, dst: Dest) -> tuple[list[str], list[str]]:
        node = self.m.wiring.node.get(dst.host) or ""
        listeners = self.m.nodes.get(node, {}).get("server-listener", {})
        sl = listeners.get(server_listener_name(dst.address, dst.port))
        rbac = (sl or {}).get("rbac") or {}
        return list(rbac.get("principals") or ()), list(rbac.get("source_ips") or ())

    def candidates(self, dst: Dest) -> tuple[dict[str, Source], str | None]:
        """Sources to evaluate one by one, and a representative address for all the others
        (None: no address is like the others; evaluate every source)."""
        sc = self.scope
        exact, spans, every = self.terms(dst.host, dst.address)
        principals, cidrs = self._rbac_terms(dst)
        if self.expand or every or (HOST, dst.host) in self.m.unobserved:
            return {**{s.id: s for s in sc.sources}, OUTSIDE.id: OUTSIDE}, None
        out = {s.id: s for s in sc.allowed_sources(dst)}
        out.update((s.id, s) for a in exact for s in sc.by_address.get(a, ()))
        out.update((s.id, s) for p in principals for s in sc.by_identity.get(p, ()))
        nets = [prefix(c) for c in cidrs]
        if spans or any(n.prefixlen < 32 for n in nets):
            out.update((s.id, s) for s in sc.sources if _covered(s.address, spans, nets))
        else:
            out.update((s.id, s) for c in cidrs for s in sc.by_address.get(c.split("/")[0], ()))
        out[OUTSIDE.id] = OUTSIDE
        rep = next((r for r in _REPRESENTATIVES if r not in exact and not _covered(r, spans, nets)), None)
        return out, rep

    def dest(self, dst: Dest, only: Iterable[Source] | None = None) -> DestResult:
        res = DestResult(dst)
        if only is not None:
            cands = {s.id: s for s in only}
        else:
            cands, rep = self.candidates(dst)
            others = self._others(dst, cands, rep) if rep is not None else None
            if others is None:      # some layer lets them in, or no address is like them: look at each
                cands = {**{s.id: s for s in self.scope.sources}, OUTSIDE.id: OUTSIDE}
            res.others_verdict = others
        for s in cands.values():
            if s.address == dst.address:
                continue
            allowed = self.scope.allowed(s, dst)
            res.pairs.append((s, allowed, evaluate(self.m, s, dst, allowed)))
        if res.others_verdict is not None:
            selves = sum(1 for s in self.scope.by_address.get(dst.address, ()) if s.id not in cands)
            res.others = len(self.scope.sources) - sum(1 for s in cands.values() if s.app) - selves
        return res

    def _others(self, dst: Dest, cands: dict[str, Source], rep: str) -> Verdict | None:
        """The verdict every source not in `cands` shares, or None when it is not a plain drop.
        Sources on the destination's host arrive on `lo`: a second representative covers their
        connects, and their calls leave from the kernel's pick (local_call_sources): covered too."""
        local = any(s.id not in cands and s.address != dst.address for s in self.scope.by_host.get(dst.host, ()))
        verdicts = [evaluate_others(self.m, dst, rep)] + ([evaluate_others(self.m, dst, rep, "lo")] if local else [])
        if local and SIDECAR in self.m.layers and dst.proto == "tcp" and dst.host in self.m.wiring.node:
            # their calls leave from the kernel's pick, the same for every caller on the host
            verdicts += [evaluate_others(self.m, dst, a, "lo") for a in local_call_sources(self.m, dst) or ()]
        for v in verdicts:
            if v.outcome != DROPPED or any(h.kind == ENFORCE and h.decision == PERMIT for h in v.hops):
                return None
        return verdicts[0]

    def run(self, apps: Iterable[str] = ()) -> list[DestResult]:
        with no_gc():
            return self._run(list(apps))

    def _run(self, apps: list[str]) -> list[DestResult]:
        out = []
        for d in self.scope.dests(apps):
            if d.outbound:
                out.append(self.dest(d, [s for s in self.scope.allowed_sources(d) if s.app in apps]))
            else:
                out.append(self.dest(d))
        return out


def _covered(addr: str, spans: list[Any], nets: list[Prefix]) -> bool:
    v = ip_int(addr)
    return any(isinstance(lo, int) and lo <= v <= hi for lo, hi in spans) or any(n.holds(addr) for n in nets)
