"""Values of IPAM: who owns which address, VNI or VLAN.

Contract: everything here is immutable. An owner is identified by a stable key that never
mentions files or list positions: `(app, kind, owner)` where `owner` is
`<service>/<instance key>` for an address and "" for an application's VNI or VLAN. The
instance key is `Instance.name` when given, else `<host>` or `<host>/<interface>` (the
interface as written in the file). `Allocations` maps app -> `AppAllocations`; it converts to
and from the store's flat `Row`s. `generation` is the store generation the value was read at
(compare-and-swap in reconciler.ipam.persist), 0 for none.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Iterable, Iterator, Mapping, NamedTuple

from reconciler.intents.models import Instance


class Kind(str, Enum):
    ADDRESS = "address"
    VNI = "vni"
    VLAN = "vlan"


class Row(NamedTuple):
    """One allocation as the store keeps it (value as text: a dotted address or a number)."""

    app: str
    kind: Kind
    owner: str
    value: str

    def label(self) -> str:
        return f"{self.app}/{self.owner}" if self.owner else f"{self.app} ({self.kind.value})"


def instance_key(inst: Instance) -> str:
    if inst.name:
        return inst.name
    return f"{inst.host}/{inst.interface}" if inst.interface else inst.host


def owner_of(service: str, inst: Instance) -> str:
    return f"{service}/{instance_key(inst)}"


@dataclass(frozen=True)
class AppAllocations:
    vni: int | None = None
    vlan: int | None = None
    addresses: tuple[tuple[str, str], ...] = ()  # (owner, dotted address), sorted by owner

    def rows(self, app: str) -> Iterator[Row]:
        if self.vni is not None:
            yield Row(app, Kind.VNI, "", str(self.vni))
        if self.vlan is not None:
            yield Row(app, Kind.VLAN, "", str(self.vlan))
        for owner, addr in self.addresses:
            yield Row(app, Kind.ADDRESS, owner, addr)

    @property
    def empty(self) -> bool:
        return self.vni is None and self.vlan is None and not self.addresses


@dataclass(frozen=True)
class Allocations:
    apps: Mapping[str, AppAllocations] = field(default_factory=dict)
    generation: int = 0

    def rows(self) -> Iterator[Row]:
        for app in sorted(self.apps):
            yield from self.apps[app].rows(app)

    @classmethod
    def from_rows(cls, rows: Iterable[Row], generation: int = 0) -> "Allocations":
        vni: dict[str, int] = {}
        vlan: dict[str, int] = {}
        addrs: dict[str, list[tuple[str, str]]] = {}
        for r in rows:
            if r.kind is Kind.VNI:
                vni[r.app] = int(r.value)
            elif r.kind is Kind.VLAN:
                vlan[r.app] = int(r.value)
            else:
                addrs.setdefault(r.app, []).append((r.owner, r.value))
        names = set(vni) | set(vlan) | set(addrs)
        apps = {a: AppAllocations(vni.get(a), vlan.get(a), tuple(sorted(addrs.get(a, ())))) for a in sorted(names)}
        return cls(apps, generation)

    def __len__(self) -> int:
        return sum(1 for _ in self.rows())


EMPTY = Allocations()


@dataclass(frozen=True)
class IpamResult:
    """What one load decided: the allocations of the repo, and how they differ from `previous`."""

    allocations: Allocations
    previous: Allocations
    new: tuple[Row, ...] = ()
    released: tuple[Row, ...] = ()

    @property
    def changed(self) -> bool:
        return bool(self.new or self.released)


def preview_lines(result: object) -> list[str]:
    """The allocations a load would make and release, as `plan` prints them (none: no lines)."""
    if not isinstance(result, IpamResult) or not result.changed:
        return []
    out = [f"IPAM: {len(result.new)} allocation(s) to make, {len(result.released)} to release"]
    out += [f"  + {r.kind.value:<7} {r.value:<15} {r.label()}" for r in result.new]
    out += [f"  - {r.kind.value:<7} {r.value:<15} {r.label()}" for r in result.released]
    return out
