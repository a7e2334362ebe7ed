"""nftables on one host as observed: what its base chains do with a packet (pure).

Contract: `host_filter(host, hooks, pkt)` evaluates every base chain of every IPv4 table (families
inet, ip; netdev for `ingress`) registered at `hooks`, in hook order then chain priority, and
returns `(decision, rule, detail, accepts)`. Netfilter semantics: a `drop` (or `reject`) in any
base chain is final; an `accept` only ends its own base chain and the packet goes on to the next
one, so an earlier-priority table that accepts does not bypass a later one that drops. Rules are
evaluated in order with `jump`/`goto`/`return` followed (bounded). Rules come in the shape
nftables.parse_rule gives (`match` keys saddr_set, daddr_set, protocol, dport, ct_state, and
`unparsed`: nft JSON expressions kept as text); the unparsed ones understood here are matches
on ip saddr/daddr, tcp/udp dport/sport, meta l4proto/iifname/oifname/nfproto and ct state
(==, !=, in; addresses, prefixes, ranges, anonymous and named sets) and the statements
counter, log, reject, jump, goto, return, continue. Any other expression makes its rule not
understood: the chain's answer is then UNKNOWN unless both ways (the rule applies or not) end
alike. Sets and the source terms of rules are in nftsets.
"""
from __future__ import annotations

import functools
import json
from typing import Any, NamedTuple, Sequence

from reconciler.verify.model import DENY, PERMIT, UNKNOWN, Chain, HostView
from reconciler.verify.nftsets import as_json, member, member_in, parsed_set

IPV4_FAMILIES = {"inet", "ip"}
MAX_STEPS = 256     # rule visits per base chain (jumps, branches on rules not understood)
MAX_DEPTH = 16      # jump depth (the kernel's limit)


class Pkt(NamedTuple):
    saddr: str
    daddr: str
    proto: str            # tcp | udp
    dport: int | None
    ct: str               # new | established
    iif: str = ""
    oif: str = ""
    sport: int | None = None


class _Out(NamedTuple):
    verdict: str          # accept | drop | return | ?
    ref: str
    why: tuple[str, ...]  # rules not understood on the way


class _Ctx:
    def __init__(self, host: HostView, family: str, table: str, pkt: Pkt) -> None:
        self.host, self.family, self.table, self.pkt = host, family, table, pkt
        self.steps = 0

    def set_elems(self, name: str) -> tuple[set, list, bool] | None:
        return parsed_set(self.host, self.family, self.table, name)


def _left(ctx: _Ctx, left: Any) -> tuple[bool, Any]:
    """(understood, value) of a match's left side for the packet; value None = not present."""
    p = ctx.pkt
    if not isinstance(left, dict):
        return False, None
    if "payload" in left:
        proto, fld = left["payload"].get("protocol"), left["payload"].get("field")
        if proto == "ip" and fld in ("saddr", "daddr"):
            return True, getattr(p, fld)
        if proto in ("tcp", "udp") and fld in ("dport", "sport"):
            return True, (getattr(p, fld) if p.proto == proto else None)
    elif "meta" in left:
        key = left["meta"].get("key")
        values = {"l4proto": p.proto, "iifname": p.iif, "oifname": p.oif, "nfproto": "ipv4", "protocol": "ip"}
        if key in values:
            return True, values[key]
    elif "ct" in left and left["ct"].get("key") == "state":
        return True, p.ct
    return False, None


def _cond(ctx: _Ctx, m: dict) -> bool | None:
    ok, value = _left(ctx, m.get("left"))
    if not ok:
        return None
    op, right = m.get("op", "=="), m.get("right")
    if value is None:
        return False    # e.g. `tcp dport` on a UDP packet: the implied protocol test fails
    if isinstance(right, str) and right.startswith("@"):
        parsed = ctx.set_elems(right[1:])
        hit = None if parsed is None else member_in(value, parsed)
    elif isinstance(right, dict) and "set" in right:
        hit = member(value, right["set"])
    elif isinstance(right, list):
        hit = member(value, right)
    else:
        hit = member(value, [right])
    if hit is None:
        return None
    return (not hit) if op == "!=" else hit


@functools.lru_cache(maxsize=1 << 16)
def _compiled(rule: Any) -> tuple[tuple, Any, str]:
    """A rule as (conditions, verdict, not-understood note), computed once per distinct rule.
    Conditions: ('set', field, set name), ('proto', p), ('dport', p, port), ('ct', states),
    ('expr', nft JSON match), ('?',) for an expression not understood."""
    m = rule.get("match") or {}
    verdict: Any = rule.get("verdict")
    conds: list[tuple] = [("set", f, m[f"{f}_set"]) for f in ("saddr", "daddr") if f"{f}_set" in m]
    if "protocol" in m:
        conds.append(("proto", m["protocol"]))
    if "dport" in m:
        conds.append(("dport", m.get("protocol", "tcp"), m["dport"]))
    if "ct_state" in m:
        conds.append(("ct", tuple(m["ct_state"])))
    note = ""
    for text in m.get("unparsed", ()):
        e = as_json(text) if isinstance(text, str) else text
        if "match" in e:
            conds.append(("expr", e["match"], text if isinstance(text, str) else json.dumps(e)))
        elif "counter" in e or "log" in e:
            continue
        elif "reject" in e:
            verdict = "drop"
        elif "jump" in e or "goto" in e:
            kind = "jump" if "jump" in e else "goto"
            verdict = (kind, e[kind].get("target"))
        elif "return" in e or "continue" in e:
            verdict = "return" if "return" in e else None
        else:
            note = note or (text if isinstance(text, str) else json.dumps(e))
            conds.append(("?",))
    return tuple(conds), verdict, note


def _rule(ctx: _Ctx, rule: Any) -> tuple[bool | None, Any, str]:
    """(matches, verdict, not-understood note) of one rule for the packet."""
    conds, verdict, note = _compiled(rule)
    p = ctx.pkt
    result: bool | None = True
    for c in conds:
        kind = c[0]
        if kind == "set":
            parsed = ctx.set_elems(c[2])
            hit = None if parsed is None else member_in(p.saddr if c[1] == "saddr" else p.daddr, parsed)
        elif kind == "proto":
            hit = p.proto == c[1]
        elif kind == "dport":
            hit = p.proto == c[1] and p.dport == c[2]
        elif kind == "ct":
            hit = p.ct in c[1]
        elif kind == "expr":
            hit = _cond(ctx, c[1])
            if hit is None and not note:
                note = c[2]
        else:
            hit = None
        if hit is False:
            return False, verdict, note
        if hit is None:
            result = None
    return result, verdict, note


def _and(a: bool | None, b: bool | None) -> bool | None:
    if a is False or b is False:
        return False
    return None if a is None or b is None else True


@functools.lru_cache(maxsize=1 << 16)
def rule_text(rule: Any) -> str:
    m = rule.get("match") or {}
    parts = [f"ip saddr @{m['saddr_set']}"] if "saddr_set" in m else []
    if "daddr_set" in m:
        parts.append(f"ip daddr @{m['daddr_set']}")
    if "ct_state" in m:
        parts.append("ct state {" + ",".join(m["ct_state"]) + "}")
    if "dport" in m:
        parts.append(f"{m.get('protocol', 'tcp')} dport {m['dport']}")
    elif "protocol" in m:
        parts.append(f"meta l4proto {m['protocol']}")
    parts += [str(u) for u in m.get("unparsed", ())]
    parts.append(str(rule.get("verdict") or ""))
    return " ".join(p for p in parts if p)


def _walk(ctx: _Ctx, chain: str, i: int, depth: int) -> list[_Out]:
    rules = (ctx.host.tables.get((ctx.family, ctx.table)) or {}).get(chain, {}).get("rules", ())
    where = f"{ctx.family} {ctx.table} {chain}"
    while i < len(rules):
        ctx.steps += 1
        if ctx.steps > MAX_STEPS or depth > MAX_DEPTH:
            return [_Out("?", where, (f"{where}: too many jumps or rules not understood to follow",))]
        rule = rules[i]
        matched, verdict, note = _rule(ctx, rule)
        if matched is False:
            i += 1
            continue
        ref = f"{where} #{i + 1}: {rule_text(rule)}"
        applied = _apply(ctx, chain, i, depth, verdict, ref)
        if matched is True:
            return applied
        why = (f"{ref}: not understood ({note})" if note else f"{ref}: not understood",)
        return [o._replace(why=o.why + why) for o in applied + _walk(ctx, chain, i + 1, depth)]
    return [_Out("return", f"{where}: end of chain", ())]


def _apply(ctx: _Ctx, chain: str, i: int, depth: int, verdict: Any, ref: str) -> list[_Out]:
    if verdict in ("accept", "drop"):
        return [_Out(verdict, ref, ())]
    if verdict == "return":
        return [_Out("return", ref, ())]
    if isinstance(verdict, tuple):
        kind, target = verdict
        out: list[_Out] = []
        for o in _walk(ctx, target, 0, depth + 1):
            if o.verdict != "return":
                out.append(o)
            elif kind == "goto":
                out.append(o._replace(ref=ref))
            else:
                out += [x._replace(why=x.why + o.why) for x in _walk(ctx, chain, i + 1, depth)]
        return out
    return _walk(ctx, chain, i + 1, depth)     # no verdict (counter, log): go on


def chain_outcomes(host: HostView, c: Chain, pkt: Pkt) -> list[_Out]:
    ctx = _Ctx(host, c.family, c.table, pkt)
    policy = c.spec.get("policy") or "accept"
    outs = _walk(ctx, c.name, 0, 0)
    return [o._replace(verdict=policy, ref=f"{c.family} {c.table} {c.name}: policy {policy}")
            if o.verdict == "return" else o for o in outs]


def _applies(c: Chain, hook: str) -> bool:
    return c.family in IPV4_FAMILIES or (hook == "ingress" and c.family == "netdev")


def host_filter(host: HostView, hooks: Sequence[str], pkt: Pkt) -> tuple[str, str, str, tuple[str, ...]]:
    """(decision, deciding rule, detail, the rules that accepted) at `hooks` for `pkt`."""
    rec = host.rec      # incremental verification: note the read (nft_deps.note, inline: it imports this module)
    if rec is not None and rec.deps is not None:
        rec.deps.add(("nft", host.name, (pkt.daddr, pkt.proto, pkt.dport)))
    accepts: list[str] = []
    unknown: tuple[str, str] | None = None
    for hook, c in _relevant(host, tuple(hooks), pkt):
        if isinstance(c, str):      # a chain whose policy drops and whose rules cannot match
            return DENY, c, f"hook {hook}", tuple(accepts)
        outs = chain_outcomes(host, c, pkt)
        verdicts = {o.verdict for o in outs}
        if verdicts == {"drop"}:
            return DENY, outs[0].ref, f"hook {hook} priority {c.priority}", tuple(accepts)
        if verdicts == {"accept"}:
            accepts.append(outs[0].ref)
        elif unknown is None:
            why = "; ".join(sorted({w for o in outs for w in o.why})) or "outcome not determined"
            unknown = (f"{c.family} {c.table} {c.name}", why)
    if unknown is not None:
        return UNKNOWN, unknown[0], unknown[1], tuple(accepts)
    if not accepts:
        return PERMIT, "", f"no base chain on {'/'.join(hooks)}", ()
    return PERMIT, accepts[-1], "", tuple(accepts)


def _relevant(host: HostView, hooks: tuple[str, ...], pkt: Pkt) -> list[tuple[str, Any]]:
    """The base chains at `hooks` that may decide `pkt` (by its destination address, protocol and
    port), in order; a bypassed chain whose policy drops ends the list as its policy text.
    Memoised per host."""
    key = ("relevant", hooks, pkt.daddr, pkt.proto, pkt.dport)
    got = host.memo.get(key)
    if got is None:
        got = []
        for hook in hooks:
            for c in host.hooks.get(hook, ()):
                if not _applies(c, hook):
                    continue
                if not bypassed(host, c, pkt.daddr, pkt.proto, pkt.dport):
                    got.append((hook, c))
                elif c.spec.get("policy") == "drop":
                    got.append((hook, f"{c.family} {c.table} {c.name}: policy drop"))
        host.memo[key] = got
    return got


def bypassed(host: HostView, c: Chain, daddr: str, proto: str, dport: int | None) -> bool:
    """No rule of base chain `c` can match a packet to `daddr` `proto` `dport` (each tests a
    destination set that does not hold it, another protocol or another port: a condition that is
    false whatever the rest of the packet), so the chain's policy decides. Memoised per host."""
    key = (c.family, c.table, c.name, daddr, proto, dport)
    hit = host.memo.get(key)
    if hit is None:
        hit = all(cannot_match(host, c.family, c.table, rule, daddr, proto, dport) for rule in c.spec.get("rules", ()))
        host.memo[key] = hit
    return hit


def cannot_match(host: HostView, family: str, table: str, rule: Any, daddr: str, proto: str,
                 dport: int | None) -> bool:
    """One of the rule's conditions is false for any packet to `daddr` `proto` `dport` (as _rule
    evaluates them: the conditions of a rule all hold or it does not match)."""
    m = rule.get("match") or {}
    if "protocol" in m and m["protocol"] != proto:
        return True
    if "dport" in m and not (proto == m.get("protocol", "tcp") and dport == m["dport"]):
        return True
    if "daddr_set" in m:
        parsed = parsed_set(host, family, table, m["daddr_set"])
        return parsed is not None and member_in(daddr, parsed) is False
    return False
