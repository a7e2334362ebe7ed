"""nftables sets and the source addresses rules test, on one host as observed (pure).

Contract: set elements come as `nft -j` gives them to the driver (addresses and ports as text or
numbers; prefixes and ranges as JSON text); `parsed_set(host, family, table, name)` parses a
named set once per host and `member_in(value, parsed)` answers True, False, or None when an
element is not understood and the value is not found among the others. `saddr_terms(host,
daddr)` lists the source addresses and networks that any rule able to match `daddr` tests,
which is what lets the scope treat every other source alike.
"""
from __future__ import annotations

import functools
import json
from typing import Any, Iterable

from reconciler.verify.addr import MASKS, ip_int, prefix
from reconciler.verify.model import HostView


def _elements(elems: Iterable[Any]) -> tuple[set, list, bool]:
    """(plain values, intervals (lo, hi), something not understood) of a set's elements."""
    plain, spans, odd = set(), [], False
    for e in elems:
        if isinstance(e, str) and e.startswith("{"):
            try:
                e = json.loads(e)
            except ValueError:
                odd = True
                continue
        span = _span(e)
        if span is None:
            odd = True
        elif span[0] == span[1]:
            plain.add(span[0])
        else:
            spans.append(span)
    return plain, spans, odd


def _scalar(v: Any) -> Any:
    if isinstance(v, int) and not isinstance(v, bool):
        return v
    if isinstance(v, str):
        return _text_scalar(v)
    return None


@functools.lru_cache(maxsize=1 << 18)
def _text_scalar(v: str) -> Any:
    if v.isdigit():
        return int(v)
    try:
        return ip_int(v)
    except ValueError:
        return v


def _span(e: Any) -> tuple[Any, Any] | None:
    if isinstance(e, dict):
        if "prefix" in e:
            net = prefix(f"{e['prefix']['addr']}/{e['prefix']['len']}")
            return net.network, net.network | (~MASKS[net.prefixlen] & 0xFFFFFFFF)
        if "range" in e:
            lo, hi = (_scalar(x) for x in e["range"])
            return (lo, hi) if lo is not None and hi is not None else None
        if "elem" in e:
            return _span(e["elem"].get("val"))
        return None
    v = _scalar(e)
    return None if v is None else (v, v)


@functools.lru_cache(maxsize=1 << 14)
def as_json(text: str) -> Any:
    return json.loads(text)


def member(value: Any, elems: Iterable[Any]) -> bool | None:
    return member_in(value, _elements(elems))


def member_in(value: Any, parsed: tuple[set, list, bool]) -> bool | None:
    plain, spans, odd = parsed
    v = _scalar(value)
    if v in plain or (spans and any(isinstance(v, type(lo)) and lo <= v <= hi for lo, hi in spans)):
        return True
    return None if odd else False


def parsed_set(host: HostView, family: str, table: str, name: str) -> tuple[set, list, bool] | None:
    """A named set's elements, parsed once per host (None when the set was not observed)."""
    key = ("set", family, table, name)
    got = host.memo.get(key)
    if got is None and key not in host.memo:
        elems = host.sets.get((family, table, name))
        got = host.memo[key] = None if elems is None else _elements(elems)
    return got


def saddr_terms(host: HostView, daddr: str | None = None) -> tuple[set[str], list[Any], bool]:
    """(addresses, networks, everything) that rules of `host` test the source address against
    (with `daddr`: only rules whose destination set may hold `daddr`; the others never match);
    `everything` when a rule negates such a test (then no source is like another)."""
    rec = host.rec      # nft_deps.note, inline: nft_deps imports this module
    if rec is not None and rec.deps is not None:
        rec.deps.add(("nft", host.name, ("saddr", daddr)))
    exact: set[str] = set()
    nets: list[Any] = []
    every = False
    for family, table, dset, r_exact, r_nets, r_every in _saddr_rules(host):
        if daddr is not None and dset is not None:
            parsed = parsed_set(host, family, table, dset)
            if parsed is not None and member_in(daddr, parsed) is False:
                continue
        exact |= r_exact
        nets += r_nets
        every |= r_every
    return exact, nets, every


def _saddr_rules(host: HostView) -> list[tuple[str, str, str | None, set[str], list[Any], bool]]:
    """Per rule that tests the source address: (family, table, its destination set, the
    addresses and networks it tests, whether it negates), once per host."""
    got = host.memo.get("saddr_rules")
    if got is not None:
        return got
    got = []
    for (family, table), chains in host.tables.items():
        for c in chains.values():
            for rule in c.get("rules", ()):
                m = rule.get("match") or {}
                refs = [m["saddr_set"]] if "saddr_set" in m else []
                exact: set[str] = set()
                nets: list[Any] = []
                every = False
                for text in m.get("unparsed", ()):
                    e = as_json(text) if isinstance(text, str) else text
                    mm = e.get("match") or {}
                    if (mm.get("left") or {}).get("payload", {}).get("field") != "saddr":
                        continue
                    every |= mm.get("op") == "!="
                    right = mm.get("right")
                    if isinstance(right, str) and right.startswith("@"):
                        refs.append(right[1:])
                    else:
                        _terms(right["set"] if isinstance(right, dict) and "set" in right else [right], exact, nets)
                for name in refs:
                    _terms(host.sets.get((family, table, name)) or (), exact, nets)
                if exact or nets or every:
                    got.append((family, table, m.get("daddr_set"), exact, nets, every))
    host.memo["saddr_rules"] = got
    return got


def _terms(elems: Iterable[Any], exact: set[str], nets: list[Any]) -> None:
    plain, spans, _ = _elements(elems)
    exact.update(f"{v >> 24}.{v >> 16 & 255}.{v >> 8 & 255}.{v & 255}" for v in plain if isinstance(v, int))
    nets.extend(spans)
