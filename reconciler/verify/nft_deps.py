"""Fine dependencies on a host's nftables for incremental verification (pure).

Contract: an evaluation that reads a host's nftables notes what it read while the host view
carries a recorder (`HostView.rec`, set by reconciler.verify.incremental):
  `note(host, pkt)`          ("nft", host, (daddr, proto, dport)): the base chains a packet meets
                             (nft.host_filter; fabric's check for output chains);
  `note_saddr(host, daddr)`  ("nft", host, ("saddr", daddr)): the source terms of the rules whose
                             destination set may hold `daddr` (nftsets.saddr_terms).
`changes(old, new, keys)` compares two views of one host and returns, among the noted keys, the
dependencies whose value may differ, or None when anything besides nftables changed (addresses,
routes: the caller then falls back to the whole host). A table that changed matters to a packet
key unless what such packets can read of it is the same in both views: per base chain its hook,
priority and policy and the rules that may match, with their positions (nft.cannot_match: a destination set
without the address, another protocol or port rules a rule out whatever the rest of the packet),
with the table's sets when one may match; a rule that may jump or is not parsed always matters.
It matters to a source-terms key when its rules that test the source and may hold that
destination differ (or its sets, when it has any).
"""
from __future__ import annotations

import json
from typing import Any, Iterable

from reconciler.verify.model import Chain, HostView
from reconciler.verify.nft import Pkt, bypassed, cannot_match
from reconciler.verify.nftsets import member_in, parsed_set

NFT, SADDR = "nft", "saddr"
_MAY = object()      # a chain a packet may meet: its state is never equal to another

Table = tuple[str, str]


def note(host: HostView, pkt: Pkt) -> None:
    rec = host.rec
    if rec is not None and rec.deps is not None:
        rec.deps.add((NFT, host.name, (pkt.daddr, pkt.proto, pkt.dport)))


def changes(old: HostView, new: HostView, keys: Iterable[tuple]) -> set[tuple[str, str, tuple]] | None:
    if (old.addrs, old.connected, old.routes, old.secondary) != (new.addrs, new.connected, new.routes,
                                                                  new.secondary):
        return None
    changed = [t for t in _tables(old) | _tables(new) if _sig(old, t) != _sig(new, t)]
    if not changed:
        return set()
    return {(NFT, new.name, k) for k in keys if any(_matters(old, new, t, k) for t in changed)}


def _matters(old: HostView, new: HostView, t: Table, key: tuple) -> bool:
    if key[0] == SADDR:
        return _saddr_sig(old, t, key[1]) != _saddr_sig(new, t, key[1])
    a, b = _state(old, t, key), _state(new, t, key)
    return a != b or _MAY in a


def _state(view: HostView, t: Table, key: tuple) -> tuple:
    """What an evaluation of packets with `key` can read of table `t`: per base chain, its hook,
    priority and policy, and the rules that may match in order (with the elements of the sets they
    name), or _MAY when one may jump (another chain's rules would count) or is not parsed."""
    daddr, proto, dport = key
    out: list[Any] = []
    sets = None
    for c in _base_chains(view, t):
        head = (c.priority, c.name, c.spec.get("hook"), c.spec.get("policy"))
        if bypassed(view, c, daddr, proto, dport):
            out.append(head)
            continue
        rules = [(i, r) for i, r in enumerate(c.spec.get("rules", ()))      # witness hops name rules by position
                 if not cannot_match(view, t[0], t[1], r, daddr, proto, dport)]
        if any("unparsed" in (r.get("match") or {}) or r.get("verdict") not in ("accept", "drop", None)
               for _, r in rules):
            return (_MAY,)
        sets = _sig(view, t)[1]
        out.append((head, json.dumps(rules, sort_keys=True, default=str)))
    return tuple(out) + ((sets,) if sets is not None else ())


def _base_chains(view: HostView, t: Table) -> list[Chain]:
    return [c for chains in view.hooks.values() for c in chains if (c.family, c.table) == t]


def _saddr_sig(view: HostView, t: Table, daddr: str | None) -> tuple:
    rules = []
    for c in (view.tables.get(t) or {}).values():
        for rule in c.get("rules", ()):
            m = rule.get("match") or {}
            if "saddr_set" not in m and "unparsed" not in m:
                continue
            parsed = parsed_set(view, t[0], t[1], m["daddr_set"]) if "daddr_set" in m else None
            if daddr is not None and parsed is not None and member_in(daddr, parsed) is False:
                continue
            rules.append(json.dumps(m, sort_keys=True, default=str))
    return tuple(rules), (_sig(view, t)[1] if rules else None)


def _tables(view: HostView) -> set[Table]:
    return set(view.tables) | {(f, t) for f, t, _ in view.sets}


def _sig(view: HostView, t: Table) -> tuple[Any, dict]:
    sets = view.memo.get(("sets-of", t))
    if sets is None:
        groups: dict[Table, dict] = {}
        for (f, tb, name), elems in view.sets.items():
            groups.setdefault((f, tb), {})[name] = elems
        for key, group in groups.items():
            view.memo[("sets-of", key)] = group
        sets = groups.get(t, {})
    return view.tables.get(t), sets
