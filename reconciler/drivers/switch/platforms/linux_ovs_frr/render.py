"""Platform `linux_ovs_frr`: a Linux leaf with its own Open vSwitch (VLANs), kernel VXLAN per
VNI and FRR (routed underlay), driven over SSH (netmiko device type `linux`).

Contract (see platforms.py for the Platform fields):
Observe sections (one SSH round trip; parsers in parse.py): OVS bridges/ports (`ovs-vsctl --format=json`),
`ip -j -d addr show`, `bridge -j fdb show`, the reconciler's OVS flows (`ovs-ofctl
dump-flows` filtered by cookie), FRR `show running-config` and `show bgp summary json`.
They parse into compile/switch.py's kinds:
  vlan-trunk `<port>:<vlan>` {bridge, port, vlan}; owned when the port carries the mark
             external_ids:netintent_vlan_<vlan>=<app> (VLANs without it: owned=False)
  vxlan      `vxlan<vni>`    {bridge, vni, vlan, local, dstport, flood}; owned when the device's
             alias is `netintent app=<app>`; flood = `00:00:00:00:00:00` fdb dsts
  gateway    `gw<vlan>`      {bridge, vlan, address, prefixlen, mac, mac_guard}; owned when the
             OVS port has external_ids:netintent_app; mac_guard = both guard flows present
  host-route `<ip>/32`       {prefix, nexthop}: FRR static routes with tag 20041 (0x4E49, the
             reconciler's mark; other static routes are reported owned=False); app = the app
             of the gateway whose subnet holds the prefix
  bgp        `<asn>`         {asn, router_id, networks, neighbors} from the running config
Renderer: ordered argv commands, `kind_order` = bgp, vlan-trunk, vxlan, gateway, host-route
(deletes in reverse). Trunk VLANs are added and removed one by one (`add`/`remove port P trunks V`;
the port's set is never rewritten from what a run observed, which in a run scoped to some apps
is only their VLANs); a removal that leaves no observed VLAN adds the parking VLAN 4095, so
`trunks` is never empty (an empty `trunks` means *all* VLANs in OVS). Negation rules: a vxlan by deleting its OVS port
and device; a gateway by deleting its flows (cookie) and port; a host route by
`no ip route P NH tag T`; BGP parts by `no ...` lines; the BGP instance by `no router bgp`.
Anycast gateway MAC flap guard: every leaf has the same gateway MAC, so frames with that
source MAC are admitted into the bridge only from the local gateway port (priority 301
NORMAL, priority 300 drop, cookie 0x4e49_0001_0000_<vlan>): replies of a remote leaf's
gateway never reach this leaf's MAC table. A gateway therefore cannot ARP for instances under
other leaves; the `host-route` kind routes to them over the underlay instead.
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping, Sequence

from reconciler.drivers.switch import platforms as P
from reconciler.drivers.switch.platforms import Command, Platform
from reconciler.drivers.switch.platforms.linux_ovs_frr.parse import (
    ALIAS_PREFIX,
    APP_MARK,
    GW_COOKIE,
    PARK_VLAN,
    ROUTE_TAG,
    SECTIONS,
    VLAN_MARK,
    VXLAN_MTU,
    ZERO_MAC,
    health,
    parse,
    parse_bgp_config,
    running_config,
    template_vars,
)
from reconciler.model import Resource
from reconciler.status import Action

__all__ = ["PLATFORM", "PARK_VLAN", "parse", "parse_bgp_config", "render", "running_config"]


# ---------------------------------------------------------------- render: changes -> commands
def _vsctl(*parts: Sequence[str]) -> tuple[str, ...]:
    argv: list[str] = ["ovs-vsctl", "--timeout=10"]
    for p in parts:
        argv += ["--", *p]
    return tuple(argv)


def _trunk_commands(changes: Sequence[Any], observed: Sequence[Resource]) -> list[Command]:
    """vlan-trunk changes as one ovs-vsctl per port: VLANs removed, VLANs added, ownership marks
    set and removed. Only the changed VLANs are named: the others on the port (other apps',
    hand-made) are never touched. The parking VLAN is added when no VLAN `observed` on the port is
    left (a run scoped to some apps may see fewer than there are: parking one more is harmless;
    a rollback observes the whole switch, so it restores the captured set exactly)."""
    # OVS port names are unique per switch: one command per port, whatever bridge is asked.
    current: dict[str, set[int]] = {}
    for r in observed:
        if r.key.kind == "vlan-trunk":
            current.setdefault(r.spec["port"], set()).add(r.spec["vlan"])
    touched: dict[str, list[Any]] = {}
    for c in changes:
        if c.key.kind != "vlan-trunk":
            continue
        res = c.desired if c.action is not Action.DELETE else c.observed
        touched.setdefault(P.ifname(res.spec["port"], "port"), []).append(c)
    cmds = []
    for port, cs in sorted(touched.items()):
        adds: set[int] = set()
        dels: set[int] = set()
        sets: list[str] = []
        removes: list[str] = []
        for c in cs:
            if c.action is Action.DELETE:
                v = P.vlan(c.observed.spec["vlan"])
                dels.add(v)
                removes.append(f"{VLAN_MARK}{v}")
            else:
                if c.observed is not None and c.observed.spec["vlan"] != c.desired.spec["vlan"]:
                    dels.add(P.vlan(c.observed.spec["vlan"]))
                v = P.vlan(c.desired.spec["vlan"])
                adds.add(v)
                app = P.app_name(c.app)
                if app:
                    sets.append(f"external_ids:{VLAN_MARK}{v}={app}")
        dels -= adds
        parts: list[Sequence[str]] = []
        if dels:
            parts.append(["remove", "port", port, "trunks", *(str(v) for v in sorted(dels))])
            if not (current.get(port, set()) - dels) | adds:
                parts.append(["add", "port", port, "trunks", str(PARK_VLAN)])
        if adds:
            parts.append(["add", "port", port, "trunks", *(str(v) for v in sorted(adds))])
        if sets:
            parts.append(["set", "port", port, *sets])
        for mark in removes:
            parts.append(["remove", "port", port, "external_ids", mark])
        key = str(cs[0].key) if len(cs) == 1 else ",".join(str(c.key) for c in cs)
        cmds.append(Command(_vsctl(*parts), key))
    return cmds


def _vxlan_create(k: str, s: Mapping[str, Any], app: str) -> list[Command]:
    name, br = P.ifname(f"vxlan{P.vni(s['vni'])}"), P.ifname(s["bridge"], "bridge")
    c = [("ip", "link", "add", name, "type", "vxlan", "id", str(s["vni"]), "local", P.ipv4(s["local"], "local"),
          "dstport", str(int(s["dstport"]))),
         ("ip", "link", "set", "dev", name, "alias", f"{ALIAS_PREFIX}{P.app_name(app)}", "mtu", VXLAN_MTU, "up"),
         ("ethtool", "-K", name, "tx", "off"),
         _vsctl(["--may-exist", "add-port", br, name, f"tag={P.vlan(s['vlan'])}"])]
    c += [("bridge", "fdb", "append", ZERO_MAC, "dev", name, "dst", P.ipv4(d, "flood")) for d in s["flood"]]
    return [Command(a, k) for a in c]


def _vxlan_delete(k: str, s: Mapping[str, Any], name: str) -> list[Command]:
    name = P.ifname(name)
    argv = [_vsctl(["--if-exists", "del-port", P.ifname(s["bridge"], "bridge"), name])] if s.get("bridge") else []
    return [Command(a, k) for a in argv + [("ip", "link", "del", "dev", name)]]


def _vxlan_update(k: str, d: Mapping[str, Any], o: Mapping[str, Any], app: str, name: str) -> list[Command]:
    if any(d[f] != o.get(f) for f in ("vni", "local", "dstport", "bridge")):
        return _vxlan_delete(k, o, name) + _vxlan_create(k, d, app)
    cmds = []
    if d["vlan"] != o.get("vlan"):
        cmds.append(_vsctl(["set", "port", P.ifname(name), f"tag={P.vlan(d['vlan'])}"]))
    for dst in sorted(set(o.get("flood", ())) - set(d["flood"])):
        cmds.append(("bridge", "fdb", "del", ZERO_MAC, "dev", name, "dst", P.ipv4(dst, "flood")))
    for dst in sorted(set(d["flood"]) - set(o.get("flood", ()))):
        cmds.append(("bridge", "fdb", "append", ZERO_MAC, "dev", name, "dst", P.ipv4(dst, "flood")))
    return [Command(a, k) for a in cmds]


def _gw_cookie(v: int) -> str:
    return f"{GW_COOKIE | P.vlan(v):#x}"


def _gateway_create(k: str, s: Mapping[str, Any], app: str, name: str) -> list[Command]:
    name, br, m = P.ifname(name), P.ifname(s["bridge"], "bridge"), P.mac(s["mac"])
    v, ck = P.vlan(s["vlan"]), _gw_cookie(s["vlan"])
    addr = f"{P.ipv4(s['address'])}/{int(s['prefixlen'])}"
    c = [_vsctl(["--may-exist", "add-port", br, name, f"tag={v}"],
                ["set", "interface", name, "type=internal", f'mac="{m}"'],
                ["set", "port", name, f"external_ids:{APP_MARK}={P.app_name(app)}"]),
         ("sysctl", "-q", "-w", f"net.ipv6.conf.{name}.disable_ipv6=1"),
         ("ethtool", "-K", name, "tx", "off"),
         ("ip", "addr", "replace", addr, "dev", name),
         ("ip", "link", "set", "dev", name, "up"),
         ("sysctl", "-q", "-w", "net.ipv4.ip_forward=1")]
    if s.get("mac_guard", True):
        c += [("ovs-ofctl", "add-flow", br, f"cookie={ck},priority=301,in_port={name},dl_src={m},actions=NORMAL"),
              ("ovs-ofctl", "add-flow", br, f"cookie={ck},priority=300,dl_src={m},actions=drop")]
    return [Command(a, k) for a in c]


def _gateway_delete(k: str, s: Mapping[str, Any], name: str) -> list[Command]:
    if not s.get("bridge"):
        return []
    br = P.ifname(s["bridge"], "bridge")
    c = [("ovs-ofctl", "del-flows", br, f"cookie={_gw_cookie(s['vlan'])}/-1"),
         _vsctl(["--if-exists", "del-port", br, P.ifname(name)])]
    return [Command(a, k) for a in c]


def _vtysh(lines: Iterable[str]) -> tuple[str, ...]:
    argv = ["vtysh", "-c", "configure terminal"]
    for line in lines:
        argv += ["-c", line]
    return tuple(argv)


def _bgp_body(s: Mapping[str, Any], o: Mapping[str, Any] | None) -> list[str]:
    lines = []
    if o is None or s["router_id"] != o.get("router_id"):
        lines.append(f"bgp router-id {P.ipv4(s['router_id'], 'router_id')}")
    if o is None:
        lines.append("no bgp ebgp-requires-policy")
    old_n = set(o.get("neighbors", ())) if o else set()
    lines += [f"no neighbor {P.ifname(n, 'neighbor')}" for n in sorted(old_n - set(s["neighbors"]))]
    lines += [f"neighbor {P.ifname(n, 'neighbor')} interface remote-as external"
              for n in sorted(set(s["neighbors"]) - old_n)]
    old_p = set(o.get("networks", ())) if o else set()
    af = [f"no network {P.prefix(p)}" for p in sorted(old_p - set(s["networks"]))]
    af += [f"network {P.prefix(p)}" for p in sorted(set(s["networks"]) - old_p)]
    if af:
        lines += ["address-family ipv4 unicast", *af, "exit-address-family"]
    return lines


def _bgp(c: Any) -> list[Command]:
    k = str(c.key)
    if c.action is Action.DELETE:
        return [Command(_vtysh([f"no router bgp {P.asn(c.observed.spec['asn'])}"]), k)]
    d = c.desired.spec
    body = _bgp_body(d, c.observed.spec if c.observed is not None else None)
    return [Command(_vtysh([f"router bgp {P.asn(d['asn'])}", *body]), k)] if body else []


def _route(c: Any) -> list[Command]:
    k, cmds = str(c.key), []
    if c.observed is not None:
        o = c.observed.spec
        cmds.append(f"no ip route {P.prefix(o['prefix'])} {P.ipv4(o['nexthop'], 'nexthop')} tag {ROUTE_TAG}")
    if c.action is not Action.DELETE:
        d = c.desired.spec
        cmds.append(f"ip route {P.prefix(d['prefix'])} {P.ipv4(d['nexthop'], 'nexthop')} tag {ROUTE_TAG}")
    return [Command(_vtysh(cmds), k)]


def render(changes: Sequence[Any], observed: Sequence[Resource], desired: Sequence[Resource],
           vars: Mapping[str, Any]) -> list[Command]:
    creates = [c for c in changes if c.action is not Action.DELETE]
    deletes = [c for c in changes if c.action is Action.DELETE]
    cmds: list[Command] = []
    for c in sorted(deletes, key=lambda c: -KIND_ORDER.index(c.key.kind)):
        k, name = str(c.key), c.key.name
        if c.key.kind == "gateway":
            cmds += _gateway_delete(k, c.observed.spec, name)
        elif c.key.kind == "vxlan":
            cmds += _vxlan_delete(k, c.observed.spec, name)
        elif c.key.kind == "bgp":
            cmds += _bgp(c)
        elif c.key.kind == "host-route":
            cmds += _route(c)
    # trunk deletes and creates share one rewrite per port
    trunk_changes = [c for c in changes if c.key.kind == "vlan-trunk"]
    for kind in KIND_ORDER:
        if kind == "vlan-trunk":
            cmds += _trunk_commands(trunk_changes, observed)
            continue
        for c in (c for c in creates if c.key.kind == kind):
            k, name = str(c.key), c.key.name
            if kind == "bgp":
                cmds += _bgp(c)
            elif kind == "vxlan":
                cmds += (_vxlan_create(k, c.desired.spec, c.app) if c.observed is None
                         else _vxlan_update(k, c.desired.spec, c.observed.spec, c.app, name))
            elif kind == "host-route":
                cmds += _route(c)
            elif kind == "gateway":
                if c.observed is not None:
                    cmds += _gateway_delete(k, c.observed.spec, name)
                cmds += _gateway_create(k, c.desired.spec, c.app, name)
    unknown = sorted({c.key.kind for c in changes} - set(KIND_ORDER))
    if unknown:
        raise P.InvalidValue(f"kind(s) {', '.join(unknown)} are not switch kinds")
    return _merge_vtysh(cmds)


def _merge_vtysh(cmds: list[Command]) -> list[Command]:
    """Consecutive FRR commands become one vtysh call (one process, stops at the first error)."""
    head = _vtysh(())
    out: list[Command] = []
    for c in cmds:
        prev = out[-1] if out else None
        if prev is not None and prev.argv[:3] == head and c.argv[:3] == head:
            keys = prev.key.split(",") + [k for k in c.key.split(",") if k not in prev.key.split(",")]
            out[-1] = Command(prev.argv + ("-c", "end") + c.argv[1:], ",".join(keys))
        else:
            out.append(c)
    return out


KIND_ORDER = ("bgp", "vlan-trunk", "vxlan", "gateway", "host-route")

PLATFORM = Platform(
    name="linux_ovs_frr", device_type="linux", observe=SECTIONS, template_vars=template_vars,
    parse=parse, running_config=running_config, render=render, health=health,
    session="posix_script", kind_order=KIND_ORDER)
