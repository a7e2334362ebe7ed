"""Typed values shared by every pipeline stage.

Contract: everything here is immutable and free of I/O. A `Resource` is one unit of
desired or observed state, identified by a `ResourceKey(layer, target, kind, name)` and
tagged with the application that wants it. `spec` is a JSON-compatible value frozen with
`freeze()` (dicts become `FrozenDict`, lists become tuples) so resources can be shared,
hashed and compared without defensive copies; `thaw()` gives back plain JSON values.
`IgnoreRule` (from reconciler.yaml) tells diff which state another tool owns;
`DEFAULT_DENY_KEYS` names the resources no rule may keep from being created.
"""
from __future__ import annotations

import enum
import json
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Iterable, Iterator, Mapping

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
        return _LAYER_ORDER.index(self)

    @property
    def prune_rank(self) -> int:
        # Prune overlay before underlay: the reverse of creation.
        return len(_LAYER_ORDER) - 1 - self.create_rank

    @classmethod
    def ordered(cls) -> tuple["Layer", ...]:
        return tuple(_LAYER_ORDER)


_LAYER_ORDER = [Layer.SWITCH, Layer.HYPERVISOR, Layer.HOST, Layer.SIDECAR]


class FrozenDict(dict):
    """A dict that refuses mutation and hashes by content. Serialises as a plain dict."""

    __slots__ = ("_hash",)

    def _immutable(self, *_a: Any, **_k: Any) -> None:
        raise TypeError("FrozenDict is immutable")

    __setitem__ = __delitem__ = clear = pop = popitem = setdefault = update = _immutable  # type: ignore[assignment]

    def __hash__(self) -> int:  # type: ignore[override]
        try:
            return self._hash
        except AttributeError:
            h = hash(tuple(sorted(self.items(), key=lambda kv: kv[0])))
            self._hash = h  # type: ignore[misc]
            return h

    def __reduce__(self):  # pickling (multiprocessing) keeps the type
        return (FrozenDict, (dict(self),))


def freeze(value: Any) -> Any:
    """Turn a JSON-compatible value into an immutable, hashable one."""
    if isinstance(value, FrozenDict):
        return value
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


@dataclass(frozen=True, order=True, slots=True)
class ResourceKey:
    layer: Layer
    target: str
    kind: str
    name: str

    def __str__(self) -> str:
        return f"{self.layer.value}/{self.target}/{self.kind}/{self.name}"

    @classmethod
    def parse(cls, text: str) -> "ResourceKey":
        layer, target, kind, name = text.split("/", 3)
        return cls(Layer(layer), target, kind, name)

    def sort_key(self) -> tuple:
        return (self.layer.create_rank, self.target, self.kind, self.name)


@dataclass(frozen=True, slots=True)
class Resource:
    """One unit of state. `app` is the owning application ('' when unknown/unowned)."""

    key: ResourceKey
    spec: Any
    app: str = ""
    # False for state found on a device that the reconciler did not create: never touched.
    owned: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "spec", freeze(self.spec))

    def to_json(self) -> dict:
        return {"key": str(self.key), "app": self.app, "owned": self.owned, "spec": thaw(self.spec)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "Resource":
        return cls(ResourceKey.parse(data["key"]), data.get("spec", {}), data.get("app", ""),
                   bool(data.get("owned", True)))


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
        """app -> keys of its resources (computed once per state)."""
        index: dict[str, list[ResourceKey]] = {}
        for k, r in self.resources.items():
            index.setdefault(r.app, []).append(k)
        return {a: tuple(v) for a, v in index.items()}

    def for_apps(self, apps: Iterable[str]) -> "State":
        return State(FrozenDict((k, self.resources[k]) for a in apps for k in self.by_app.get(a, ())))

    def targets(self) -> set[tuple[Layer, str]]:
        return {(k.layer, k.target) for k in self.resources}

    def for_target(self, layer: Layer, target: str) -> "State":
        return State(FrozenDict((k, r) for k, r in self.resources.items()
                                if k.layer == layer and k.target == target))

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
