"""Incremental allocation: the result of `allocate_full`, at a cost that follows the apps that changed.

Contract: `allocate_incremental(config, apps, previous)` returns exactly what
`reconciler.ipam.allocate.allocate_full(config, apps, previous)` returns. It is fast when
`previous.apps` is the very mapping the last successful call returned (a chain of loads: the
daemon after recording, a bench, a test) and the pools are the same: then every app whose
AppDoc is the same object as last time (the loader reuses AppDocs of unchanged files) keeps its
resolved AppDoc and its values, and only the changed, added and removed apps are allocated
again. Anything else, or any error, runs the full pass (which words every error). One state is
kept per process, for the last successful call.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from reconciler.intents.models import RepoConfig
from reconciler.intents.semantics import AppDoc
from reconciler.ipam.allocate import Allocated, _NumberPool, allocate_full, app_addresses, diff, pools, resolved_app
from reconciler.ipam.model import Allocations, AppAllocations, IpamResult

MAX_CHANGED = 256  # beyond this, the full pass is as fast


@dataclass
class _PoolState:
    literal: dict[int, list[str]] = field(default_factory=dict)  # value -> apps naming it literally
    allocated: dict[int, str] = field(default_factory=dict)      # value -> app it is allocated to


@dataclass
class _State:
    pools: tuple[_NumberPool, _NumberPool]
    apps: dict[int, AppDoc]       # id of an input AppDoc -> it (kept alive, so ids stay unique)
    names: dict[str, int]         # app name -> id of its input AppDoc
    resolved: dict[int, AppDoc]   # id of an input AppDoc -> the resolved one
    allocations: Allocations      # what the last call returned
    numbers: tuple[_PoolState, _PoolState]


_LAST: list[_State] = []


def allocate_incremental(config: RepoConfig | None, apps: Sequence[AppDoc], previous: Allocations) -> Allocated:
    spec = pools(config)
    st = _LAST.pop() if _LAST else None
    if st is not None and st.pools == spec and previous.apps is st.allocations.apps:
        out = _incremental(st, apps, previous)
        if out is not None:
            _LAST.append(st)
            return out
    out = allocate_full(config, apps, previous)
    if not out.errors:
        _LAST.append(_state(spec, apps, out))
    return out


def _state(spec: tuple[_NumberPool, _NumberPool], apps: Sequence[AppDoc], out: Allocated) -> _State:
    numbers = (_PoolState(), _PoolState())
    for a in apps:
        for pool, ps in zip(spec, numbers):
            v = getattr(a.app.spec.segment, pool.field)
            if v:
                ps.literal.setdefault(v, []).append(a.app.name)
    for name, mine in out.result.allocations.apps.items():
        for pool, ps in zip(spec, numbers):
            v = getattr(mine, pool.field)
            if v is not None:
                ps.allocated[v] = name
    return _State(spec, {id(a): a for a in apps}, {a.app.name: id(a) for a in apps},
                  {id(a): r for a, r in zip(apps, out.apps)}, out.result.allocations, numbers)


def _incremental(st: _State, apps: Sequence[AppDoc], previous: Allocations) -> Allocated | None:
    """Mutates `st` into the state of this call; None (state spoilt) when the full pass must run."""
    order = list(map(id, apps))
    ids = set(order)
    if len(ids) != len(apps):
        return None
    known = st.apps
    changed = [a for a, i in zip(apps, order) if i not in known]
    if len(changed) > MAX_CHANGED:
        return None
    removed = [a for i, a in known.items() if i not in ids] if len(known) + len(changed) != len(ids) else []
    if not changed and not removed:
        return Allocated(tuple(map(st.resolved.__getitem__, order)), IpamResult(previous, previous), ())
    gone = {a.app.name for a in removed}
    names = [a.app.name for a in changed]
    if len(set(names)) != len(names) or any(n in st.names and n not in gone for n in names):
        return None  # a duplicate application name: the full pass reports it
    out_apps = dict(st.allocations.apps)
    for a in removed:
        _forget(st, a, out_apps.pop(a.app.name, None))
    values = [_numbers(st, pool, ps, changed, previous) for pool, ps in zip(st.pools, st.numbers)]
    if any(v is None for v in values):
        return None
    vnis, vlans = values[0] or {}, values[1] or {}
    for a in changed:
        name = a.app.name
        got = app_addresses(a, previous.apps.get(name))
        if got.errors:
            return None
        mine = AppAllocations(vnis.get(name), vlans.get(name), got.addresses)
        before = previous.apps.get(name)
        if mine.empty:
            out_apps.pop(name, None)
        else:
            out_apps[name] = before if before == mine else mine
        st.apps[id(a)], st.names[name] = a, id(a)
        st.resolved[id(a)] = resolved_app(a, got.addresses, vnis.get(name), vlans.get(name)) \
            if not mine.empty else a
    result = diff(previous, Allocations(out_apps, previous.generation), gone | set(names))
    if not result.changed:  # the same values: hand back `previous` itself, so the chain goes on
        result = IpamResult(previous, previous)
    st.allocations = result.allocations
    return Allocated(tuple(map(st.resolved.__getitem__, order)), result, ())


def _forget(st: _State, a: AppDoc, mine: AppAllocations | None) -> None:
    name = a.app.name
    for pool, ps in zip(st.pools, st.numbers):
        v = getattr(a.app.spec.segment, pool.field)
        if v and name in ps.literal.get(v, ()):
            ps.literal[v].remove(name)
            if not ps.literal[v]:
                del ps.literal[v]
        held = getattr(mine, pool.field) if mine is not None else None
        if held is not None and ps.allocated.get(held) == name:
            del ps.allocated[held]
    st.apps.pop(id(a), None)
    st.resolved.pop(id(a), None)
    if st.names.get(name) == id(a):
        del st.names[name]


def _numbers(st: _State, pool: _NumberPool, ps: _PoolState, changed: list[AppDoc],
             previous: Allocations) -> dict[str, int] | None:
    """Values of the changed apps in one pool, as the full pass would give them; None on any error."""
    out: dict[str, int] = {}
    wanting: list[AppDoc] = []
    for a in changed:
        v = getattr(a.app.spec.segment, pool.field)
        if v:
            holder = ps.allocated.get(v)
            if holder is not None and holder != a.app.name:
                return None  # a literal on an allocated value
            ps.literal.setdefault(v, []).append(a.app.name)
        elif pool.field == "vni" or pool.bounds is not None:
            wanting.append(a)
    fresh: list[AppDoc] = []
    for a in sorted(wanting, key=lambda a: a.app.name):
        before = getattr(previous.apps.get(a.app.name), pool.field, None)
        if before is None:
            fresh.append(a)
            continue
        if pool.bounds is not None and not pool.bounds[0] <= before <= pool.bounds[1] or before in ps.literal:
            return None
        out[a.app.name] = before
        ps.allocated[before] = a.app.name
    if fresh and pool.bounds is None:
        return None
    cursor = pool.bounds[0] if pool.bounds else 0
    for a in fresh:
        while cursor in ps.literal or cursor in ps.allocated:
            cursor += 1
        if pool.bounds is None or cursor > pool.bounds[1]:
            return None
        out[a.app.name] = cursor
        ps.allocated[cursor] = a.app.name
    return out


def allocate(config: RepoConfig | None, apps: Sequence[AppDoc], previous: Allocations) -> Allocated:
    """Allocate what `apps` leave out, keeping `previous` (the contract of reconciler.ipam.allocate).
    The same as `allocate_full`, faster for a chain of loads where few apps change."""
    return allocate_incremental(config, apps, previous)
