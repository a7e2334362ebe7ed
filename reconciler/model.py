"""Typed values shared by every pipeline stage.

Contract: everything here is immutable and free of I/O. A `Resource` is one unit of
desired or observed state, identified by a `ResourceKey(layer, target, kind, name)` and
tagged with the application that wants it. `spec` is a JSON-compatible value frozen with
`freeze()` (dicts become `FrozenDict`, lists become tuples) so resources can be shared,
hashed and compared without defensive copies; `thaw()` gives back plain JSON values.
`IgnoreRule` (from reconciler.yaml) tells diff which state another tool owns;
`DEFAULT_DENY_KEYS` names the resources no rule may keep from being created.
Keys, resources (and plan changes) are named tuples: at millions of resources, building,
hashing and comparing them in C is what keeps compile and plan linear and fast.
`PersistentMap` and `ResourceIndex` (a State's resources grouped by target) are immutable maps
that share structure with the maps they were derived from (`evolve`): an incremental compile
publishes a new desired state at the cost of what changed, not of its size.
"""
from __future__ import annotations

import enum
import gc
import itertools
import json
from collections.abc import ItemsView, ValuesView
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Iterable, Iterator, Mapping, NamedTuple

from pydantic import BaseModel, ConfigDict

# Label put on everything the reconciler creates, so ownership is decidable on a device
# (nftables table names, OVS external_ids, flow cookies, interface aliases).
OWNER = "netintent"


class Layer(str, enum.Enum):
    """The four layers, in the order their resources are created (underlay first)."""

    SWITCH = "switch"
    HYPERVISOR = "hypervisor"
    HOST = "host"
    SIDECAR = "sidecar"

    @property
    def create_rank(self) -> int:
        return _CREATE_RANK[self]

    @property
    def prune_rank(self) -> int:
        # Prune overlay before underlay: the reverse of creation.
        return len(_LAYER_ORDER) - 1 - self.create_rank

    @classmethod
    def ordered(cls) -> tuple["Layer", ...]:
        return tuple(_LAYER_ORDER)


_LAYER_ORDER = [Layer.SWITCH, Layer.HYPERVISOR, Layer.HOST, Layer.SIDECAR]
_CREATE_RANK = {layer: i for i, layer in enumerate(_LAYER_ORDER)}


class FrozenDict(dict):
    """A dict that refuses mutation and hashes by content. Serialises as a plain dict."""

    __slots__ = ("_hash",)
    _hash: int

    def _immutable(self, *_a: Any, **_k: Any) -> None:
        raise TypeError("FrozenDict is immutable")

    __setitem__ = __delitem__ = clear = pop = popitem = setdefault = update = _immutable  # type: ignore[assignment]

    def __hash__(self) -> int:  # type: ignore[override]
        try:
            return self._hash
        except AttributeError:
            h = hash(tuple(sorted(self.items(), key=lambda kv: kv[0])))
            self._hash = h
            return h

    def __reduce__(self):  # pickling (multiprocessing) keeps the type
        return (FrozenDict, (dict(self),))


_SCALARS = frozenset((str, int, float, bool, type(None)))
_dict_set = dict.__setitem__  # fills a FrozenDict while freeze builds it (it refuses item assignment)


def freeze(value: Any) -> Any:
    """Turn a JSON-compatible value into an immutable, hashable one."""
    # Exact-type fast paths first: compile freezes millions of values, and isinstance against
    # typing.Mapping goes through the ABC machinery (~1 us a call).
    t = type(value)
    if t in _SCALARS or t is FrozenDict:
        return value
    if t is dict:
        out = FrozenDict(value)  # copied in C; containers inside are replaced by frozen ones below
        for k, v in value.items():
            if type(k) is not str:
                return FrozenDict({str(k): freeze(v) for k, v in value.items()})
            if type(v) not in _SCALARS:
                _dict_set(out, k, freeze(v))
        return out
    if t is list or t is tuple:
        return tuple([v if type(v) in _SCALARS else freeze(v) for v in value])
    if isinstance(value, Mapping):
        return FrozenDict((str(k), freeze(v)) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return tuple(freeze(v) for v in value)
    return value


def thaw(value: Any) -> Any:
    """Turn a frozen value back into plain dicts and lists (for JSON and YAML output)."""
    if isinstance(value, Mapping):
        return {k: thaw(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [thaw(v) for v in value]
    return value


class ResourceKey(NamedTuple):
    """`layer/target/kind/name`. A named tuple: hashing, equality and ordering run in C, which
    matters at millions of keys (a frozen dataclass hashes and compares in Python)."""

    layer: Layer
    target: str
    kind: str
    name: str

    def __str__(self) -> str:
        return "/".join(self)  # Layer is a str: its value joins as is

    @classmethod
    def parse(cls, text: str) -> "ResourceKey":
        layer, target, kind, name = text.split("/", 3)
        return cls(Layer(layer), target, kind, name)

    def sort_key(self) -> tuple:
        return (_CREATE_RANK[self[0]], self[1], self[2], self[3])


class _ResourceFields(NamedTuple):
    key: ResourceKey
    spec: Any
    app: str = ""
    # False for state found on a device that the reconciler did not create: never touched.
    owned: bool = True


class Resource(_ResourceFields):
    """One unit of state. `app` is the owning application ('' when unknown/unowned).

    A named tuple whose constructor freezes `spec`: compile builds millions of them, and a
    tuple is built, hashed and compared in C (a frozen dataclass sets each field in Python)."""

    __slots__ = ()

    def __new__(cls, key: ResourceKey, spec: Any, app: str = "", owned: bool = True) -> "Resource":
        return tuple.__new__(cls, (key, freeze(spec), app, owned))

    def to_json(self) -> dict:
        return {"key": str(self.key), "app": self.app, "owned": self.owned, "spec": thaw(self.spec)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "Resource":
        return cls(ResourceKey.parse(data["key"]), data.get("spec", {}), data.get("app", ""),
                   bool(data.get("owned", True)))


_ABSENT = object()

# A stage that builds at least this many objects with the collector off settles them (below).
SETTLE_AFTER = 50_000


def settle_young_objects() -> None:
    """Move every object the collector tracks into its oldest generation, in O(1).

    Compile and plan build millions of long-lived, cycle-free objects with the collector off.
    Left in the young generation, the first collection after them would visit each (~1 us an
    object here: seconds at 100,000 apps), charged to whoever allocates next. `gc.freeze()` and
    `gc.unfreeze()` move them as two list splices; cyclic garbage among them is still collected
    by the next full collection. Skipped when the process froze objects on purpose (pre-fork)."""
    if gc.get_freeze_count() == 0:
        gc.freeze()
        gc.unfreeze()


class _Sharded(Mapping):
    """What the two persistent maps below share: entries in plain dicts (`_parts`), never
    written once published, read at dict speed in bulk."""

    __slots__ = ()
    _len: int

    def _parts(self) -> Iterable[dict]:
        raise NotImplementedError

    def __iter__(self) -> Iterator:
        return itertools.chain.from_iterable(self._parts())

    def __len__(self) -> int:
        return self._len

    def items(self) -> ItemsView:
        return _Items(self)

    def values(self) -> ValuesView:
        return _Values(self)

    def to_dict(self) -> dict:
        """A plain dict copy, built part by part at C speed (for bulk work over the whole map)."""
        out: dict = {}
        for part in self._parts():
            out.update(part)
        return out

    def __eq__(self, other: object) -> bool:
        if isinstance(other, _Sharded):
            return self._len == other._len and self.to_dict() == other.to_dict()
        if isinstance(other, Mapping):
            return self._len == len(other) and self.to_dict() == (other if isinstance(other, dict) else dict(other))
        return NotImplemented

    def __hash__(self) -> int:
        h = getattr(self, "_hash", None)
        if h is None:
            h = hash(frozenset(self.items()))
            object.__setattr__(self, "_hash", h)
        return h

    def __reduce__(self):  # pickling rebuilds the parts (hashes differ between processes)
        return (type(self), (self.to_dict(),))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.to_dict()!r})"


class _Items(ItemsView):
    def __iter__(self) -> Iterator:
        return itertools.chain.from_iterable(p.items() for p in self._mapping._parts())  # type: ignore[attr-defined]


class _Values(ValuesView):
    def __iter__(self) -> Iterator:
        return itertools.chain.from_iterable(p.values() for p in self._mapping._parts())  # type: ignore[attr-defined]


class PersistentMap(_Sharded):
    """An immutable mapping that shares structure with the maps it was derived from.

    Entries live in 2^k shards by hash. `evolve(drop, put)` returns a new map that copies the
    shards it touches and shares all others, so deriving a map costs O(changed keys x shard
    size) instead of O(size). Lookups cost one more indexing than a dict's. Iteration order
    is by shard, not by insertion.
    """

    __slots__ = ("_shards", "_mask", "_len", "_hash")
    SHARD = 256  # entries per shard when built; a map is rebuilt with more shards at 4x that

    def __init__(self, items: Mapping | Iterable[tuple[Any, Any]] = ()) -> None:
        d = dict(items)
        shards: list[dict] = [{} for _ in range(self.shard_count(len(d)))]
        mask = len(shards) - 1
        for k, v in d.items():
            shards[hash(k) & mask][k] = v
        self._shards, self._mask, self._len = shards, mask, len(d)

    @classmethod
    def shard_count(cls, n: int) -> int:
        """Shards for a map of `n` entries (a power of two)."""
        return 1 << max(0, (n // cls.SHARD).bit_length())

    @classmethod
    def _of(cls, shards: list[dict], n: int) -> "PersistentMap":
        m = cls.__new__(cls)
        m._shards, m._mask, m._len = shards, len(shards) - 1, n
        return m

    def _parts(self) -> Iterable[dict]:
        return self._shards

    def __getitem__(self, key: Any) -> Any:
        return self._shards[hash(key) & self._mask][key]

    def get(self, key: Any, default: Any = None) -> Any:
        return self._shards[hash(key) & self._mask].get(key, default)

    def __contains__(self, key: object) -> bool:
        return key in self._shards[hash(key) & self._mask]

    def evolve(self, drop: Iterable = (), put: Mapping | Iterable[tuple[Any, Any]] = ()) -> "PersistentMap":
        """A new map without the keys in `drop`, then with the pairs of `put`; self is unchanged."""
        shards, mask = self._shards, self._mask
        copied, n = _evolve_parts(lambda k: hash(k) & mask, shards.__getitem__, self._len, drop, put)
        if not copied:
            return self
        shards = list(shards)
        for i, s in copied.items():
            shards[i] = s
        if n > 4 * self.SHARD * len(shards):
            return PersistentMap(itertools.chain.from_iterable(s.items() for s in shards))
        return self._of(shards, n)


def _evolve_parts(part_of, part, n: int, drop: Iterable, put: Mapping | Iterable[tuple[Any, Any]]) -> tuple[dict, int]:
    """Copies of the parts `drop` and `put` touch, written ({part id: dict}), and the new size."""
    copied: dict = {}
    for k in drop:
        i = part_of(k)
        s = copied.get(i)
        if s is None:
            src = part(i)
            if src is None or k not in src:
                continue
            s = copied[i] = dict(src)
        if s.pop(k, _ABSENT) is not _ABSENT:
            n -= 1
    for k, v in (put.items() if isinstance(put, Mapping) else put):
        i = part_of(k)
        s = copied.get(i)
        if s is None:
            s = copied[i] = dict(part(i) or ())
        n += k not in s
        s[k] = v
    return copied, n


def _group_of(key: tuple) -> tuple:
    return (key[0], key[1])


class ResourceIndex(_Sharded):
    """key -> Resource, grouped by target `(layer, target)`: the persistent map of States.

    Each target's resources are one plain dict, never written once published, and the targets
    are a `PersistentMap`: `evolve(drop, put)` copies the targets it touches (and their shards
    of the top level) and shares everything else, so compiling one changed app publishes a new
    desired state in O(its targets' resources). `groups` hands the per-target dicts out
    (read-only): a plan walks them target by target, in order; `State.for_target` is a lookup.
    """

    __slots__ = ("_groups", "_len", "_hash")
    _groups: PersistentMap  # (layer, target) -> {key: value}

    def __init__(self, items: Mapping | Iterable[tuple[ResourceKey, Any]] = ()) -> None:
        groups: dict[tuple, dict] = {}
        for k, v in (items.items() if isinstance(items, Mapping) else items):
            g = groups.get((k[0], k[1]))
            if g is None:
                g = groups[(k[0], k[1])] = {}
            g[k] = v
        self._groups, self._len = PersistentMap(groups), sum(map(len, groups.values()))

    @classmethod
    def from_groups(cls, groups: dict[tuple, dict] | PersistentMap, n: int) -> "ResourceIndex":
        """Adopt `groups` ({(layer, target): {key: value}}, `n` entries in all), built by the
        caller and never written again: a bulk build without a second pass."""
        m = cls.__new__(cls)
        m._groups, m._len = groups if isinstance(groups, PersistentMap) else PersistentMap(groups), n
        return m

    @property
    def groups(self) -> Mapping[tuple[Layer, str], Mapping[ResourceKey, Any]]:
        return self._groups

    def _parts(self) -> Iterable[dict]:
        return self._groups.values()

    def __getitem__(self, key: Any) -> Any:
        return self._groups[(key[0], key[1])][key]

    def get(self, key: Any, default: Any = None) -> Any:
        g = self._groups.get((key[0], key[1]))
        return default if g is None else g.get(key, default)

    def __contains__(self, key: object) -> bool:
        g = self._groups.get((key[0], key[1])) if isinstance(key, tuple) and len(key) == 4 else None
        return g is not None and key in g

    def evolve(self, drop: Iterable = (), put: Mapping | Iterable[tuple[Any, Any]] = ()) -> "ResourceIndex":
        """A new index without the keys in `drop`, then with the pairs of `put`; self is unchanged."""
        copied, n = _evolve_parts(_group_of, self._groups.get, self._len, drop, put)
        if not copied:
            return self
        groups = self._groups.evolve((t for t, g in copied.items() if not g), ((t, g) for t, g in copied.items() if g))
        return self.from_groups(groups, n)


@dataclass(frozen=True)
class State:
    """A set of resources indexed by key. Used for both desired and observed state."""

    resources: Mapping[ResourceKey, Resource] = field(default_factory=FrozenDict)

    @classmethod
    def of(cls, resources: Iterable[Resource]) -> "State":
        index: dict[ResourceKey, Resource] = {}
        for r in resources:
            if r.key in index:
                raise ValueError(f"duplicate resource key {r.key}")
            index[r.key] = r
        return cls(FrozenDict(index))

    def __iter__(self) -> Iterator[Resource]:
        return iter(self.resources.values())

    def __len__(self) -> int:
        return len(self.resources)

    def get(self, key: ResourceKey) -> Resource | None:
        return self.resources.get(key)

    @cached_property
    def by_app(self) -> Mapping[str, tuple[ResourceKey, ...]]:
        """app -> keys of its resources (computed once per state; compile hands it over ready)."""
        index: dict[str, list[ResourceKey]] = {}
        for k, r in self.resources.items():
            index.setdefault(r.app, []).append(k)
        return {a: tuple(v) for a, v in index.items()}

    @cached_property
    def groups(self) -> Mapping[tuple[Layer, str], Mapping[ResourceKey, Resource]]:
        """(layer, target) -> its resources (read-only; a ResourceIndex keeps them, other
        mappings are grouped once per state)."""
        res = self.resources
        return (res if isinstance(res, ResourceIndex) else ResourceIndex(res)).groups

    def for_apps(self, apps: Iterable[str]) -> "State":
        """The resources of `apps`: O(their resources) once `by_app` is known."""
        res, by_app = self.resources, self.by_app
        return State(FrozenDict((k, res[k]) for a in apps for k in by_app.get(a, ())))

    def targets(self) -> set[tuple[Layer, str]]:
        return set(self.groups)

    def for_target(self, layer: Layer, target: str) -> "State":
        return State(FrozenDict(self.groups.get((layer, target), ())))

    def to_json(self) -> list[dict]:
        return [self.resources[k].to_json() for k in sorted(self.resources, key=ResourceKey.sort_key)]

    @classmethod
    def from_json(cls, data: Iterable[Mapping[str, Any]]) -> "State":
        return cls.of(Resource.from_json(d) for d in data)

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=2, sort_keys=True)


class DesiredState(State):
    """What the intents want: the output of compile."""


class ObservedState(State):
    """What the drivers saw on the devices."""


# The default-deny resources: each application's nftables table on each of its hosts
# (`host/<host>/nft-table/netintent_<app>`, named by reconciler.compile.host.table_name), whose
# input chain drops whatever its rules do not allow. No ignore rule may keep one from being
# created: validate refuses a `create: false` rule whose key can match one of these patterns.
DEFAULT_DENY_KEYS: tuple[str, ...] = (f"host/*/nft-table/{OWNER}_*",)


class IgnoreRule(BaseModel):
    """State another tool owns on purpose: diff skips `paths` of resources matching `key`.

    `key` is an fnmatch pattern over `layer/target/kind/name`; `paths` are dotted field paths
    (`*` matches any one segment, list elements are addressed by index or `*`). No `paths`
    means the whole resource is ignored (neither updated nor pruned). A rule only concerns
    resources that exist on the device: a wanted resource that is missing is still created,
    unless the rule says `create: false`.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")
    key: str
    paths: tuple[str, ...] = ()
    create: bool = True
