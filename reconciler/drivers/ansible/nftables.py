"""nftables for the host driver: parse `nft -j list ruleset`, render owned tables (pure).

Contract:
- `parse_ruleset(doc)` -> (tables, sets): `nft-table` and `nft-set` Resources for the tables the
  reconciler owns (family inet, name `netintent_*`), in exactly the spec shapes compile/host.py
  produces: a table is {family, name, chains: {chain: {type, hook, priority, policy, rules}}},
  a rule is {match: {...}, verdict}, a set is {family, table, name, type, elements (sorted)}.
  Expressions the structured model does not know are kept as `match.unparsed` (JSON text) so a
  hand-edited rule shows up as drift rather than vanishing. The app of a table is read from the
  comment of its sets (`netintent app=<app>`), falling back to the table name.
- `plan_script(desired, observed, prune)` -> NftPlan: ONE nft script for a host touching only
  owned tables. A table whose definition (chains, rules, set names/types) is unchanged gets only
  `delete element` / `add element` statements for the element difference (cheap for big sets);
  otherwise the table is deleted and recreated in the same script (atomic under `nft -f`).
  Owned tables no longer desired are deleted only when `prune`. Empty script = zero writes.
Every name and value is validated before it is written into the script.
"""
from __future__ import annotations

import ipaddress
import json
import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from reconciler.model import OWNER, Layer, Resource, ResourceKey, thaw

TABLE_PREFIX = f"{OWNER}_"
# nft(8)'s documented identifier characters less `.`, `/`, `\` (meaningful elsewhere in a script);
# at most 255 characters (the kernel's NFT_NAME_MAXLEN is 256 with the NUL). Generated set names
# reach 69 (`allow_` + 31 + `_` + 31): compile/host.py maps the intents' `-` to `_`.
NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,254}\Z")
APP_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
COMMENT_PREFIX = f"{OWNER} app="
VERDICTS = ("accept", "drop")
PROTOCOLS = ("tcp", "udp")
CT_STATES = ("established", "related", "new", "invalid", "untracked")
SET_TYPES = ("ipv4_addr",)
# Telemetry (compile/host.py): the dynamic set the drop rules record refused callers in; its
# elements and every counter value are telemetry, never part of a resource's spec.
REFUSED_SET = "refused"
REFUSED_TYPE = ("ipv4_addr", "ipv4_addr", "inet_service")


class NftError(ValueError):
    """A value that cannot be rendered safely into an nft script."""


# ---------------------------------------------------------------------------- parse
def parse_ruleset(doc: Mapping[str, Any], target: str) -> tuple[list[Resource], list[Resource]]:
    tables: dict[str, dict] = {}
    sets: dict[tuple[str, str], dict] = {}
    apps: dict[str, str] = {}
    counters: dict[str, list[str]] = {}
    refused: dict[str, dict] = {}
    for item in doc.get("nftables", ()):
        if "table" in item:
            t = item["table"]
            if _owned(t):
                tables[t["name"]] = {"family": "inet", "name": t["name"], "chains": {}}
        elif "counter" in item:
            if _owned(item["counter"], "table"):   # named counter: its name only (values are telemetry)
                counters.setdefault(item["counter"]["table"], []).append(str(item["counter"].get("name")))
        elif "set" in item and _is_refused(item["set"]):
            refused[item["set"]["table"]] = {"size": item["set"].get("size"), "timeout": item["set"].get("timeout")}
        elif "set" in item:
            s = item["set"]
            if _owned(s, "table"):
                sets[(s["table"], s["name"])] = {
                    "family": "inet", "table": s["table"], "name": s["name"], "type": s.get("type"),
                    "elements": sorted(_element(e) for e in s.get("elem", ()))}
                c = s.get("comment", "")
                if c.startswith(COMMENT_PREFIX):
                    apps.setdefault(s["table"], c[len(COMMENT_PREFIX):])
        elif "chain" in item:
            c = item["chain"]
            if _owned(c, "table") and c["table"] in tables:
                tables[c["table"]]["chains"][c["name"]] = {
                    "type": c.get("type"), "hook": c.get("hook"), "priority": c.get("prio"),
                    "policy": c.get("policy"), "rules": []}
        elif "rule" in item:
            r = item["rule"]
            if _owned(r, "table") and r["table"] in tables:
                chain = tables[r["table"]]["chains"].get(r["chain"])
                if chain is not None:
                    chain["rules"].append(parse_rule(r.get("expr", ())))
    for name, spec in tables.items():
        spec["counters"] = sorted(counters.get(name, ()))
        if name in refused:
            spec["refused"] = refused[name]
    out_t = [Resource(ResourceKey(Layer.HOST, target, "nft-table", name), spec, _app_of(name, apps))
             for name, spec in sorted(tables.items())]
    out_s = [Resource(ResourceKey(Layer.HOST, target, "nft-set", f"{t}/{n}"), spec, _app_of(t, apps))
             for (t, n), spec in sorted(sets.items())]
    return out_t, out_s


def _is_refused(s: Mapping[str, Any]) -> bool:
    """The dynamic set of refused (source, destination, port) in an owned table (part of the table's spec)."""
    return _owned(s, "table") and s.get("name") == REFUSED_SET and s.get("type") == list(REFUSED_TYPE)


def _owned(obj: Mapping[str, Any], key: str = "name") -> bool:
    return obj.get("family") == "inet" and str(obj.get(key, "")).startswith(TABLE_PREFIX)


def _app_of(table: str, apps: Mapping[str, str]) -> str:
    return apps.get(table) or table[len(TABLE_PREFIX):]


def _element(e: Any) -> str:
    if isinstance(e, dict):  # {"prefix": {...}} / {"range": ...} / {"elem": {...}}: keep as text
        return json.dumps(e, sort_keys=True)
    return str(e)


def parse_rule(exprs: Iterable[Mapping[str, Any]]) -> dict:
    match: dict[str, Any] = {}
    verdict = None
    unparsed: list[str] = []
    stmts: dict[str, str] = {}
    for e in exprs:
        if "accept" in e or "drop" in e:
            verdict = "accept" if "accept" in e else "drop"
            continue
        if "counter" in e:   # named: its name; anonymous: kept without its (volatile) values
            if isinstance(e["counter"], str):
                stmts["counter"] = e["counter"]
            else:
                unparsed.append(json.dumps({"counter": None}))
            continue
        if _is_refused_update(e):
            stmts["update_set"] = REFUSED_SET
            continue
        m = e.get("match")
        if m is None:
            unparsed.append(json.dumps(e, sort_keys=True))
            continue
        left, right, op = m.get("left", {}), m.get("right"), m.get("op")
        payload = left.get("payload") if isinstance(left, dict) else None
        if payload and payload.get("protocol") == "ip" and payload.get("field") in ("saddr", "daddr") \
                and op == "==" and isinstance(right, str) and right.startswith("@"):
            match[f"{payload['field']}_set"] = right[1:]
        elif payload and payload.get("protocol") in PROTOCOLS and payload.get("field") == "dport" \
                and op == "==" and isinstance(right, int):
            match["protocol"], match["dport"] = payload["protocol"], right
        elif isinstance(left, dict) and left.get("ct", {}).get("key") == "state" and op in ("in", "=="):
            if isinstance(right, dict) and "set" in right:
                right = right["set"]
            vals = right if isinstance(right, list) else [right]
            match["ct_state"] = sorted(str(v) for v in vals)
        else:
            unparsed.append(json.dumps(e, sort_keys=True))
    if unparsed:
        match["unparsed"] = unparsed
    return {"match": match, **stmts, "verdict": verdict}


def _is_refused_update(e: Mapping[str, Any]) -> bool:
    """`update @refused { ip saddr . ip daddr . <tcp|udp> dport }`, exactly as render_rule writes it."""
    s = e.get("set")
    if not isinstance(s, dict) or s.get("op") != "update" or s.get("set") != f"@{REFUSED_SET}":
        return False
    parts = [p.get("payload") if isinstance(p, dict) else None for p in (s.get("elem") or {}).get("concat", ())]
    if len(parts) != 3 or not all(isinstance(p, dict) for p in parts):
        return False
    a, b, c = (dict(p or {}) for p in parts)
    return (a, b) == ({"protocol": "ip", "field": "saddr"}, {"protocol": "ip", "field": "daddr"}) \
        and c.get("protocol") in PROTOCOLS and c.get("field") == "dport"


# ---------------------------------------------------------------------------- render
def _name(n: Any, what: str) -> str:
    if not isinstance(n, str) or not NAME_RE.match(n):
        raise NftError(f"invalid nft {what} name {n!r}")
    return n


def _addr(a: Any) -> str:
    try:
        return str(ipaddress.IPv4Address(str(a)))
    except ValueError:
        raise NftError(f"invalid IPv4 address {a!r} in nft set") from None


def render_rule(rule: Mapping[str, Any]) -> str:
    m = rule.get("match", {})
    unknown = set(m) - {"saddr_set", "daddr_set", "ct_state", "protocol", "dport"}
    if unknown:
        raise NftError(f"unsupported rule match keys {sorted(unknown)}")
    parts = []
    if "saddr_set" in m:
        parts.append(f"ip saddr @{_name(m['saddr_set'], 'set')}")
    if "daddr_set" in m:
        parts.append(f"ip daddr @{_name(m['daddr_set'], 'set')}")
    if "ct_state" in m:
        states = list(m["ct_state"])
        if not states or any(s not in CT_STATES for s in states):
            raise NftError(f"invalid ct state {states!r}")
        parts.append("ct state { " + ", ".join(states) + " }")
    if "protocol" in m or "dport" in m:
        proto, port = m.get("protocol", "tcp"), m.get("dport")
        if proto not in PROTOCOLS:
            raise NftError(f"invalid protocol {proto!r}")
        if port is None:
            parts.append(f"meta l4proto {proto}")
        else:
            if not isinstance(port, int) or not 0 < port < 65536:
                raise NftError(f"invalid port {port!r}")
            parts.append(f"{proto} dport {port}")
    if rule.get("update_set") is not None:
        if rule["update_set"] != REFUSED_SET or m.get("dport") is None:
            raise NftError(f"unsupported set update {rule['update_set']!r} (only @{REFUSED_SET}, on a port match)")
        parts.append(f"update @{REFUSED_SET} {{ ip saddr . ip daddr . {m.get('protocol', 'tcp')} dport }}")
    if rule.get("counter") is not None:
        parts.append(f'counter name "{_name(rule["counter"], "counter")}"')
    verdict = rule.get("verdict")
    if verdict not in VERDICTS:
        raise NftError(f"invalid verdict {verdict!r}")
    parts.append(verdict)
    return " ".join(parts)


_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_DOTTED = re.compile(rf"^(?:{_OCTET}\.){{3}}{_OCTET}$")


def _elements(elems: Iterable[Any]) -> str:
    elems = list(elems)
    ok = _DOTTED.match
    for e in elems:  # fast path: a strict dotted quad regex; anything else gets the full check
        if not (isinstance(e, str) and ok(e)):
            _addr(e)
            raise NftError(f"address {e!r} is not in canonical dotted form")
    return ", ".join(elems)


def render_set(s: Mapping[str, Any], app: str) -> str:
    if s.get("type") not in SET_TYPES:
        raise NftError(f"unsupported set type {s.get('type')!r}")
    if app and not APP_RE.match(app):
        raise NftError(f"invalid app name {app!r}")
    body = [f"type {s['type']}", f'comment "{COMMENT_PREFIX}{app}"']
    if s.get("elements"):
        body.append(f"elements = {{ {_elements(s['elements'])} }}")
    return f"  set {_name(s['name'], 'set')} {{ " + "; ".join(body) + "; }\n"


def render_table(table: Mapping[str, Any], sets: Iterable[Resource], app: str) -> str:
    name = _name(table["name"], "table")
    if table.get("family", "inet") != "inet" or not name.startswith(TABLE_PREFIX):
        raise NftError(f"refusing to render table {table.get('family')} {name}: not an owned inet table")
    out = [f"table inet {name} {{\n"]
    for s in sorted(sets, key=lambda r: r.spec["name"]):
        out.append(render_set(s.spec, s.app or app))
    for cname in table.get("counters", ()):
        out.append(f"  counter {_name(cname, 'counter')} {{ }}\n")
    if table.get("refused") is not None:
        out.append(_render_refused(table["refused"]))
    for cname in sorted(table.get("chains", {})):
        c = table["chains"][cname]
        if c.get("hook") not in ("input", "output", "forward", "prerouting", "postrouting") \
                or c.get("type") != "filter" or c.get("policy") not in VERDICTS \
                or not isinstance(c.get("priority"), int):
            raise NftError(f"unsupported chain {cname!r} in {name}")
        out.append(f"  chain {_name(cname, 'chain')} {{\n    type filter hook {c['hook']} priority {c['priority']}; "
                   f"policy {c['policy']};\n")
        for rule in c.get("rules", ()):
            out.append(f"    {render_rule(rule)}\n")
        out.append("  }\n")
    out.append("}\n")
    return "".join(out)


def _render_refused(spec: Mapping[str, Any]) -> str:
    size, timeout = spec.get("size"), spec.get("timeout")
    if not isinstance(size, int) or not 0 < size <= 1 << 20 or not isinstance(timeout, int) or not 0 < timeout <= 86400:
        raise NftError(f"invalid refused set size/timeout {size!r}/{timeout!r}")
    return (f"  set {REFUSED_SET} {{ type {' . '.join(REFUSED_TYPE)}; size {size}; flags dynamic,timeout; "
            f"timeout {timeout}s; counter; }}\n")


# ---------------------------------------------------------------------------- plan
@dataclass
class NftPlan:
    script: str = ""
    writes: int = 0
    details: list[str] = field(default_factory=list)
    touched: set[str] = field(default_factory=set)  # tables (names) the script changes


def _shape(sets: Iterable[Resource]) -> dict:
    return {r.spec["name"]: (r.spec.get("type"), r.app) for r in sets}


def plan_script(desired: Iterable[Resource], observed: Iterable[Resource], prune: bool) -> NftPlan:
    """desired/observed: the host's nft-table and nft-set resources (observed: owned only)."""
    d_tab = {r.key.name: r for r in desired if r.key.kind == "nft-table"}
    d_set: dict[str, list[Resource]] = {}
    for r in desired:
        if r.key.kind == "nft-set":
            d_set.setdefault(r.spec["table"], []).append(r)
    observed = [r for r in observed if r.owned]
    o_tab = {r.key.name: r for r in observed if r.key.kind == "nft-table"}
    o_set: dict[str, list[Resource]] = {}
    for r in observed:
        if r.key.kind == "nft-set":
            o_set.setdefault(r.spec["table"], []).append(r)

    plan = NftPlan()
    parts: list[str] = []
    for name in sorted(d_tab):
        t = d_tab[name]
        dsets, osets = d_set.get(name, []), o_set.get(name, [])
        ot = o_tab.get(name)
        if ot is not None and ot.spec == t.spec and _shape(dsets) == _shape(osets):
            try:
                inc = _element_diff(name, dsets, osets)
            except NftError:
                inc = None  # odd elements on the device (ranges, prefixes): replace the table
            if inc is not None:
                for text, detail in inc:
                    parts.append(text)
                    plan.details.append(detail)
                    plan.writes += 1
                    plan.touched.add(name)
                continue
        if ot is not None:
            parts.append(f"delete table inet {name}\n")
            plan.details.append(f"nft {name}: replace table")
        else:
            plan.details.append(f"nft {name}: create table")
        parts.append(render_table(t.spec, dsets, t.app))
        plan.writes += 1
        plan.touched.add(name)
    for name in sorted(set(o_tab) - set(d_tab)):
        if prune:
            parts.append(f"delete table inet {_name(name, 'table')}\n")
            plan.details.append(f"nft {name}: delete table (prune)")
            plan.writes += 1
            plan.touched.add(name)
        else:
            plan.details.append(f"nft {name}: not desired, kept (prune off)")
    plan.script = "".join(parts)
    return plan


def _element_diff(table: str, dsets: list[Resource], osets: list[Resource]) -> list[tuple[str, str]]:
    omap = {r.spec["name"]: r for r in osets}
    out = []
    for s in sorted(dsets, key=lambda r: r.spec["name"]):
        want, have = set(s.spec["elements"]), set(omap[s.spec["name"]].spec["elements"])
        gone, new = sorted(have - want), sorted(want - have)
        sname = _name(s.spec["name"], "set")
        if gone:
            out.append((f"delete element inet {table} {sname} {{ {_elements(gone)} }}\n",
                        f"nft {table}/{sname}: delete {len(gone)} element(s)"))
        if new:
            out.append((f"add element inet {table} {sname} {{ {_elements(new)} }}\n",
                        f"nft {table}/{sname}: add {len(new)} element(s)"))
    return out


def spec_json(r: Resource) -> str:
    return json.dumps(thaw(r.spec), sort_keys=True)
