"""Where a packet goes: host routing, the L2 segment over hypervisors and leaves, leaf routing (pure).

Contract: a `Trace` collects the hops of one leg (forward or return) of a connection.
`host_leg(tr, host, dst, pkt)` routes from a host; `outside_leg(tr, leaf, dst, pkt)` enters the
fabric at a leaf from outside every segment. Both end at the attachment (host interface, or
`lo` for an address of the host itself) that holds `dst`, or return None when the path ends
(the last hop says why: deny, or unknown when a device was not observed or its state cannot be
read). The segment follows the cabling (Wiring) and the observed state: the hypervisor access
port's tag, its OpenFlow table (anti-spoofing, uplink isolation), the uplink trunk, the leaf
trunk, the VXLAN device (VNI, flood list; a MAC learned by an earlier crossing in the other
direction needs no flood entry), the routed underlay (BGP announcing the VTEP), the far leaf's
device for the same VNI and the anycast gateways' MAC guard. Leaves route by longest prefix
over their gateways' subnets and their static host routes (a route via the leaf's own VTEP is
inactive). Hosts route by longest prefix over their addresses' subnets and observed routes; with
no route the packet leaves the application network (default routes are not observed; they lead
to the management network), which is a drop here.
"""
from __future__ import annotations

from typing import NamedTuple

from reconciler.verify import nft_deps
from reconciler.verify.addr import Prefix
from reconciler.verify.model import DENY, FILTER, FORWARD, PERMIT, UNKNOWN, Hop, Model, longest_match
from reconciler.verify.nft import Pkt, host_filter
from reconciler.verify.ovs import DROP, NORMAL

HOST, HV, SW = "host", "hypervisor", "switch"
MAX_LEAF_HOPS = 3
_PROTO = {"tcp": 6, "udp": 17}


class Attach(NamedTuple):
    kind: str      # host | gw | lo
    device: str    # host or leaf
    port: str      # host interface, or the gateway's port name
    vlan: int = 0


class Trace:
    def __init__(self, m: Model, leg: str, expect: str | None = None, learned: set | None = None) -> None:
        self.m, self.leg, self.expect = m, leg, expect
        self.hops: list[Hop] = []
        self.learned: set = learned if learned is not None else set()

    def hop(self, layer: str, device: str, what: str, rule: str, decision: str, detail: str = "",
            kind: str = FORWARD) -> bool:
        """Record a hop; False when the path ends here (a forwarding hop that does not permit)."""
        self.hops.append(Hop(layer, device, what, rule, decision, detail, kind, self.leg))
        return kind != FORWARD or decision == PERMIT

    def observed(self, layer: str, device: str) -> bool:
        why = self.m.unobserved.get((layer, device))
        if why is None:
            return True
        self.hops.append(Hop(layer, device, "target", device, UNKNOWN, f"not observed: {why}", FORWARD, self.leg))
        return False


def ip_frame(pkt: Pkt, in_port: str, vlan: int | None, dl_src: str | None = None) -> dict:
    f = {"in_port": in_port, "vlan": vlan, "dl_type": "ip", "nw_src": pkt.saddr, "nw_dst": pkt.daddr,
         "nw_proto": _PROTO.get(pkt.proto), "arp_spa": None, "arp_tpa": None}
    if pkt.ct == "new" and pkt.dport is not None:
        f["tp_dst"] = pkt.dport       # the reply goes to the client's ephemeral port: not known
    if dl_src:
        f["dl_src"] = dl_src
    return f


def arp_frame(in_port: str, vlan: int | None, spa: str, tpa: str, dl_src: str | None = None) -> dict:
    f = {"in_port": in_port, "vlan": vlan, "dl_type": "arp", "arp_spa": spa, "arp_tpa": tpa,
         "nw_src": None, "nw_dst": None, "nw_proto": None, "tp_dst": None}
    if dl_src:
        f["dl_src"] = dl_src
    return f


def _flows(tr: Trace, hv: str, frames: list[tuple[str, dict]]) -> None:
    """One FILTER hop for the first frame (the IP frame), more for frames that are not forwarded."""
    table = tr.m.hvs[hv].flows
    for i, (label, frame) in enumerate(frames):
        action, key, detail = table.decide(frame)
        decision = PERMIT if action == NORMAL else DENY if action == DROP else UNKNOWN
        if i == 0 or decision != PERMIT:
            tr.hop(HV, hv, "ovs-flow", key or "(default)", decision, f"{label}: {detail}", FILTER)


# ------------------------------------------------------------------------------ host routing
def _host_lookup(m: Model, host: str, dst: str) -> tuple | None:
    h = m.hosts[host]
    best: tuple | None = None
    for net, iface in h.connected:
        if best is None or net.prefixlen > best[0].prefixlen:
            if _in(dst, net):
                best = (net, iface, None, f"connected {net} dev {iface}")
    for net, gw, iface, key in h.routes:
        if (best is None or net.prefixlen > best[0].prefixlen) and _in(dst, net):
            best = (net, iface, gw, f"{key} via {gw} dev {iface}")
    return best


def _in(addr: str, net: Prefix) -> bool:
    return net.holds(addr)


def host_leg(tr: Trace, host: str, dst: str, pkt: Pkt) -> Attach | None:
    m = tr.m
    if host not in m.hosts:
        tr.hop(HOST, host, "target", host, UNKNOWN, "not a host of the inventory")
        return None
    if not tr.observed(HOST, host):
        return None
    if dst in m.hosts[host].addrs:
        tr.hop(HOST, host, "route", "local", PERMIT, f"{dst} is an address of {host} (lo)")
        _output(tr, host, pkt, "lo")
        return Attach("lo", host, "lo")
    found = _host_lookup(m, host, dst)
    if found is None:
        tr.hop(HOST, host, "route", f"to {dst}", DENY, "no route in the application network "
               "(default routes are not observed; they lead to the management network)")
        return None
    net, iface, gw, rule = found
    if gw is not None and not any(i == iface and _in(gw, n) for n, i in m.hosts[host].connected):
        tr.hop(HOST, host, "route", rule, DENY, f"gateway {gw} is not on-link on {iface}")
        return None
    tr.hop(HOST, host, "route", rule, PERMIT)
    _output(tr, host, pkt, iface)
    end = segment(tr, Attach(HOST, host, iface), gw or dst, pkt, pkt.saddr, final=gw is None)
    if end is None:
        return None
    if end.kind == "gw":
        return leaf_route(tr, end.device, dst, pkt)
    if gw is not None:
        tr.hop(HOST, end.device, "route", f"via {gw}", UNKNOWN, "the next hop is a host: forwarding through "
               "hosts is not modelled")
        return None
    return end


def _output(tr: Trace, host: str, pkt: Pkt, oif: str) -> None:
    """The host's own output and postrouting chains (only hops when it has base chains there)."""
    view = tr.m.hosts[host]
    nft_deps.note(view, pkt)      # whether output chains exist is a read of its nftables too
    if view.hooks.get("output") or view.hooks.get("postrouting"):
        d, rule, detail, _ = host_filter(view, ("output", "postrouting"), pkt._replace(oif=oif))
        tr.hop(HOST, host, "nftables", rule or "(no rule)", d, detail, FILTER)


def outside_leg(tr: Trace, leaf: str, dst: str, pkt: Pkt) -> Attach | None:
    tr.hop(SW, leaf, "underlay", f"from {pkt.saddr}", PERMIT, "enters from outside every segment (routed fabric)")
    return leaf_route(tr, leaf, dst, pkt)


# ------------------------------------------------------------------------------ leaf routing
def _underlay(tr: Trace, a: str, b: str) -> bool:
    m = tr.m
    va, vb = m.wiring.vtep.get(a, "?"), m.wiring.vtep.get(b, "?")
    if not tr.observed(SW, b):
        return False
    bgp_a, bgp_b = m.leaves[a].bgp, m.leaves[b].bgp
    if bgp_a is None or bgp_b is None:
        who = a if bgp_a is None else b
        return tr.hop(SW, who, "underlay", f"bgp {va} -> {vb}", DENY, f"no BGP instance on {who}")
    if f"{vb}/32" not in (bgp_b.get("networks") or ()):
        return tr.hop(SW, b, "underlay", f"bgp {bgp_b.get('asn')}", DENY, f"{b} does not announce its VTEP {vb}/32")
    return tr.hop(SW, a, "underlay", f"{va} -> {vb}", PERMIT, f"BGP: {b} announces {vb}/32")


def leaf_route(tr: Trace, leaf: str, dst: str, pkt: Pkt, depth: int = 0) -> Attach | None:
    m = tr.m
    if not tr.observed(SW, leaf):
        return None
    lf = m.leaves[leaf]
    conn = longest_match(lf.gw_nets, dst)
    hr = longest_match(lf.host_routes, dst)
    if hr is not None and hr[1][0] == m.wiring.vtep.get(leaf):
        tr.hop(SW, leaf, "host-route", hr[1][1], UNKNOWN if conn is None else PERMIT,
               "via the leaf's own VTEP: inactive", FILTER)
        hr = None
    if hr is not None and (conn is None or hr[0].prefixlen >= conn[0].prefixlen):
        nh, key = hr[1]
        far = m.wiring.vtep_leaf.get(nh)
        if far is None:
            tr.hop(SW, leaf, "host-route", key, UNKNOWN, f"next hop {nh} is no leaf's VTEP")
            return None
        if not tr.hop(SW, leaf, "host-route", key, PERMIT, f"via {nh} ({far})") or not _underlay(tr, leaf, far):
            return None
        if depth >= MAX_LEAF_HOPS:
            tr.hop(SW, far, "host-route", f"to {dst}", DENY, "routing loop between leaves")
            return None
        return leaf_route(tr, far, dst, pkt, depth + 1)
    if conn is None:
        tr.hop(SW, leaf, "route", f"to {dst}", DENY, "no gateway subnet or host route holds it")
        return None
    vlan = conn[1]
    name, gw = lf.gateways[vlan]
    tr.hop(SW, leaf, "gateway", f"{name} {gw['address']}/{gw['prefixlen']}", PERMIT, f"connected {conn[0]}")
    return segment(tr, Attach("gw", leaf, name, vlan), dst, pkt, gw["address"], final=True)


# ------------------------------------------------------------------------------ the L2 segment
def _locate(m: Model, ip: str, hv: str | None, leaf: str | None, vlan: int) -> Attach | None:
    ranked: list[tuple[int, Attach]] = []
    for host, iface in m.located.get(ip, ()):
        wired = m.wiring.host_port.get((host, iface))
        if wired is None:
            continue
        thv = wired[0]
        tleaf = m.wiring.leaf_of_hv(thv)
        view = m.hvs.get(thv)
        rank = 0 if thv == hv and view is not None and view.access.get(wired[1]) == vlan else 2 if tleaf == leaf else 3
        ranked.append((rank, Attach(HOST, host, iface)))
    for gleaf, gvlan in m.gw_at.get(ip, ()):
        rank = 1 if gleaf == leaf and gvlan == vlan else 4
        ranked.append((rank, Attach("gw", gleaf, m.leaves[gleaf].gateways[gvlan][0], gvlan)))
    return min(ranked)[1] if ranked else None


def _enter(tr: Trace, start: Attach, target: str, pkt: Pkt, sender: str) -> tuple[str, int] | None:
    m = tr.m
    wired = m.wiring.host_port.get((start.device, start.port))
    if wired is not None and wired[0] not in m.hvs:
        tr.hop(HV, wired[0], "target", wired[0], UNKNOWN, "not a hypervisor of the inventory")
        return None
    if wired is None:
        tr.hop(HOST, start.device, "interface", start.port, UNKNOWN,
               "not wired to a hypervisor in the inventory: leaves the application network")
        return None
    hv, port = wired
    if not tr.observed(HV, hv):
        return None
    tag = m.hvs[hv].access.get(port)
    if tag is None:
        tr.hop(HV, hv, "ovs-port", port, DENY, f"carries no VLAN tag (facing {start.device} {start.port})")
        return None
    tr.hop(HV, hv, "ovs-port", port, PERMIT, f"tag {tag}, facing {start.device} {start.port}")
    mac = m.wiring.mac.get((start.device, start.port))
    _flows(tr, hv, [("ip", ip_frame(pkt, port, None, mac)), ("arp", arp_frame(port, None, sender, target, mac))])
    return hv, tag


def _up(tr: Trace, hv: str, vlan: int) -> str | None:
    m = tr.m
    wired = m.wiring.uplink.get(hv)
    if wired is None:
        tr.hop(HV, hv, "uplink", "", DENY, "no leaf wired in the inventory")
        return None
    uport, leaf, lport = wired
    if leaf not in m.leaves:
        tr.hop(SW, leaf, "target", leaf, UNKNOWN, "the leaf is not a switch of the inventory")
        return None
    ok = vlan in m.hvs[hv].trunks.get(uport, ())
    if not tr.hop(HV, hv, "trunk-vlan", f"{uport}:{vlan}", PERMIT if ok else DENY,
                  "" if ok else f"the uplink does not carry VLAN {vlan}") or not tr.observed(SW, leaf):
        return None
    ok = vlan in m.leaves[leaf].trunks.get(lport, ())
    return leaf if tr.hop(SW, leaf, "vlan-trunk", f"{lport}:{vlan}", PERMIT if ok else DENY,
                          f"from {hv}" if ok else f"the trunk from {hv} does not carry VLAN {vlan}") else None


def _vxlan(tr: Trace, leaf: str, vlan: int, far: str, gw_mac: str | None) -> int | None:
    m = tr.m
    if far not in m.leaves:
        tr.hop(SW, str(far), "target", str(far), UNKNOWN, "the leaf is not a switch of the inventory")
        return None
    vx = m.leaves[leaf].vxlan_by_vlan.get(vlan)
    if vx is None:
        tr.hop(SW, leaf, "vxlan", f"VLAN {vlan}", DENY, f"no VXLAN device for VLAN {vlan} toward {far}")
        return None
    name, spec = vx
    vni, fvtep = int(spec["vni"]), m.wiring.vtep.get(far, "")
    flood = fvtep in (spec.get("flood") or ()) or (vni, leaf, far) in tr.learned
    detail = f"VNI {vni} to {far} {fvtep}" + ("" if flood else f": the flood list {list(spec.get('flood') or ())} "
                                                               f"lacks {fvtep} (ARP cannot reach {far})")
    if not tr.hop(SW, leaf, "vxlan", name, PERMIT if flood else DENY, detail) or not _underlay(tr, leaf, far):
        return None
    fx = m.leaves[far].vxlan_by_vni.get(vni)
    if fx is None:
        tr.hop(SW, far, "vxlan", f"VNI {vni}", DENY, f"no VXLAN device for VNI {vni}: frames from {leaf} are lost")
        return None
    if fx[1].get("dstport") != spec.get("dstport"):
        tr.hop(SW, far, "vxlan", fx[0], DENY, f"UDP port {fx[1].get('dstport')} != {spec.get('dstport')} on {leaf}")
        return None
    guard = next((n for n, g in m.leaves[far].gateways.values() if gw_mac and g.get("mac") == gw_mac
                  and g.get("mac_guard")), None)
    if guard is not None:
        tr.hop(SW, far, "gateway", guard, DENY, f"MAC guard drops the anycast MAC {gw_mac} arriving over VXLAN")
        return None
    tr.learned.add((vni, far, leaf))
    tr.hop(SW, far, "vxlan", fx[0], PERMIT, f"VNI {vni} tag {fx[1].get('vlan')}")
    return int(fx[1].get("vlan") or 0)


def _down(tr: Trace, leaf: str, vlan: int, target: Attach, pkt: Pkt, sender: str, ip: str) -> Attach | None:
    m = tr.m
    thv, tport = m.wiring.host_port[(target.device, target.port)]
    if thv not in m.wiring.uplink or thv not in m.hvs:
        tr.hop(HV, thv, "uplink", "", UNKNOWN, "hypervisor or its uplink not in the inventory")
        return None
    uport, _, lport = m.wiring.uplink[thv]
    ok = vlan in m.leaves[leaf].trunks.get(lport, ())
    if not tr.hop(SW, leaf, "vlan-trunk", f"{lport}:{vlan}", PERMIT if ok else DENY,
                  f"to {thv}" if ok else f"the trunk to {thv} does not carry VLAN {vlan}") \
            or not tr.observed(HV, thv):
        return None
    ok = vlan in m.hvs[thv].trunks.get(uport, ())
    if not tr.hop(HV, thv, "trunk-vlan", f"{uport}:{vlan}", PERMIT if ok else DENY,
                  "" if ok else f"the uplink does not carry VLAN {vlan}: frames dropped"):
        return None
    _flows(tr, thv, [("ip", ip_frame(pkt, uport, vlan)), ("arp", arp_frame(uport, vlan, sender, ip))])
    return _deliver(tr, thv, tport, vlan, target, sender, ip)


def _deliver(tr: Trace, hv: str, port: str, vlan: int, target: Attach, sender: str, ip: str) -> Attach | None:
    tag = tr.m.hvs[hv].access.get(port)
    if not tr.hop(HV, hv, "ovs-port", port, PERMIT if tag == vlan else DENY,
                  f"tag {tag}, to {target.device} {target.port}" if tag == vlan
                  else f"tag {tag}, not VLAN {vlan}: {target.device} is on another segment"):
        return None
    mac = tr.m.wiring.mac.get((target.device, target.port))
    _flows(tr, hv, [("arp reply", arp_frame(port, None, ip, sender, mac))])
    tr.hop(HOST, target.device, "address", f"{target.port}:{ip}", PERMIT)
    return target


def segment(tr: Trace, start: Attach, ip: str, pkt: Pkt, sender: str, final: bool) -> Attach | None:
    """From `start` (a host interface or a leaf gateway) to the attachment holding `ip` on its segment."""
    m = tr.m
    gw_mac = None
    if start.kind == HOST:
        entered = _enter(tr, start, ip, pkt, sender)
        if entered is None:
            return None
        hv, vlan = entered
        leaf = m.wiring.leaf_of_hv(hv)
    else:
        hv, leaf, vlan = None, start.device, start.vlan
        gw_mac = m.leaves[leaf].gateways[vlan][1].get("mac")
    target = _locate(m, ip, hv, leaf, vlan)
    if target is None:
        _not_found(tr, hv, leaf, vlan, ip, final)
        return None
    if target.kind == HOST and hv is not None and m.wiring.host_port[(target.device, target.port)][0] == hv:
        return _deliver(tr, hv, m.wiring.host_port[(target.device, target.port)][1], vlan, target, sender, ip)
    if hv is not None:
        leaf = _up(tr, hv, vlan)
    if leaf is None:
        return None
    far = target.device if target.kind == "gw" else m.wiring.leaf_of_hv(m.wiring.host_port[(target.device,
                                                                                             target.port)][0])
    if far is None:
        tr.hop(HOST, target.device, "target", target.port, UNKNOWN, "its hypervisor has no leaf in the inventory")
        return None
    if far != leaf:
        crossed = _vxlan(tr, leaf, vlan, far, gw_mac)
        if crossed is None:
            return None
        leaf, vlan = far, crossed
    if target.kind == "gw":
        ok = target.vlan == vlan
        return target if tr.hop(SW, leaf, "gateway", target.port, PERMIT if ok else DENY,
                                f"holds {ip}" if ok else f"on VLAN {target.vlan}, not {vlan}") else None
    return _down(tr, leaf, vlan, target, pkt, sender, ip)


def _not_found(tr: Trace, hv: str | None, leaf: str | None, vlan: int, ip: str, final: bool) -> None:
    where = (HV, hv) if hv is not None else (SW, leaf or "")
    if final and tr.expect and (HOST, tr.expect) in tr.m.unobserved:
        tr.hop(HOST, tr.expect, "target", tr.expect, UNKNOWN,
               f"{ip} is expected there; not observed: {tr.m.unobserved[(HOST, tr.expect)]}")
    else:
        tr.hop(where[0], str(where[1]), "segment", f"VLAN {vlan}", DENY, f"no observed device holds {ip}")
