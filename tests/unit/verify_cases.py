"""Shared fixtures of the verify unit tests: the example intents compiled, used as observed
state (as if converged), and small helpers to change one resource the way a hand edit would."""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Callable, Iterable

from reconciler.compile import compile_repo
from reconciler.intents.validate import load_repo
from reconciler.model import Resource, ResourceKey, thaw
from reconciler.verify.compare import Comparison, Finding, compare
from reconciler.verify.observe import model_of
from reconciler.verify.verdict import Verifier

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "intents"
L4 = ["switch", "hypervisor", "host"]


@functools.cache
def example():
    repo = load_repo(str(EXAMPLES))
    return repo, tuple(compile_repo(repo))


def resources() -> list[Resource]:
    """The examples' desired state as a healthy observed fabric: their two real defects repaired
    (see `defects()`), so each test sees only the change it makes."""
    return healthy(list(example()[1]))


def defects() -> list[Resource]:
    """The examples' desired state as is. It holds two real defects the model names (both seen on
    the reference lab): billing's ledger route timeout of 500 ms, under which grpcio ends every call
    at once (unknown: grpcio's clock offset), and analytics' dash calling collector on its own host, which leaves from
    the subnet's primary address, not observed here (unknown)."""
    return list(example()[1])


def healthy(res: list[Resource]) -> list[Resource]:
    res = change(res, "sidecar/h2/route/ledger.billing:5432", lambda s: s.update(timeout_ms=2000))
    return change(res, "host/h4/address/eth1:10.50.3.12", lambda s: s.update(secondary=False))


def verify(res: Iterable[Resource], unobserved: dict | None = None, layers: list[str] | None = None,
           apps: Iterable[str] = (), expand: bool = False) -> Comparison:
    repo = example()[0]
    m, scope = model_of(repo, res, unobserved or {}, layers)
    return compare(Verifier(m, scope, expand=expand).run(apps))


def change(res: list[Resource], key: str, edit: Callable[[dict], Any]) -> list[Resource]:
    """`res` with the spec of `key` edited in place by `edit(spec)` (a thawed copy)."""
    k = ResourceKey.parse(key)
    out = []
    hit = False
    for r in res:
        if r.key == k:
            spec = thaw(r.spec)
            edit(spec)
            r = Resource(r.key, spec, r.app, r.owned)
            hit = True
        out.append(r)
    assert hit, f"{key} not in the resources"
    return out


def drop(res: list[Resource], key: str) -> list[Resource]:
    k = ResourceKey.parse(key)
    assert any(r.key == k for r in res), key
    return [r for r in res if r.key != k]


def add(res: list[Resource], key: str, spec: dict, app: str = "", owned: bool = False) -> list[Resource]:
    return res + [Resource(ResourceKey.parse(key), spec, app, owned)]


def find(cmp: Comparison, kind: str, source: str, dest: str) -> Finding:
    got = [f for f in cmp.findings if f.kind == kind and f.source.id == source and f.dest.id == dest]
    assert got, f"no {kind} {source} -> {dest}; findings: " + "; ".join(
        f"{f.kind} {f.source.id}->{f.dest.id}" for f in cmp.findings)
    return got[0]


def hop_text(f: Finding) -> list[str]:
    return [f"{h.layer} {h.device} {h.what} {h.rule}" for h in f.hops]
