"""The pure allocator: `allocate(config, apps, previous) -> Allocated`.

Contract: a pure function of (the repo's applications, `previous` allocations, the pools of
reconciler.yaml). No I/O; the same inputs always give the same output.
- An instance without `address` gets one from its application's subnet, skipping the network,
  broadcast and gateway addresses, `segment.reserved`, and every literal address of the app.
- An application without `vni` gets one from `ipam.vni`; without `vlan`, from `ipam.vlan` when
  that pool is declared (allocated VLANs are unique across the repo; without the pool the VLAN
  is derived from the VNI, as before).
- Stability: an owner (app, service, instance key; see reconciler.ipam.model) that is in
  `previous` keeps its value as long as it exists and still asks for one. New owners are
  served in sorted key order, lowest free value first, so neither file names nor the order of
  files, apps or instances change anything.
- Refused, as located `ValidationError`s (nothing is allocated then): an exhausted pool (at
  the first instance or app that does not fit, with how many values are left); a literal
  address, VNI or VLAN equal to one allocated to a surviving owner (naming both); a subnet,
  gateway, reserved range or pool that no longer holds a kept allocation (shrinking below its
  allocations); two instances of one service with the same key.
- Address allocation is per application (subnets never overlap; semantics checks it) and
  memoised per (AppDoc, previous allocations of the app): re-allocating a repo where one app
  changed costs that app plus one pass over the app names.
Apps whose subnet or gateway is invalid are passed through unresolved: semantics reports them.
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Iterable, Sequence

from reconciler.intents.loader import ValidationError, show
from reconciler.intents.models import Instance, RepoConfig, Service
from reconciler.intents.semantics import AppDoc
from reconciler.ipam.model import Allocations, AppAllocations, IpamResult, Row, owner_of

_SEG = ("spec", "segment")


@dataclass(frozen=True)
class Allocated:
    apps: tuple[AppDoc, ...]           # resolved: every instance has an address, every segment a VNI
    result: IpamResult
    errors: tuple[ValidationError, ...]


@dataclass(frozen=True)
class _AddrOut:
    """Address allocation of one app: owner -> address, and its errors."""

    addresses: tuple[tuple[str, str], ...]
    errors: tuple[ValidationError, ...]


def _dotted(v: int) -> str:
    return str(ipaddress.IPv4Address(v))


def _as_int(text: str) -> int | None:
    try:
        return int(ipaddress.IPv4Address(text))
    except ValueError:
        return None


def _ranges(a: AppDoc, lo: int, hi: int, errors: list[ValidationError]) -> list[tuple[int, int]]:
    """segment.reserved as merged inclusive ranges, clipped to [lo, hi]."""
    out: list[tuple[int, int]] = []
    for i, item in enumerate(a.app.spec.segment.reserved):
        first, _, last = item.partition("-")
        s, e = _as_int(first), _as_int(last or first)
        if s is None or e is None or e < s:
            errors.append(a.doc.error(_SEG + ("reserved", i), f"invalid reserved range {show(item)}"))
            continue
        if e >= lo and s <= hi:
            out.append((max(s, lo), min(e, hi)))
    out.sort()
    merged: list[tuple[int, int]] = []
    for s, e in out:
        if merged and s <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(e, merged[-1][1]))
        else:
            merged.append((s, e))
    return merged


def _reserved(ranges: list[tuple[int, int]], v: int) -> bool:
    return any(s <= v <= e for s, e in ranges)


def _instances(a: AppDoc) -> list[tuple[str, tuple, Instance]]:
    out = []
    for sname, svc in a.app.spec.services.items():
        for i, inst in enumerate(svc.instances):
            out.append((owner_of(sname, inst), ("spec", "services", sname, "instances", i), inst))
    return out


_ADDR_MEMO: dict[int, tuple[AppDoc, AppAllocations | None, _AddrOut]] = {}
_MEMO_SIZE = 50_000


def app_addresses(a: AppDoc, prev: AppAllocations | None) -> _AddrOut:
    hit = _ADDR_MEMO.get(id(a))
    if hit is not None and hit[0] is a and (hit[1] is prev or hit[1] == prev):
        return hit[2]
    out = _addresses_uncached(a, prev)
    if len(_ADDR_MEMO) >= _MEMO_SIZE:
        _ADDR_MEMO.pop(next(iter(_ADDR_MEMO)), None)
    _ADDR_MEMO[id(a)] = (a, prev, out)
    return out


def _addresses_uncached(a: AppDoc, prev: AppAllocations | None) -> _AddrOut:
    insts = _instances(a)
    wanting = sorted((o, p) for o, p, inst in insts if not inst.address)
    if not wanting and not (prev and prev.addresses):
        return _AddrOut((), ())
    seg = a.app.spec.segment
    try:
        net = ipaddress.IPv4Network(seg.subnet)
    except ValueError:
        return _AddrOut((), ())  # semantics reports the subnet
    start, end = int(net.network_address), int(net.broadcast_address)
    gw = _as_int(seg.gateway) if seg.gateway else start + 1
    if gw is None or end - start < 2:
        return _AddrOut((), ())
    errors: list[ValidationError] = []
    reserved = _ranges(a, start + 1, end - 1, errors)
    literal = {v: p for o, p, inst in insts if inst.address and (v := _as_int(inst.address)) is not None}
    kept, fresh = _keep(a, wanting, prev, (start, end, gw, reserved), literal, errors)
    used = set(literal) | set(kept.values()) | {gw}
    usable = (end - start - 1) - sum(e - s + 1 for s, e in reserved) - (0 if _reserved(reserved, gw) else 1)
    left = usable - sum(1 for v in used - {gw} if start < v < end and not _reserved(reserved, v))
    cursor = start + 1
    for i, (owner, path) in enumerate(fresh):
        while cursor < end and (cursor in used or _reserved(reserved, cursor)):
            cursor += 1
        if cursor >= end:
            errors.append(a.doc.error(path, f"no address left for instance {show(owner)} in subnet {net}: "
                                      f"{max(left, 0)} of {usable} usable address(es) left before this change, "
                                      f"{len(fresh)} new instance(s) need one ({len(fresh) - i} do not fit); "
                                      "widen the subnet or free addresses"))
            break
        kept[owner] = cursor
        used.add(cursor)
    if errors:
        return _AddrOut((), tuple(errors))
    return _AddrOut(tuple(sorted((o, _dotted(v)) for o, v in kept.items())), ())


def _keep(a: AppDoc, wanting: list[tuple[str, tuple]], prev: AppAllocations | None,
          space: tuple[int, int, int, list[tuple[int, int]]], literal: dict[int, tuple],
          errors: list[ValidationError]) -> tuple[dict[str, int], list[tuple[str, tuple]]]:
    """Previous addresses of owners still wanting one -> kept; the others -> fresh. A kept address
    the segment no longer offers (shrunk subnet, moved gateway, new reserved range) or that a
    literal address now takes is an error."""
    start, end, gw, reserved = space
    before = dict(prev.addresses) if prev else {}
    kept: dict[str, int] = {}
    fresh: list[tuple[str, tuple]] = []
    seen: dict[str, tuple] = {}
    lost: list[tuple[str, str, str]] = []
    for owner, path in wanting:
        if owner in seen:
            errors.append(a.doc.error(path, f"instance key {show(owner)} is used twice in this service (line "
                                      f"{a.doc.line_of(seen[owner])}); give each instance its own `name`"))
            continue
        seen[owner] = path
        text = before.get(owner)
        v = _as_int(text) if text else None
        if v is None:
            fresh.append((owner, path))
            continue
        why = ("outside the subnet" if not start < v < end else "the gateway" if v == gw
               else "reserved" if _reserved(reserved, v) else "")
        if why:
            lost.append((owner, text or "", why))
        elif v in literal:
            errors.append(a.doc.error(literal[v] + ("address",), f"address {_dotted(v)} collides with the address "
                                      f"allocated to instance {show(owner)} ({a.doc.file}:{a.doc.line_of(path)}); "
                                      "choose another address"))
        kept[owner] = v
    if lost:
        owner, text, why = lost[0]
        more = f" (and {len(lost) - 1} more)" if len(lost) > 1 else ""
        where = "reserved" if why == "reserved" else ("gateway" if why == "the gateway" else "subnet")
        errors.append(a.doc.error(_SEG + (where,), f"segment no longer holds address {text} allocated to instance "
                                  f"{show(owner)} ({why}){more}: shrinking a segment below its allocations is "
                                  "refused; remove those instances first or give them literal addresses"))
    return kept, fresh


@dataclass(frozen=True)
class _NumberPool:
    """One integer pool (VNIs or VLANs) over all apps."""

    what: str                     # "VNI" / "VLAN"
    field: str                    # segment field
    bounds: tuple[int, int] | None
    config_key: str               # ipam.vni / ipam.vlan


def _numbers(pool: _NumberPool, apps: Sequence[AppDoc], wanting: set[str], prev: Allocations,
             errors: list[ValidationError]) -> dict[str, int]:
    """app -> number for every app in `wanting`, stable: a previous value is kept."""
    literal: dict[int, AppDoc] = {}
    for a in apps:
        v = getattr(a.app.spec.segment, pool.field)
        if v:
            literal.setdefault(v, a)
    out: dict[str, int] = {}
    by_name = {a.app.name: a for a in apps if a.app.name in wanting}
    fresh: list[AppDoc] = []
    for name in sorted(by_name):
        a = by_name[name]
        before = getattr(prev.apps.get(name), pool.field, None) if name in prev.apps else None
        if before is None:
            fresh.append(a)
            continue
        if pool.bounds is not None and not pool.bounds[0] <= before <= pool.bounds[1]:
            errors.append(a.doc.error(_SEG, f"{pool.what} {before} allocated to application {show(name)} is outside "
                                      f"the {pool.config_key} pool {pool.bounds[0]}..{pool.bounds[1]} of "
                                      "reconciler.yaml: shrinking a pool below its allocations is refused"))
        other = literal.get(before)
        if other is not None:
            errors.append(other.doc.error(_SEG + (pool.field,), f"{pool.what} {before} collides with the {pool.what} "
                                          f"allocated to application {show(name)} ({a.doc.file}); choose another"))
        out[name] = before
    if not fresh:
        return out
    if pool.bounds is None:
        for a in fresh:
            errors.append(a.doc.error(_SEG, f"no {pool.field} given and reconciler.yaml declares no {pool.config_key} "
                                      f"pool to allocate one from"))
        return out
    lo, hi = pool.bounds
    used = set(literal) | set(out.values())
    size = hi - lo + 1
    left = size - sum(1 for v in used if lo <= v <= hi)
    cursor = lo
    for i, a in enumerate(fresh):
        while cursor <= hi and cursor in used:
            cursor += 1
        if cursor > hi:
            errors.append(a.doc.error(_SEG, f"{pool.config_key} pool {lo}..{hi} of reconciler.yaml is exhausted: "
                                      f"{max(left, 0)} of {size} left before this change, {len(fresh)} new "
                                      f"application(s) need one ({len(fresh) - i} do not fit)"))
            break
        out[a.app.name] = cursor
        used.add(cursor)
    return out


def _resolve(a: AppDoc, addrs: tuple[tuple[str, str], ...], vni: int | None, vlan: int | None) -> AppDoc:
    """The app with its allocated values filled in (the same AppDoc when nothing was allocated)."""
    if not addrs and vni is None and vlan is None:
        return a
    app = a.app
    by_owner = dict(addrs)
    services: dict[str, Service] = {}
    for sname, svc in app.spec.services.items():
        insts = tuple(inst if inst.address else inst.model_copy(update={"address": by_owner[owner_of(sname, inst)]})
                      for inst in svc.instances)
        services[sname] = svc if insts == svc.instances else svc.model_copy(update={"instances": insts})
    seg_update: dict[str, int] = {}
    if vni is not None:
        seg_update["vni"] = vni
    if vlan is not None:
        seg_update["vlan"] = vlan
    seg = app.spec.segment.model_copy(update=seg_update) if seg_update else app.spec.segment
    spec = app.spec.model_copy(update={"segment": seg, "services": services})
    return AppDoc(a.doc, app.model_copy(update={"spec": spec}))


_RESOLVED: dict[int, tuple[AppDoc, tuple, AppDoc]] = {}


def resolved_app(a: AppDoc, addrs: tuple[tuple[str, str], ...], vni: int | None, vlan: int | None) -> AppDoc:
    """`_resolve`, memoised so an unchanged app keeps its resolved AppDoc (semantics caches by it)."""
    key = (addrs, vni, vlan)
    hit = _RESOLVED.get(id(a))
    if hit is not None and hit[0] is a and hit[1] == key:
        return hit[2]
    out = _resolve(a, addrs, vni, vlan)
    if len(_RESOLVED) >= _MEMO_SIZE:
        _RESOLVED.pop(next(iter(_RESOLVED)), None)
    _RESOLVED[id(a)] = (a, key, out)
    return out


def pools(config: RepoConfig | None) -> tuple[_NumberPool, _NumberPool]:
    ipam = config.ipam if config is not None else None
    return (_NumberPool("VNI", "vni", (ipam.vni.start, ipam.vni.end) if ipam and ipam.vni else None, "ipam.vni"),
            _NumberPool("VLAN", "vlan", (ipam.vlan.start, ipam.vlan.end) if ipam and ipam.vlan else None,
                        "ipam.vlan"))


def allocate_full(config: RepoConfig | None, apps: Sequence[AppDoc], previous: Allocations) -> Allocated:
    """One pass over every app (the reference the incremental path must equal)."""
    errors: list[ValidationError] = []
    vni_pool, vlan_pool = pools(config)
    vnis = _numbers(vni_pool, apps, {a.app.name for a in apps if not a.app.spec.segment.vni}, previous, errors)
    vlans = _numbers(vlan_pool, apps, {a.app.name for a in apps if a.app.spec.segment.vlan is None}
                     if vlan_pool.bounds is not None else set(), previous, errors)
    out_apps: dict[str, AppAllocations] = {}
    for a in apps:
        name = a.app.name
        before = previous.apps.get(name)
        got = app_addresses(a, before)
        errors.extend(got.errors)
        mine = AppAllocations(vnis.get(name), vlans.get(name), got.addresses)
        if not mine.empty:
            out_apps[name] = before if before == mine else mine
    if errors:  # nothing is allocated from a refused repo; semantics skips what is left out
        return Allocated(tuple(apps), IpamResult(previous, previous), tuple(errors))
    resolved = [resolved_app(a, out_apps[a.app.name].addresses, vnis.get(a.app.name), vlans.get(a.app.name))
                if a.app.name in out_apps else a for a in apps]
    result = diff(previous, Allocations(out_apps, previous.generation))
    if not result.changed:  # the same values: hand back `previous` itself (reconciler.ipam.incremental chains on it)
        result = IpamResult(previous, previous)
    return Allocated(tuple(resolved), result, ())


def diff(previous: Allocations, allocations: Allocations, names: Iterable[str] | None = None) -> IpamResult:
    """New and released rows, looking only at apps (of `names`, default all) whose allocations are not the
    same object."""
    new: list[Row] = []
    released: list[Row] = []
    for name in sorted(set(previous.apps) | set(allocations.apps) if names is None else set(names)):
        a, b = previous.apps.get(name), allocations.apps.get(name)
        if a is b:
            continue
        old = set(a.rows(name)) if a else set()
        cur = set(b.rows(name)) if b else set()
        released.extend(sorted(old - cur))
        new.extend(sorted(cur - old))
    return IpamResult(allocations, previous, tuple(new), tuple(released))
