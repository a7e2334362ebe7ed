"""Which daemon owns which application: consistent hashing with bounded loads (pure).

Contract:
- `assign(members, keys, eps, vnodes)` maps every key to one member. Members sit on a hash
  ring (`vnodes` points each); keys are placed in the order of their own hash, each on the
  first member clockwise from its point whose load is below the cap
  `ceil((1 + eps) * len(keys) / len(members))` (Mirrokni, Thorup, Zadimoghaddam 2016). Same
  inputs, same answer, in every process (blake2b, never Python's salted `hash`).
- Adding or removing one member moves about 1/N of the keys (tests bound it); no member
  holds more than the cap.
- Daemons shard *applications*, through a fixed space of `slots`: an app lives in slot
  `slot_of(app, slots)` and the slots are the keys assigned to the live members. The owner
  of an app therefore depends on the member set only, never on which revision (which app
  list) a daemon has loaded: two daemons that agree on the members agree on every owner,
  even while one of them still runs an older commit. The fabric (resources no app claims,
  app "") is one more app.
- `ShardSettings` are the daemon's shard options (`reconciler serve --shards ...`).
"""
from __future__ import annotations

import bisect
import hashlib
import math
from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

__all__ = ["ShardSettings", "assign", "loads", "moved", "owners_of_slots", "slot_of", "stable_hash"]


@dataclass(frozen=True)
class ShardSettings:
    lease_s: float = 10.0          # a member that has not renewed for this long is gone
    slots: int = 1024              # apps hash into this many slots; slots are what moves
    eps: float = 0.25              # a member holds at most ceil((1 + eps) * mean) slots
    vnodes: int = 64               # ring points per member
    batch_max_s: float = 300.0     # the server ends a write batch's session idle this long
    reap_grace_s: float = 0.0      # extra wait after a lease lapsed before its slots move

    def __post_init__(self) -> None:
        if self.lease_s < 1.0:
            raise ValueError("shard lease must be at least 1 s")
        if self.slots < 1 or self.vnodes < 1 or self.eps <= 0:
            raise ValueError("shard slots and vnodes must be >= 1 and eps > 0")
        if self.batch_max_s < self.lease_s:
            raise ValueError("shard batch_max_s must be at least the lease period")

    @property
    def heartbeat_s(self) -> float:
        """Renew three times a lease: two renewals may be lost before it lapses."""
        return self.lease_s / 3.0


def stable_hash(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


def slot_of(app: str, slots: int) -> int:
    return stable_hash("app:" + app) % slots


def _ring(members: Sequence[str], vnodes: int) -> tuple[list[int], list[str]]:
    points = sorted((stable_hash(f"member:{m}#{i}"), m) for m in members for i in range(vnodes))
    return [p for p, _ in points], [m for _, m in points]


def assign(members: Iterable[str], keys: Iterable[str], eps: float = 0.25, vnodes: int = 64) -> dict[str, str]:
    """Every key -> its member (empty when there are no members)."""
    names = sorted(set(members))
    todo = sorted(set(keys), key=lambda k: (stable_hash("key:" + k), k))
    if not names or not todo:
        return {}
    cap = math.ceil((1 + eps) * len(todo) / len(names))
    hashes, owners = _ring(names, vnodes)
    load = dict.fromkeys(names, 0)
    out: dict[str, str] = {}
    npoints = len(hashes)
    for key in todo:
        i = bisect.bisect_left(hashes, stable_hash("key:" + key))
        for step in range(npoints):  # at most one lap: some member is always below the cap
            m = owners[(i + step) % npoints]
            if load[m] < cap:
                load[m] += 1
                out[key] = m
                break
    return out


def owners_of_slots(members: Iterable[str], settings: ShardSettings) -> tuple[str, ...]:
    """Owner of each slot, indexed by slot number ("" for every slot when nobody is live)."""
    keys = [str(s) for s in range(settings.slots)]
    got = assign(members, keys, settings.eps, settings.vnodes)
    return tuple(got.get(k, "") for k in keys)


def owner_of(app: str, slot_owners: Sequence[str]) -> str:
    return slot_owners[slot_of(app, len(slot_owners))] if slot_owners else ""


def loads(assignment: Mapping[str, str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for m in assignment.values():
        out[m] = out.get(m, 0) + 1
    return out


def moved(before: Mapping[str, str], after: Mapping[str, str]) -> int:
    """Keys present in both whose owner changed."""
    return sum(1 for k, m in before.items() if k in after and after[k] != m)
