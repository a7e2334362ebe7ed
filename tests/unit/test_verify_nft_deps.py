"""Incremental verification tracks a host's nftables per destination address (nft_deps): one rule
changed in one app's table recomputes only the destinations whose evaluation read that table,
and the result still equals a full verification. On a generated topology (bench/scale_repo.py)
where each host carries several applications' tables."""
from __future__ import annotations

from bench.scale_repo import Layout, make_repo
from reconciler.compile import Compiler
from reconciler.model import Layer, Resource, thaw
from reconciler.verify.compare import compare
from reconciler.verify.incremental import Incremental
from reconciler.verify.observe import model_of
from reconciler.verify.verdict import Verifier


def _state(cmp):
    pairs = sorted((r.dest.id, s.id, v.l4, v.rpc, v.hops) for r in cmp.results for s, _, v in r.pairs)
    return pairs, sorted((f.kind, f.extent, f.source.id, f.dest.id) for f in cmp.findings)


def _full(repo, res):
    m, scope = model_of(repo, res, {}, None)
    return compare(Verifier(m, scope).run())


def _edit(r: Resource, rule: dict, at: int) -> Resource:
    spec = thaw(r.spec)
    rules = spec["chains"]["input"]["rules"]
    rules.insert(at if at >= 0 else len(rules), rule)
    return Resource(r.key, spec, r.app, r.owned)


def test_one_rule_recomputes_only_the_readers_of_its_table_and_equals_a_full_verify():
    repo = make_repo(Layout.of(40, 4))
    desired = list(Compiler().compile(repo))
    inc = Incremental(repo, desired)
    host = next(t for (layer, t) in inc.observed if layer is Layer.HOST)
    rs = list(inc.observed[(Layer.HOST, host)].values())
    tables = [r for r in rs if r.key.kind == "nft-table" and r.app]
    assert len(tables) >= 5, "several applications share the host"
    hit = tables[0]
    port = next(x["match"]["dport"] for x in hit.spec["chains"]["input"]["rules"] if "dport" in x.get("match", {}))
    drop = {"match": {"protocol": "tcp", "dport": port}, "verdict": "drop"}
    # (rule, position, fewer destinations than the host's readers are recomputed): a rule inserted
    # first renumbers the table's rules, which the witness hops of its own addresses name
    for rule, at, fewer in ((drop, -1, True), (drop, 0, None), ({"match": {}, "verdict": "accept"}, 0, None),
                            ({"match": {"protocol": "tcp", "dport": port}, "verdict": "jump", "target": "x"}, -1,
                             None)):
        changed = [(_edit(r, rule, at) if r is hit else r) for r in rs]
        delta = inc.update_targets({(Layer.HOST, host): changed})
        res = [r for k, v in inc.observed.items() for r in v.values()]
        assert _state(inc.comparison()) == _state(_full(repo, res)), rule
        readers = {d for d, e in inc.entries.items() if ("host", host) in e.deps}
        assert 0 < delta.recomputed <= len(readers)
        if fewer:
            assert delta.recomputed < len(readers), (delta.recomputed, len(readers))
        inc.update_targets({(Layer.HOST, host): rs})
        assert _state(inc.comparison()) == _state(_full(repo, desired))


def test_an_address_change_still_recomputes_the_whole_host():
    repo = make_repo(Layout.of(40, 4))
    desired = list(Compiler().compile(repo))
    inc = Incremental(repo, desired)
    host = next(t for (layer, t) in inc.observed if layer is Layer.HOST)
    rs = list(inc.observed[(Layer.HOST, host)].values())
    gone = next(r for r in rs if r.key.kind == "address")
    delta = inc.update_targets({(Layer.HOST, host): [r for r in rs if r is not gone]})
    readers = {d for d, e in inc.entries.items() if ("host", host) in e.deps}
    assert delta.recomputed >= len(readers) > 0
    res = [r for k, v in inc.observed.items() for r in v.values()]
    assert _state(inc.comparison()) == _state(_full(repo, res))


def test_a_set_element_recomputes_only_its_tables_readers():
    repo = make_repo(Layout.of(40, 4))
    desired = list(Compiler().compile(repo))
    inc = Incremental(repo, desired)
    host = next(t for (layer, t) in inc.observed if layer is Layer.HOST)
    rs = list(inc.observed[(Layer.HOST, host)].values())
    hit = next(r for r in rs if r.key.kind == "nft-set" and r.key.name.endswith("allow_web_http"))
    spec = {**thaw(hit.spec), "elements": [*hit.spec.get("elements", ()), "10.99.0.1"]}
    delta = inc.update_targets({(Layer.HOST, host): [Resource(r.key, spec, r.app, r.owned) if r is hit else r
                                                     for r in rs]})
    res = [r for k, v in inc.observed.items() for r in v.values()]
    assert _state(inc.comparison()) == _state(_full(repo, res))
    readers = {d for d, e in inc.entries.items() if ("host", host) in e.deps}
    assert 0 < delta.recomputed < len(readers), (delta.recomputed, len(readers))
