"""OpenFlow table 0 of one bridge as observed: which flow decides a frame (pure).

Contract: `FlowTable.of(resources)` takes `ovs-flow` resources ({table, priority, match,
actions}) and `decide(frame)` returns `(action, flow key, detail)` with action NORMAL, DROP or
UNKNOWN for a frame given as a dict (`in_port`, `vlan` (None when untagged), `dl_type` ('ip'
or 'arp'), `nw_src`, `nw_dst`, `nw_proto`, `tp_dst`, `arp_spa`, `arp_tpa`, `dl_src`; a missing
key is not known). The highest priority flow that matches decides; a flow whose match depends
on a field the frame does not know, or that uses a field or action this model does not
understand, makes the answer UNKNOWN unless every way it could go gives the same action. Two
matching flows of one priority with different actions are UNKNOWN (OpenFlow leaves it
undefined). No matching flow: the bridge's default flow (priority 0, NORMAL), which the
driver does not report (it dumps only the reconciler's cookie), is assumed and said so.
Only table 0 is read; flows of other tables are reached only through actions that are UNKNOWN.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping

from reconciler.verify.addr import prefix

NORMAL, DROP, UNKNOWN = "NORMAL", "drop", "unknown"
_PROTO = {"ip": ("ip", None), "arp": ("arp", None), "tcp": ("ip", 6), "udp": ("ip", 17), "icmp": ("ip", 1)}
_PROTO_NUM = {"tcp": 6, "udp": 17, "icmp": 1}
_ADDR_FIELDS = ("nw_src", "nw_dst", "arp_spa", "arp_tpa")
_NO_VLAN = 0xFFFF


@dataclass(frozen=True)
class Flow:
    key: str
    priority: int
    match: tuple[tuple[str, Any], ...]   # (field, parsed value); ('?', text) when not understood
    action: str                         # NORMAL | drop | unknown
    text: str


def _parse_match(match: str) -> tuple[tuple[str, Any], ...]:
    out: list[tuple[str, Any]] = []
    for tok in (t for t in match.split(",") if t):
        name, eq, value = tok.partition("=")
        if not eq:
            if name in _PROTO:
                dl, proto = _PROTO[name]
                out.append(("dl_type", dl))
                if proto is not None:
                    out.append(("nw_proto", proto))
            else:
                out.append(("?", tok))
        elif name in _ADDR_FIELDS:
            out.append((name, prefix(value)))
        elif name == "dl_vlan":
            out.append((name, int(value, 0)))
        elif name in ("tp_dst", "tp_src", "nw_proto"):
            out.append((name, int(value, 0)))
        elif name in ("in_port", "dl_src", "dl_dst"):
            out.append((name, value.lower() if name != "in_port" else value))
        else:
            out.append(("?", tok))
    return tuple(out)


def _parse_action(actions: str) -> str:
    a = actions.strip().lower()
    if a in ("normal",):
        return NORMAL
    if a in ("drop", ""):
        return DROP
    return UNKNOWN


def _matches(flow: Flow, frame: Mapping[str, Any]) -> bool | None:
    """True/False, or None when the answer depends on something not known."""
    unknown = False
    for name, value in flow.match:
        if name == "?":
            unknown = True
            continue
        have = frame.get(name)
        if name == "dl_vlan":
            have = _NO_VLAN if frame.get("vlan") is None else frame["vlan"]
        if have is None:
            if name in frame:
                return False           # known to be absent (e.g. no IP header in an ARP frame)
            unknown = True
            continue
        if name in _ADDR_FIELDS:
            ok = value.holds(have)
        else:
            ok = have == value
        if not ok:
            return False
    return None if unknown else True


@dataclass
class FlowTable:
    by_port: dict[tuple[str, int | None], list[Flow]] = field(default_factory=dict)  # (in_port, dl_vlan|None)
    any_port: list[Flow] = field(default_factory=list)             # flows without in_port
    unknown_tables: list[str] = field(default_factory=list)
    _merged: dict[tuple[Any, Any], list[Flow]] = field(default_factory=dict)
    # told (in_port, vlan) on every lookup (verify.incremental records what a verdict read)
    note: Callable[[Any, Any], None] | None = None

    @classmethod
    def of(cls, resources: Iterable[Any]) -> "FlowTable":
        t = cls()
        for r in resources:
            s = r.spec
            if s.get("table", 0) != 0:
                t.unknown_tables.append(r.key.name)
                continue
            f = Flow(r.key.name, int(s["priority"]), _parse_match(s["match"]), _parse_action(s["actions"]),
                     f"{r.key.name} actions={s['actions']}")
            port = next((v for n, v in f.match if n == "in_port"), None)
            vlan = next((v for n, v in f.match if n == "dl_vlan"), None)
            (t.by_port.setdefault((port, vlan), []) if port is not None else t.any_port).append(f)
        return t

    def _candidates(self, port: str | None, vlan: int | None) -> list[Flow]:
        """Flows that can match a frame from `port` on `vlan`, by priority (memoised)."""
        key = (port, vlan)
        if self.note is not None:
            self.note(port, vlan)
        got = self._merged.get(key)
        if got is None:
            if port is None:
                own = [f for fs in self.by_port.values() for f in fs]
            else:
                v = _NO_VLAN if vlan is None else vlan
                own = self.by_port.get((port, v), []) + self.by_port.get((port, None), [])
            got = self._merged[key] = sorted(own + self.any_port, key=lambda f: -f.priority)
        return got

    def decide(self, frame: Mapping[str, Any]) -> tuple[str, str, str]:
        """(action, deciding flow or '', detail) for `frame`."""
        flows = self._candidates(frame.get("in_port"), frame.get("vlan"))
        maybe: list[Flow] = []        # flows above the decider that might match
        for i, f in enumerate(flows):
            m = _matches(f, frame)
            if m is False:
                continue
            if m is None or f.action == UNKNOWN:
                maybe.append(f)
                continue
            rivals = [g for g in flows[i + 1:] if g.priority == f.priority and g.action != f.action
                      and _matches(g, frame) is not False]
            if rivals:
                return UNKNOWN, f.key, f"flows of one priority disagree: {f.text}; {rivals[0].text}"
            if any(g.action != f.action for g in maybe):
                return UNKNOWN, maybe[0].key, f"flow not understood or depends on an unknown field: {maybe[0].text}"
            return f.action, f.key, f.text
        if maybe:
            return UNKNOWN, maybe[0].key, f"flow not understood or depends on an unknown field: {maybe[0].text}"
        return NORMAL, "", "no observed flow matches: the bridge's default flow (priority 0, NORMAL) assumed"
