"""nftables tables the reconciler does not own, as observed (pure): what verification needs to see.

Contract: `foreign_tables(doc, target)` reads the same `nft -j list ruleset` document as
nftables.parse_ruleset and returns every table that parse_ruleset does not own (any family:
ip, inet, netdev, ...), as `owned=False` resources of app "" that diff and plan never touch:
  nft-table  `<family>/<table>` {family, name, chains: {name: {type, hook, priority, policy,
             rules: [parse_rule(expr)]}}} (base chains with their hook and priority, regular
             chains without; rules in order, in the shape the owned tables have);
  nft-set    `<family>/<table>/<set>` {family, table, name, type, elements} (elements as
             parse_ruleset keeps them: scalars as text, prefixes/ranges as JSON text).
reconciler.verify reads them: a foreign base chain at any priority is evaluated in hook order with
the reconciler's own (netfilter semantics), so a foreign table that drops is a violation named at
its rule and one the model cannot read makes its pairs `unknown`. Counter values are dropped
(parse_rule keeps a counter's name only), so a busy foreign table is not "changed" on every scan.
"""
from __future__ import annotations

import json
from typing import Any, Mapping

from reconciler.drivers.ansible.nftables import TABLE_PREFIX, parse_rule
from reconciler.model import Layer, Resource, ResourceKey


def _ours(obj: Mapping[str, Any], key: str = "name") -> bool:
    return obj.get("family") == "inet" and str(obj.get(key, "")).startswith(TABLE_PREFIX)


def _element(e: Any) -> str:
    return json.dumps(e, sort_keys=True) if isinstance(e, dict) else str(e)


def foreign_tables(doc: Mapping[str, Any], target: str) -> list[Resource]:
    tables: dict[tuple[str, str], dict] = {}
    sets: dict[tuple[str, str, str], dict] = {}
    for item in doc.get("nftables", ()) if isinstance(doc, Mapping) else ():
        kind = next((k for k in ("table", "chain", "rule", "set") if k in item), None)
        if kind is None:
            continue
        o = item[kind]
        if _ours(o, "name" if kind == "table" else "table"):
            continue
        fam = str(o.get("family", ""))
        if kind == "table":
            tables[(fam, str(o.get("name")))] = {"family": fam, "name": str(o.get("name")), "chains": {}}
        elif kind == "chain" and (fam, o.get("table")) in tables:
            chain: dict[str, Any] = {"rules": []}
            if o.get("hook"):
                chain.update(type=o.get("type"), hook=o.get("hook"), priority=o.get("prio"), policy=o.get("policy"))
            tables[(fam, o["table"])]["chains"][str(o.get("name"))] = chain
        elif kind == "rule" and (fam, o.get("table")) in tables:
            c = tables[(fam, o["table"])]["chains"].get(o.get("chain"))
            if c is not None:
                c["rules"].append(parse_rule(o.get("expr", ())))
        elif kind == "set":
            sets[(fam, str(o.get("table")), str(o.get("name")))] = {
                "family": fam, "table": str(o.get("table")), "name": str(o.get("name")), "type": o.get("type"),
                "elements": sorted(_element(e) for e in o.get("elem", ()))}
    out = [Resource(ResourceKey(Layer.HOST, target, "nft-table", f"{f}/{n}"), spec, "", False)
           for (f, n), spec in sorted(tables.items())]
    return out + [Resource(ResourceKey(Layer.HOST, target, "nft-set", f"{f}/{t}/{n}"), spec, "", False)
                  for (f, t, n), spec in sorted(sets.items())]
