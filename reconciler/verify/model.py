"""The forwarding and filtering model: observed resources of the four layers, indexed (pure).

Contract: `Model.build(resources, wiring, unobserved=, layers=, identities=)` reads resources in
exactly the shapes the drivers return (and compile produces): host `address`, `route`,
`nft-table`, `nft-set` (owned or not, any family); hypervisor `ovs-port`, `trunk-vlan`,
`ovs-flow`; switch `vlan-trunk`, `vxlan`, `gateway`, `host-route`, `bgp`; sidecar `listener`,
`route`, `cluster`, `endpoints`, `server-listener`. It never reads a device and never changes
a resource: the same resources always give the same model. Kinds it does not use are ignored.
`unobserved` maps (layer, target) to why that target could not be observed: every decision on
such a target is `unknown` with that reason. `layers` are the layers the model speaks for (the
sidecar layer may be left out: then no RPC-plane verdicts). `identities` maps a certificate
provider name (`<service>.<app>`) to the SPIFFE identity the host layer issues under it.
A `Hop` is one decision on a path: layer, device, what decided (`rule`), permit/deny/unknown.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, NamedTuple

from reconciler.model import Layer, Resource
from reconciler.verify.addr import MASKS, Prefix, ip_int, prefix
from reconciler.verify.ovs import FlowTable
from reconciler.verify.wiring import Wiring

PERMIT, DENY, UNKNOWN = "permit", "deny", "unknown"
# Hop kinds: `forward` decides where a packet goes (a failure ends the path), `filter` may drop
# it without changing the path, `enforce` is a policy enforcement point of the intents (the
# destination's nftables and the sidecar's RBAC: default deny lives there).
FORWARD, FILTER, ENFORCE = "forward", "filter", "enforce"
L4_LAYERS = frozenset((Layer.SWITCH.value, Layer.HYPERVISOR.value, Layer.HOST.value))


class Hop(NamedTuple):
    layer: str
    device: str
    what: str
    rule: str
    decision: str
    detail: str = ""
    kind: str = FORWARD
    leg: str = "forward"

    def to_json(self) -> dict:
        return {"layer": self.layer, "device": self.device, "what": self.what, "rule": self.rule,
                "decision": self.decision, "detail": self.detail, "kind": self.kind, "leg": self.leg}

    def __str__(self) -> str:
        extra = f" ({self.detail})" if self.detail else ""
        return f"{self.layer} {self.device}: {self.what} {self.rule}: {self.decision}{extra}"


class Chain(NamedTuple):
    priority: int
    family: str
    table: str
    name: str
    spec: Any


@dataclass
class HostView:
    name: str
    addrs: dict[str, tuple[str, int]] = field(default_factory=dict)          # ip -> (iface, prefixlen)
    connected: list[tuple[Prefix, str]] = field(default_factory=list)        # (network, iface)
    routes: list[tuple[Prefix, str, str, str]] = field(default_factory=list) # (network, gateway, iface, key)
    hooks: dict[str, list[Chain]] = field(default_factory=dict)             # hook -> base chains by priority
    tables: dict[tuple[str, str], Any] = field(default_factory=dict)        # (family, table) -> chains
    sets: dict[tuple[str, str, str], Any] = field(default_factory=dict)     # (family, table, set) -> elements
    memo: dict[Any, Any] = field(default_factory=dict)                       # derived facts (nft._bypassed)
    secondary: dict[str, bool] = field(default_factory=dict)                 # ip -> secondary, when observed
    rec: Any = None                   # incremental verification's recorder (nft_deps.note), else None


@dataclass
class HvView:
    name: str
    access: dict[str, int] = field(default_factory=dict)                    # port -> tag
    trunks: dict[str, set[int]] = field(default_factory=dict)               # port -> VLANs
    by_vlan: dict[int, list[str]] = field(default_factory=dict)             # tag -> access ports
    unowned_ports: set[str] = field(default_factory=set)
    flows: FlowTable = field(default_factory=FlowTable)


@dataclass
class LeafView:
    name: str
    trunks: dict[str, set[int]] = field(default_factory=dict)               # port -> VLANs
    by_vlan: dict[int, list[str]] = field(default_factory=dict)             # VLAN -> trunk ports
    vxlan_by_vlan: dict[int, tuple[str, Any]] = field(default_factory=dict)
    vxlan_by_vni: dict[int, tuple[str, Any]] = field(default_factory=dict)
    gateways: dict[int, tuple[str, Any]] = field(default_factory=dict)      # VLAN -> (name, spec)
    gw_nets: dict[int, dict[int, int]] = field(default_factory=dict)        # prefixlen -> {network int: VLAN}
    host_routes: dict[int, dict[int, tuple[str, str]]] = field(default_factory=dict)  # plen -> {net int: (nh, key)}
    bgp: Any = None


@dataclass
class Model:
    wiring: Wiring
    hosts: dict[str, HostView] = field(default_factory=dict)
    hvs: dict[str, HvView] = field(default_factory=dict)
    leaves: dict[str, LeafView] = field(default_factory=dict)
    nodes: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)   # node -> kind -> name -> spec
    unobserved: Mapping[tuple[str, str], str] = field(default_factory=dict)
    layers: frozenset[str] = frozenset(layer.value for layer in Layer)
    identities: Mapping[str, str] = field(default_factory=dict)
    located: dict[str, list[tuple[str, str]]] = field(default_factory=dict)      # ip -> [(host, iface)]
    gw_at: dict[str, list[tuple[str, int]]] = field(default_factory=dict)        # ip -> [(leaf, VLAN)]

    @classmethod
    def build(cls, resources: Iterable[Resource], wiring: Wiring, *, unobserved: Mapping[tuple[str, str], str] = {},
              layers: Iterable[str] | None = None, identities: Mapping[str, str] = {}) -> "Model":
        m = cls(wiring, unobserved=dict(unobserved), identities=dict(identities),
                layers=frozenset(layers) if layers is not None else frozenset(x.value for x in Layer))
        m.hosts = {h: HostView(h) for h in wiring.hosts}
        m.hvs = {h: HvView(h) for h in wiring.hypervisors}
        m.leaves = {h: LeafView(h) for h in wiring.leaves}
        flows: dict[str, list] = {}
        for r in resources:
            layer, target, kind = r.key.layer, r.key.target, r.key.kind
            if layer is Layer.HOST and target in m.hosts:
                _add_host(m.hosts[target], kind, r)
            elif layer is Layer.HYPERVISOR and target in m.hvs:
                if kind == "ovs-flow":
                    flows.setdefault(target, []).append(r)
                else:
                    _add_hv(m.hvs[target], kind, r)
            elif layer is Layer.SWITCH and target in m.leaves:
                _add_leaf(m.leaves[target], kind, r)
            elif layer is Layer.SIDECAR:
                m.nodes.setdefault(target, {}).setdefault(kind, {})[r.key.name] = r.spec
        for hv, rs in flows.items():
            m.hvs[hv].flows = FlowTable.of(rs)
        for h in m.hosts.values():
            for chains in h.hooks.values():
                chains.sort(key=lambda c: c.priority)
            for ip, (iface, _) in h.addrs.items():
                m.located.setdefault(ip, []).append((h.name, iface))
        for lf in m.leaves.values():
            for vlan, (_, spec) in lf.gateways.items():
                if spec.get("address"):
                    m.gw_at.setdefault(spec["address"], []).append((lf.name, vlan))
        return m

    def why_unobserved(self, layer: str, target: str) -> str | None:
        return self.unobserved.get((layer, target))

    def rebuild(self, layer: Layer, target: str, resources: Iterable[Resource]) -> set[str]:
        """Replace the view of one target by one built from its `resources` alone (what
        `build` would give it); returns the addresses whose location (`located`, `gw_at`) changed."""
        rs = [r for r in resources if r.key.layer is layer and r.key.target == target]
        if layer is Layer.HOST and target in self.hosts:
            old = _entries((ip, (target, i)) for ip, (i, _) in self.hosts[target].addrs.items())
            h = HostView(target)
            for r in rs:
                _add_host(h, r.key.kind, r)
            for chains in h.hooks.values():
                chains.sort(key=lambda c: c.priority)
            self.hosts[target] = h
            new = _entries((ip, (target, i)) for ip, (i, _) in h.addrs.items())
            return _relocate(self.located, old, new)
        if layer is Layer.HYPERVISOR and target in self.hvs:
            hv = HvView(target)
            for r in rs:
                if r.key.kind != "ovs-flow":
                    _add_hv(hv, r.key.kind, r)
            hv.flows = FlowTable.of(r for r in rs if r.key.kind == "ovs-flow")
            self.hvs[target] = hv
        elif layer is Layer.SWITCH and target in self.leaves:
            old_gw = _entries((s["address"], (target, v)) for v, (_, s) in self.leaves[target].gateways.items()
                              if s.get("address"))
            lf = LeafView(target)
            for r in rs:
                _add_leaf(lf, r.key.kind, r)
            self.leaves[target] = lf
            new_gw = _entries((s["address"], (target, v)) for v, (_, s) in lf.gateways.items() if s.get("address"))
            return _relocate(self.gw_at, old_gw, new_gw)
        elif layer is Layer.SIDECAR:
            node: dict[str, dict[str, Any]] = {}
            for r in rs:
                node.setdefault(r.key.kind, {})[r.key.name] = r.spec
            self.nodes[target] = node
        return set()


def _entries(pairs: Iterable[tuple[str, Any]]) -> dict[str, list]:
    out: dict[str, list] = {}
    for ip, entry in pairs:
        out.setdefault(ip, []).append(entry)
    return out


def _relocate(index: dict[str, list], old: Mapping[str, list], new: Mapping[str, list]) -> set[str]:
    """Move one device's entries of an address index from `old` ({ip: [entry]}) to `new`; the
    addresses whose entries changed."""
    changed = {ip for ip in old.keys() | new.keys() if sorted(old.get(ip, ())) != sorted(new.get(ip, ()))}
    for ip in changed:
        gone = old.get(ip, ())
        entries = [e for e in index.get(ip, ()) if e not in gone] + list(new.get(ip, ()))
        if entries:
            index[ip] = entries
        else:
            index.pop(ip, None)
    return changed


def _net(text: str) -> Prefix:
    return prefix(text)


def _add_host(h: HostView, kind: str, r: Resource) -> None:
    s = r.spec
    if kind == "address":
        h.addrs[s["address"]] = (s["interface"], int(s["prefixlen"]))
        if "secondary" in s:        # `ip addr`'s flag (decides the kernel's source for local calls)
            h.secondary[s["address"]] = bool(s["secondary"])
        h.connected.append((_net(f"{s['address']}/{s['prefixlen']}"), s["interface"]))
    elif kind == "route":
        h.routes.append((_net(s["destination"]), s["gateway"], s.get("interface", ""), str(r.key)))
    elif kind == "nft-table":
        family = s.get("family", "inet")
        h.tables[(family, s["name"])] = s.get("chains") or {}
        for cname, c in (s.get("chains") or {}).items():
            if c.get("hook"):
                prio = c.get("priority")
                h.hooks.setdefault(c["hook"], []).append(
                    Chain(prio if isinstance(prio, int) else 0, family, s["name"], cname, c))
    elif kind == "nft-set":
        h.sets[(s.get("family", "inet"), s["table"], s["name"])] = s.get("elements") or ()


def _add_hv(hv: HvView, kind: str, r: Resource) -> None:
    s = r.spec
    if kind == "ovs-port" and isinstance(s.get("tag"), int):
        hv.access[s["port"]] = s["tag"]
        hv.by_vlan.setdefault(s["tag"], []).append(s["port"])
        if not r.owned:
            hv.unowned_ports.add(s["port"])
    elif kind == "trunk-vlan":
        hv.trunks.setdefault(s["port"], set()).add(int(s["vlan"]))


def _add_leaf(lf: LeafView, kind: str, r: Resource) -> None:
    s = r.spec
    if kind == "vlan-trunk":
        lf.trunks.setdefault(s["port"], set()).add(int(s["vlan"]))
        lf.by_vlan.setdefault(int(s["vlan"]), []).append(s["port"])
    elif kind == "vxlan":
        if isinstance(s.get("vlan"), int) and s["vlan"]:
            lf.vxlan_by_vlan[s["vlan"]] = (r.key.name, s)
        if s.get("vni") is not None:
            lf.vxlan_by_vni[int(s["vni"])] = (r.key.name, s)
    elif kind == "gateway":
        lf.gateways[int(s["vlan"])] = (r.key.name, s)
        if s.get("address"):
            net = _net(f"{s['address']}/{s['prefixlen']}")
            lf.gw_nets.setdefault(net.prefixlen, {})[net.network] = int(s["vlan"])
    elif kind == "host-route":
        net = _net(s["prefix"])
        lf.host_routes.setdefault(net.prefixlen, {})[net.network] = (s["nexthop"], str(r.key))
    elif kind == "bgp":
        lf.bgp = s


def longest_match(tables: Mapping[int, Mapping[int, Any]], address: str) -> tuple[Prefix, Any] | None:
    """(prefix, value) of the longest prefix in `tables` ({prefixlen: {network int: value}}) holding `address`."""
    v = ip_int(address)
    for plen in sorted(tables, reverse=True):
        hit = tables[plen].get(v & MASKS[plen])
        if hit is not None:
            return Prefix(v & MASKS[plen], plen), hit
    return None
