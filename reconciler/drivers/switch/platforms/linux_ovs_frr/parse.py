"""Observe side of platform `linux_ovs_frr`: observe sections, parsers, running-config snapshot.

Contract: pure functions of the raw section outputs (text as the switch printed it); see
render.py for the platform as a whole and the shapes produced.
"""
from __future__ import annotations

import ipaddress
import json
import re
from typing import Any, Mapping

from reconciler.drivers.switch import platforms as P
from reconciler.drivers.switch.platforms import ObserveSection
from reconciler.model import Layer, Resource, ResourceKey

PARK_VLAN = 4095                   # trunks value meaning "no VLAN" (empty trunks = all VLANs)
GW_COOKIE = 0x4E49000100000000     # | vlan: guard flows of gateway gw<vlan>
GW_COOKIE_MASK = 0xFFFFFFFF00000000
VXLAN_RE = re.compile(r"^vxlan(\d+)$")
GW_RE = re.compile(r"^gw(\d+)$")
ALIAS_PREFIX = "netintent app="
VLAN_MARK = "netintent_vlan_"
APP_MARK = "netintent_app"
ZERO_MAC = "00:00:00:00:00:00"
VXLAN_MTU = "1500"
ROUTE_TAG = 20041                  # 0x4E49: FRR static route tag marking the reconciler's routes


# ---------------------------------------------------------------- observe: sections + parse
def template_vars(vars: Mapping[str, Any]) -> dict[str, str]:
    br = P.ifname(str(vars.get("netintent_bridge", "br0")), "netintent_bridge")
    return {"bridge": br, "cookie": f"{GW_COOKIE:#x}/{GW_COOKIE_MASK:#x}"}


SECTIONS = (
    ObserveSection("bridges", "ovs-vsctl --format=json --columns=name,ports list bridge"),
    ObserveSection("ports", "ovs-vsctl --format=json --columns=_uuid,name,tag,trunks,external_ids list port"),
    ObserveSection("links", "ip -j -d addr show"),
    ObserveSection("fdb", "bridge -j fdb show"),
    ObserveSection("flows", "ovs-ofctl --no-stats dump-flows {bridge} cookie={cookie}"),
    ObserveSection("frr", "vtysh -c 'show running-config'", needs="netintent_asn"),
    ObserveSection("bgp_summary", "vtysh -c 'show bgp summary json'", needs="netintent_asn"),
)


def _ovs_value(v: Any) -> Any:
    """OVSDB JSON value -> Python: sets -> lists, maps -> dicts, uuids -> str."""
    if isinstance(v, list) and len(v) == 2 and v[0] in ("set", "map", "uuid"):
        if v[0] == "uuid":
            return v[1]
        if v[0] == "map":
            return {k: _ovs_value(x) for k, x in v[1]}
        return [_ovs_value(x) for x in v[1]]
    return v


def _ovs_rows(text: str) -> list[dict]:
    data = json.loads(text)
    heads = data["headings"]
    return [{h: _ovs_value(c) for h, c in zip(heads, row)} for row in data["data"]]


def _as_list(v: Any) -> list:
    return v if isinstance(v, list) else [v]


def _flow_cookies(text: str) -> dict[int, set[int]]:
    """cookie -> set of priorities, from `ovs-ofctl dump-flows` text."""
    out: dict[int, set[int]] = {}
    for line in text.splitlines():
        m = re.search(r"cookie=(0x[0-9a-f]+).*?priority=(\d+)", line)
        if m:
            out.setdefault(int(m.group(1), 16), set()).add(int(m.group(2)))
    return out


def parse_bgp_config(text: str) -> dict | None:
    """The default-VRF `router bgp` block of an FRR running config -> bgp spec (or None)."""
    spec: dict[str, Any] | None = None
    in_block, af = False, ""
    for raw in text.splitlines():
        line = raw.rstrip()
        if not line.strip() or line.strip() == "!":
            continue
        if not line.startswith(" "):          # a top-level line ends any block
            in_block = False
            m = re.match(r"^router bgp (\d+)$", line)
            if m and spec is None:
                spec = {"asn": int(m.group(1)), "router_id": "", "networks": [], "neighbors": []}
                in_block, af = True, ""
            continue
        if not in_block or spec is None:   # in_block implies a spec; the check is for the type checker
            continue
        s = line.strip()
        if s.startswith("address-family "):
            af = s[len("address-family "):]
        elif s == "exit-address-family":
            af = ""
        elif s.startswith("bgp router-id "):
            spec["router_id"] = s.split()[2]
        elif not af and (m := re.match(r"^neighbor (\S+) interface( .*)?$", s)):
            spec["neighbors"].append(m.group(1))
        elif af == "ipv4 unicast" and (m := re.match(r"^network (\S+)$", s)):
            spec["networks"].append(m.group(1))
    if spec is None:
        return None
    spec["networks"] = sorted(set(spec["networks"]))
    spec["neighbors"] = sorted(set(spec["neighbors"]))
    return spec


def parse(target: str, raw: Mapping[str, str], vars: Mapping[str, Any]) -> list[Resource]:
    bridges = _ovs_rows(raw["bridges"])
    ports = {r["_uuid"]: r for r in _ovs_rows(raw["ports"])}
    port_bridge = {ports[u]["name"]: b["name"] for b in bridges for u in _as_list(b["ports"]) if u in ports}
    by_name = {r["name"]: r for r in ports.values()}
    links = {l["ifname"]: l for l in json.loads(raw["links"] or "[]")}
    flood = _flood_lists(raw["fdb"])
    cookies = _flow_cookies(raw.get("flows", ""))
    out = _port_resources(target, by_name, port_bridge, links, cookies)
    out += _vxlan_resources(target, links, by_name, port_bridge, flood)
    if "frr" in raw:
        out += _frr_resources(target, raw["frr"], [r for r in out if r.key.kind == "gateway"])
    return out


def _key(target: str, kind: str, name: str) -> ResourceKey:
    return ResourceKey(Layer.SWITCH, target, kind, name)


def _flood_lists(fdb_text: str) -> dict[str, list[str]]:
    """VXLAN device -> remote VTEPs of its all-zero (flood) fdb entries."""
    flood: dict[str, list[str]] = {}
    for e in json.loads(fdb_text or "[]"):
        if e.get("mac") == ZERO_MAC and e.get("dst"):
            flood.setdefault(e.get("ifname", ""), []).append(e["dst"])
    return flood


def _port_resources(target: str, by_name: Mapping[str, dict], port_bridge: Mapping[str, str],
                    links: Mapping[str, dict], cookies: Mapping[int, set[int]]) -> list[Resource]:
    """Per OVS port, by name: its trunked VLANs (vlan-trunk) and, for a marked gw<vlan> port, the gateway."""
    out: list[Resource] = []
    for name, row in sorted(by_name.items()):
        ext = row.get("external_ids") or {}
        br = port_bridge.get(name, "")
        for v in _as_list(row.get("trunks") or []):
            if v == PARK_VLAN:
                continue
            app = ext.get(f"{VLAN_MARK}{v}", "")
            out.append(Resource(_key(target, "vlan-trunk", f"{name}:{v}"), {"bridge": br, "port": name, "vlan": v},
                                app, owned=f"{VLAN_MARK}{v}" in ext))
        m = GW_RE.match(name)
        if m and APP_MARK in ext:
            link = links.get(name, {})
            addrs = [a for a in link.get("addr_info", []) if a.get("family") == "inet"]
            tag = row.get("tag")
            vl = tag if isinstance(tag, int) else 0
            prios = cookies.get(GW_COOKIE | vl, set())
            out.append(Resource(_key(target, "gateway", name), {
                "bridge": br, "vlan": vl,
                "address": addrs[0]["local"] if addrs else "",
                "prefixlen": addrs[0]["prefixlen"] if addrs else 0,
                "mac": str(link.get("address", "")).lower(),
                "mac_guard": {300, 301} <= prios}, ext[APP_MARK]))
    return out


def _vxlan_resources(target: str, links: Mapping[str, dict], by_name: Mapping[str, dict],
                     port_bridge: Mapping[str, str], flood: Mapping[str, list[str]]) -> list[Resource]:
    """Every vxlan<vni> device: VNI, access VLAN, local VTEP, port and flood list; owned by its alias."""
    out: list[Resource] = []
    for name, link in sorted(links.items()):
        info = link.get("linkinfo") or {}
        if info.get("info_kind") != "vxlan" or not VXLAN_RE.match(name):
            continue
        alias = link.get("ifalias", "") or ""
        owned = alias.startswith(ALIAS_PREFIX)
        data = info.get("info_data") or {}
        row = by_name.get(name, {})
        tag = row.get("tag")
        out.append(Resource(_key(target, "vxlan", name), {
            "bridge": port_bridge.get(name, ""), "vni": data.get("id"),
            "vlan": tag if isinstance(tag, int) else 0,
            "local": data.get("local", ""), "dstport": data.get("port"),
            "flood": sorted(set(flood.get(name, [])))},
            alias[len(ALIAS_PREFIX):] if owned else "", owned=owned))
    return out


def _frr_resources(target: str, frr_text: str, gateways: list[Resource]) -> list[Resource]:
    """Static host routes (owned when tagged ROUTE_TAG) and the BGP instance of FRR's running config."""
    out: list[Resource] = []
    # a host route belongs to the app whose gateway subnet holds it
    subnets = [(ipaddress.ip_network(f"{r.spec['address']}/{r.spec['prefixlen']}", strict=False), r.app)
               for r in gateways if r.spec["address"]]
    for line in frr_text.splitlines():
        m = re.match(r"^ip route (\S+) (\d+\.\d+\.\d+\.\d+)(.*)$", line.rstrip())
        if m:
            tag = re.search(r"\btag (\d+)", m.group(3))
            owned = tag is not None and int(tag.group(1)) == ROUTE_TAG
            net = ipaddress.ip_network(m.group(1), strict=False)
            app = next((a for sn, a in subnets if sn.version == net.version and net.subnet_of(sn)), "")  # type: ignore[arg-type]
            out.append(Resource(_key(target, "host-route", m.group(1)), {"prefix": m.group(1), "nexthop": m.group(2)},
                                app, owned=owned))
    bgp = parse_bgp_config(frr_text)
    if bgp is not None:
        out.append(Resource(_key(target, "bgp", str(bgp["asn"])), bgp, ""))
    return out


def health(raw: Mapping[str, str]) -> list[str]:
    """Human lines on BGP sessions (not part of the spec: state, not configuration)."""
    text = raw.get("bgp_summary", "")
    if not text.strip():
        return []
    try:
        peers = json.loads(text).get("ipv4Unicast", {}).get("peers", {})
    except ValueError:
        return ["bgp summary: unparsable"]
    return [f"bgp peer {n}: {p.get('state', '?')}" for n, p in sorted(peers.items())]


def running_config(raw: Mapping[str, str]) -> dict:
    """Canonical snapshot: OVS ports (no uuids), interface config, flood lists, owned flows, FRR."""
    bridges = _ovs_rows(raw["bridges"])
    ports = {r["_uuid"]: r for r in _ovs_rows(raw["ports"])}
    ovs = {b["name"]: {ports[u]["name"]: {"tag": ports[u]["tag"],
                                          "trunks": sorted(_as_list(ports[u]["trunks"] or [])),
                                          "external_ids": ports[u]["external_ids"]}
                       for u in _as_list(b["ports"]) if u in ports} for b in bridges}
    links = {}
    for l in json.loads(raw["links"] or "[]"):
        info = l.get("linkinfo") or {}
        links[l["ifname"]] = {"kind": info.get("info_kind", ""),
                              "data": info.get("info_data", {}) if info.get("info_kind") == "vxlan" else {},
                              "mtu": l.get("mtu"), "up": "UP" in l.get("flags", []), "alias": l.get("ifalias", ""),
                              "mac": l.get("address", ""),
                              "addrs": sorted(f"{a['local']}/{a['prefixlen']}" for a in l.get("addr_info", [])
                                              if a.get("family") == "inet")}
    fdb = sorted(f"{e.get('ifname')} {e.get('dst')}" for e in json.loads(raw["fdb"] or "[]")
                 if e.get("mac") == ZERO_MAC and e.get("dst"))
    flows = sorted(line.strip() for line in raw.get("flows", "").splitlines() if "cookie=" in line)
    frr = [l for l in raw.get("frr", "").splitlines()
           if l.strip() and not l.startswith(("Building configuration", "Current configuration"))]
    return {"ovs": ovs, "links": links, "flood": fdb, "flows": flows, "frr": frr}
