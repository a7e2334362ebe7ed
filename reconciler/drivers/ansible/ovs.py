"""Open vSwitch for the hypervisor driver: parse ovs-vsctl/ovs-ofctl output, render changes (pure).

Contract:
- `parse_ovs(vsctl_json_lines, flows_text, target)` -> resources in compile/hypervisor.py's shapes:
    ovs-port   `<port>` {bridge, port, tag}: owned when the Port's external_ids carry
               `netintent_app` (its value is the app); other tagged ports owned=False.
    trunk-vlan `<port>:<vlan>` {bridge, port, vlan} for every VLAN in a port's `trunks`; owned
               when external_ids carry `netintent_trunk_<vlan>` (value: the app).
    ovs-flow   `priority=<p>,<match>` {table, priority, match, actions, cookie} for flows whose
               cookie has the 0x4E49 prefix (only those are dumped); the match is canonical
               (names.canonical_match), counters/durations are never read
               (`--no-stats`); the app comes from the bridge's `netintent_cookie_<hex>` mark.
- `render_ovs(desired, observed, prune, bridge)` -> OvsPlan: one `ovs-vsctl` argv (a single
  transaction: tags, trunk VLANs added and removed one by one (`add`/`remove Port P trunks V`, never
  the whole set rewritten: a run scoped to some apps sees only their VLANs, and other apps' or
  hand-made VLANs on the same port must stay), ownership marks)
  and one flow file for `ovs-ofctl --bundle add-flows` with only the difference (`add` for
  new/changed flows, `delete_strict` with the exact cookie for owned flows no longer desired,
  only when `prune`). Unowned ports, VLANs and flows are never touched.
Every value is validated before it reaches an argv or the flow file.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Iterable

from reconciler.model import Layer, Resource, ResourceKey
from reconciler.names import COOKIE_PREFIX, canonical_match

PORT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,14}$")
APP_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
TOKEN_RE = re.compile(r"^[A-Za-z0-9_]+(=[A-Za-z0-9_.:/-]+)?$")
ACTIONS_RE = re.compile(r"^[A-Za-z0-9_:.,-]+$")
APP_KEY = "netintent_app"
TRUNK_KEY = "netintent_trunk_"
COOKIE_KEY = "netintent_cookie_"


class OvsError(ValueError):
    """A value that cannot be passed safely to ovs-vsctl/ovs-ofctl."""


# ---------------------------------------------------------------------------- parse
def _ovs_value(v: Any) -> Any:
    """OVSDB JSON -> Python: ["set", [...]] -> list, ["map", [[k, v]]] -> dict, ["uuid", u] -> u."""
    if isinstance(v, list) and len(v) == 2 and v[0] in ("set", "map", "uuid"):
        if v[0] == "set":
            return [_ovs_value(x) for x in v[1]]
        if v[0] == "map":
            return {k: _ovs_value(x) for k, x in v[1]}
        return v[1]
    return v


def _rows(doc: dict) -> list[dict]:
    heads = doc.get("headings", [])
    return [{h: _ovs_value(v) for h, v in zip(heads, row)} for row in doc.get("data", [])]


def _as_list(v: Any) -> list:
    return v if isinstance(v, list) else [v]


def parse_flow_line(line: str) -> dict | None:
    line = line.strip()
    if not line or " actions=" not in line or line.startswith(("NXST", "OFPST")):
        return None
    head, actions = line.split(" actions=", 1)
    fields = [t.strip() for t in head.replace(", ", ",").split(",") if t.strip()]
    cookie, table, priority, match = 0, 0, 32768, []
    for f in fields:
        k, _, v = f.partition("=")
        if k == "cookie":
            cookie = int(v.split("/")[0], 16)
        elif k == "table":
            table = int(v)
        elif k == "priority":
            priority = int(v)
        elif k in ("duration", "n_packets", "n_bytes", "idle_age", "hard_age", "idle_timeout", "hard_timeout",
                   "reset_counts", "send_flow_rem"):
            continue
        else:
            match.append(f)
    return {"table": table, "priority": priority, "match": canonical_match(",".join(match)),
            "actions": actions.strip(), "cookie": cookie}


def flow_key_name(spec: dict) -> str:
    pre = f"table={spec['table']}," if spec.get("table") else ""
    return f"{pre}priority={spec['priority']},{spec['match']}"


def parse_ovs(vsctl: str, flows: str, target: str) -> list[Resource]:
    docs = [json.loads(l) for l in vsctl.splitlines() if l.strip()]
    if len(docs) != 2:
        raise ValueError("ovs-vsctl output has not 2 tables")
    ports, bridges = _rows(docs[0]), _rows(docs[1])
    if not bridges:
        raise ValueError("bridge not found")
    br = bridges[0]
    bname = br["name"]
    members = set(_as_list(br.get("ports") or []))
    marks = br.get("external_ids") or {}
    cookie_app = {int(k[len(COOKIE_KEY):], 16): v for k, v in marks.items() if k.startswith(COOKIE_KEY)}
    out: list[Resource] = []
    for p in ports:
        if p["_uuid"] not in members:
            continue
        name, ext = p["name"], p.get("external_ids") or {}
        tag = p.get("tag")
        tag = tag if isinstance(tag, int) else None
        if APP_KEY in ext or tag is not None:
            out.append(Resource(ResourceKey(Layer.HYPERVISOR, target, "ovs-port", name),
                                {"bridge": bname, "port": name, "tag": tag}, ext.get(APP_KEY, ""), APP_KEY in ext))
        for v in sorted(_as_list(p.get("trunks") or [])):
            app = ext.get(f"{TRUNK_KEY}{v}")
            out.append(Resource(ResourceKey(Layer.HYPERVISOR, target, "trunk-vlan", f"{name}:{v}"),
                                {"bridge": bname, "port": name, "vlan": v}, app or "", app is not None))
    seen = set()
    for line in flows.splitlines():
        spec = parse_flow_line(line)
        if spec is None or spec["cookie"] >> 48 != COOKIE_PREFIX:
            continue
        name = flow_key_name(spec)
        if name in seen:
            raise ValueError(f"duplicate flow {name}")
        seen.add(name)
        out.append(Resource(ResourceKey(Layer.HYPERVISOR, target, "ovs-flow", name), spec,
                            cookie_app.get(spec["cookie"], ""), True))
    return out


# ---------------------------------------------------------------------------- render
def _port(p: Any) -> str:
    if not isinstance(p, str) or not PORT_RE.match(p):
        raise OvsError(f"invalid OVS port/bridge name {p!r}")
    return p


def _vlan(v: Any) -> int:
    if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v <= 4095:
        raise OvsError(f"invalid VLAN {v!r}")
    return v


def _app(a: Any) -> str:
    if not isinstance(a, str) or not APP_RE.match(a):
        raise OvsError(f"invalid app name {a!r}")
    return a


def _flow_text(spec: Any, with_actions: bool) -> str:
    match = str(spec["match"])
    for tok in match.split(","):
        if not TOKEN_RE.match(tok):
            raise OvsError(f"invalid flow match field {tok!r}")
    cookie, table, prio = spec["cookie"], spec.get("table", 0), spec["priority"]
    if not all(isinstance(x, int) for x in (cookie, table, prio)) or cookie >> 48 != COOKIE_PREFIX:
        raise OvsError(f"invalid flow cookie/table/priority in {spec!r}")
    base = f"table={table},priority={prio},{match}"
    if not with_actions:
        return f"delete_strict cookie={cookie:#x}/-1,{base}"
    actions = str(spec["actions"])
    if not ACTIONS_RE.match(actions):
        raise OvsError(f"invalid flow actions {actions!r}")
    return f"add cookie={cookie:#x},{base},actions={actions}"


@dataclass
class OvsPlan:
    vsctl: list[str] = field(default_factory=list)
    flows: list[str] = field(default_factory=list)
    writes: int = 0
    details: list[str] = field(default_factory=list)


def render_ovs(desired: Iterable[Resource], observed: Iterable[Resource], prune: bool, bridge: str,
               scope: set | None = None) -> OvsPlan:
    """`scope`: the keys the plan changes (None: all). A trunk port is rewritten as a whole, so
    owned VLANs of other apps on it are dropped only when their own key is in scope."""
    plan = OvsPlan()
    d = {r.key: r for r in desired}
    o = {r.key: r for r in observed}
    bridge = _port(bridge)
    _render_ports(plan, d, o, prune, bridge)
    _render_trunks(plan, d, o, prune, bridge, scope)
    _render_flows(plan, d, o, prune, bridge)
    return plan


def _render_ports(plan: OvsPlan, d: dict[ResourceKey, Resource], o: dict[ResourceKey, Resource],
                  prune: bool, bridge: str) -> None:
    """Access ports: tag + ownership mark; owned ports no longer desired are parked (prune)."""
    for key in sorted(k for k in d if k.kind == "ovs-port"):
        want, have = d[key], o.get(key)
        if have is not None and have.owned and have.spec == want.spec and have.app == want.app:
            continue
        s = want.spec
        port, br = _port(s["port"]), _port(s.get("bridge", bridge))
        plan.vsctl += ["--", "--may-exist", "add-port", br, port,
                       "--", "set", "Port", port, f"tag={_vlan(s['tag'])}", f"external_ids:{APP_KEY}={_app(want.app)}"]
        plan.writes += 1
        plan.details.append(f"{'update' if have else 'create'} ovs-port {port} tag={s['tag']}")
    for key in sorted(k for k in o if k.kind == "ovs-port" and o[k].owned and k not in d):
        if not prune:
            plan.details.append(f"ovs-port {key.name}: not desired, kept (prune off)")
            continue
        port = _port(o[key].spec["port"])
        # Parked, not reopened: an untagged port without vlan_mode is a trunk for every VLAN in
        # OVS; access mode without a tag keeps it on VLAN 0, away from every app segment.
        plan.vsctl += ["--", "clear", "Port", port, "tag", "--", "remove", "Port", port, "external_ids", APP_KEY,
                       "--", "set", "Port", port, "vlan_mode=access"]
        plan.writes += 1
        plan.details.append(f"delete ovs-port {port} tag (prune; port parked on VLAN 0)")


def _render_trunks(plan: OvsPlan, d: dict[ResourceKey, Resource], o: dict[ResourceKey, Resource],
                   prune: bool, bridge: str, scope: set | None) -> None:
    """Trunks: per port, the union of desired VLANs, unowned VLANs and (prune off) owned leftovers."""
    ports = sorted({r.spec["port"] for r in list(d.values()) + list(o.values()) if r.key.kind == "trunk-vlan"})
    for port in ports:
        want = {r.spec["vlan"]: r for r in d.values() if r.key.kind == "trunk-vlan" and r.spec["port"] == port}
        have = {r.spec["vlan"]: r for r in o.values() if r.key.kind == "trunk-vlan" and r.spec["port"] == port}
        keep = {v for v, r in have.items()
                if not r.owned or v in want or not prune or (scope is not None and r.key not in scope)}
        new = keep | set(want)
        changed = [v for v in want if v not in have or not have[v].owned or have[v].app != want[v].app]
        dropped = [v for v in have if v not in new]
        if not changed and not dropped:
            for v, r in have.items():
                if r.owned and v not in want:
                    plan.details.append(f"trunk-vlan {port}:{v}: not desired, kept (prune off)")
            continue
        br = _port(next(iter(want.values())).spec.get("bridge", bridge) if want else bridge)
        _render_trunk_port(plan, br, _port(port), want, have, new, changed, dropped)


def _render_trunk_port(plan: OvsPlan, br: str, p: str, want: dict[int, Resource], have: dict[int, Resource],
                       new: set[int], changed: list[int], dropped: list[int]) -> None:
    """One trunk port: the changed VLANs added and the dropped ones removed, each by itself (the
    observed VLANs this run sees may be only its apps': engine runs scoped to some apps, as shard
    members' and self-heal's are, filter observed state by app; rewriting the whole set from that
    dropped every other app's VLAN on the port), then the ownership marks added and removed."""
    plan.vsctl += ["--", "--may-exist", "add-port", br, p]
    for v in sorted(changed):
        plan.vsctl += ["--", "add", "Port", p, "trunks", str(_vlan(v))]
    for v in sorted(dropped):
        plan.vsctl += ["--", "remove", "Port", p, "trunks", str(_vlan(v))]
    for v in sorted(changed):
        plan.vsctl += ["--", "set", "Port", p, f"external_ids:{TRUNK_KEY}{_vlan(v)}={_app(want[v].app)}"]
        plan.details.append(f"{'update' if v in have else 'create'} trunk-vlan {p}:{v}")
    for v in sorted(dropped):
        plan.vsctl += ["--", "remove", "Port", p, "external_ids", f"{TRUNK_KEY}{_vlan(v)}"]
        plan.details.append(f"delete trunk-vlan {p}:{v} (prune)")
    plan.writes += len(changed) + len(dropped)


def _render_flows(plan: OvsPlan, d: dict[ResourceKey, Resource], o: dict[ResourceKey, Resource],
                  prune: bool, bridge: str) -> None:
    """Flows: only the difference, in one bundle; then the bridge's cookie -> app marks."""
    dels, adds, cookies = [], [], {}
    for key in sorted(k for k in d if k.kind == "ovs-flow"):
        want, have = d[key], o.get(key)
        if have is not None and have.spec == want.spec and have.app == want.app:
            continue
        adds.append(_flow_text(want.spec, True))
        if want.app:
            cookies[want.spec["cookie"]] = _app(want.app)
        plan.details.append(f"{'update' if have else 'create'} ovs-flow {key.name}")
    for key in sorted(k for k in o if k.kind == "ovs-flow" and o[k].owned and k not in d):
        if not prune:
            plan.details.append(f"ovs-flow {key.name}: not desired, kept (prune off)")
            continue
        dels.append(_flow_text(o[key].spec, False))
        plan.details.append(f"delete ovs-flow {key.name} (prune)")
    plan.flows = dels + adds
    plan.writes += len(plan.flows)
    for cookie, app in sorted(cookies.items()):
        plan.vsctl += ["--", "br-set-external-id", bridge, f"{COOKIE_KEY}{cookie:016x}", app]
