"""pair + normalize + diff: desired vs observed, resource by resource (pure).

Contract:
- `pair(desired, observed)` matches resources by `ResourceKey`, never by position. A key
  only on the desired side is a create; only on the observed side a prune candidate (if
  owned; unowned state is left out entirely, it is never touched).
- Normalizers (gitops-engine's pattern): a `Normalizer` is data — per kind, the top-level
  fields drivers report that carry no intent (`volatile`: counters, handles, ids), and the
  list fields whose order carries no meaning (`set_fields`). `COMMON` holds what any driver
  may report; each layer's compile module declares its own (`NORMALIZER`) and
  reconciler.compile registers it here with `register_normalizer(layer, n)` when it is
  imported (this module never imports compile; every entry point that plans imports it: cli,
  daemon, revision). `normalizer(layer)` is COMMON merged with the layer's (COMMON alone for a
  layer nothing was registered for). The functions below are pure given that registry, which
  is only written at import time.
- `normalize_spec(key, spec, extra_paths)` strips the key's volatile fields and the field
  paths that `ignore` rules give for that key, on both sides alike.
- `diff_specs(desired, observed, set_fields=None)` returns `FieldDiff`s by dotted path.
  Mappings are compared key by key; lists of scalars as sets when the field is a set and
  element by element (by index) otherwise, so one changed rule or one missing set element is
  named. Without `set_fields` every registered layer's set fields count (callers without a key).
- Ignore rules (`IgnoreRule`) act on resources that exist: `ignored_paths` gives the paths to
  skip in an update (None: the whole resource, updates and prunes alike). Only a rule with
  `create: false` keeps a missing resource from being created (`creation_suppressed`).
"""
from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Mapping, Sequence

from reconciler.model import FrozenDict, IgnoreRule, Layer, Resource, ResourceKey, State


@dataclass(frozen=True)
class Normalizer:
    """What a layer's drivers report beyond the intent, as data.

    `volatile`: kind -> top-level spec fields that carry no intent (`"*"`: every kind);
    `set_fields`: names of list fields whose order carries no meaning (diff reports the
    elements added and removed). `a | b` merges two normalizers.
    """

    volatile: Mapping[str, tuple[str, ...]] = FrozenDict()
    set_fields: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        object.__setattr__(self, "volatile", FrozenDict((k, tuple(v)) for k, v in self.volatile.items()))
        object.__setattr__(self, "set_fields", frozenset(self.set_fields))

    def volatile_of(self, kind: str) -> frozenset[str]:
        return frozenset(self.volatile.get("*", ()) + self.volatile.get(kind, ()))

    def __or__(self, other: "Normalizer") -> "Normalizer":
        kinds = sorted(self.volatile.keys() | other.volatile.keys())
        volatile = {k: tuple(dict.fromkeys(self.volatile.get(k, ()) + other.volatile.get(k, ()))) for k in kinds}
        return Normalizer(volatile, self.set_fields | other.set_fields)


# Fields any driver (or a snapshot file) may report that carry no intent: ids, timestamps.
COMMON = Normalizer(volatile={"*": ("uuid", "last_updated")})


class _Registry:
    """Layer -> Normalizer, written by reconciler.compile at import; lookups are cached."""

    def __init__(self) -> None:
        self.layers: dict[Layer, Normalizer] = {}
        self._effective: dict[Layer, Normalizer] = {}
        self._volatile: dict[tuple[Layer, str], frozenset[str]] = {}
        self._all_sets: frozenset[str] | None = None

    def register(self, layer: Layer, normalizer: Normalizer) -> None:
        self.layers[layer] = normalizer
        self._effective.clear()
        self._volatile.clear()
        self._all_sets = None

    def normalizer(self, layer: Layer) -> Normalizer:
        n = self._effective.get(layer)
        if n is None:
            n = self._effective[layer] = COMMON | self.layers.get(layer, Normalizer())
        return n

    def volatile(self, layer: Layer, kind: str) -> frozenset[str]:
        v = self._volatile.get((layer, kind))
        if v is None:
            v = self._volatile[(layer, kind)] = self.normalizer(layer).volatile_of(kind)
        return v

    def all_set_fields(self) -> frozenset[str]:
        if self._all_sets is None:
            self._all_sets = COMMON.set_fields.union(*(n.set_fields for n in self.layers.values()))
        return self._all_sets


_REGISTRY = _Registry()


def register_normalizer(layer: Layer, normalizer: Normalizer) -> None:
    """Declare `layer`'s normalizer (replaces an earlier one). reconciler.compile does this once per layer."""
    _REGISTRY.register(layer, normalizer)


def normalizer(layer: Layer) -> Normalizer:
    """The normalizer diff applies to `layer`'s resources: COMMON merged with the registered one."""
    return _REGISTRY.normalizer(layer)


_MISSING = object()


@dataclass(frozen=True)
class FieldDiff:
    path: str
    desired: Any = None   # None with `added`/`removed` for set elements
    observed: Any = None
    added: tuple = ()     # set elements wanted but absent
    removed: tuple = ()   # set elements present but not wanted

    def lines(self) -> list[tuple[str, str]]:
        """(sign, text) pairs for human output: '-' observed, '+' desired."""
        if self.added or self.removed:
            return ([("-", f"{self.path}: {v}") for v in self.removed]
                    + [("+", f"{self.path}: {v}") for v in self.added])
        out = []
        if self.observed is not _MISSING and self.observed is not None:
            out.append(("-", f"{self.path}: {_fmt(self.observed)}"))
        if self.desired is not _MISSING and self.desired is not None:
            out.append(("+", f"{self.path}: {_fmt(self.desired)}"))
        return out

    def to_json(self) -> dict:
        d: dict[str, Any] = {"path": self.path}
        if self.added or self.removed:
            d["added"] = list(self.added)
            d["removed"] = list(self.removed)
        else:
            d["desired"] = None if self.desired is _MISSING else _plain(self.desired)
            d["observed"] = None if self.observed is _MISSING else _plain(self.observed)
        return d


def _plain(v: Any) -> Any:
    if isinstance(v, Mapping):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, tuple):
        return [_plain(x) for x in v]
    return v


def _fmt(v: Any) -> str:
    import json
    if isinstance(v, (Mapping, tuple)):
        return json.dumps(_plain(v), sort_keys=True, separators=(", ", ": "))
    return json.dumps(v) if isinstance(v, str) else str(v)


@dataclass(frozen=True)
class Pair:
    key: ResourceKey
    desired: Resource | None
    observed: Resource | None

    @property
    def app(self) -> str:
        return (self.desired or self.observed).app  # type: ignore[union-attr]


def pair(desired: State, observed: State) -> Iterator[Pair]:
    d, o = desired.resources, observed.resources
    for key in sorted(d.keys() | o.keys(), key=ResourceKey.sort_key):
        dr, orr = d.get(key), o.get(key)
        if dr is None and orr is not None and not orr.owned:
            continue  # not ours and not wanted: never touched, never reported
        yield Pair(key, dr, orr)


# ---- normalisation ---------------------------------------------------------------------
def _drop_path(value: Any, parts: Sequence[str]) -> Any:
    if not parts:
        return _MISSING
    head, rest = parts[0], parts[1:]
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            if fnmatch.fnmatchcase(k, head):
                nv = _drop_path(v, rest)
                if nv is not _MISSING:
                    out[k] = nv
            else:
                out[k] = v
        return FrozenDict(out)
    if isinstance(value, tuple):
        items = []
        for i, v in enumerate(value):
            if head == "*" or head == str(i):
                nv = _drop_path(v, rest)
                if nv is not _MISSING:
                    items.append(nv)
            else:
                items.append(v)
        return tuple(items)
    return value


def ignored_paths(key: ResourceKey, ignore: Iterable[IgnoreRule]) -> tuple[str, ...] | None:
    """Paths to skip when diffing an existing `key`; None when the whole resource is ignored
    (no update, no prune). Says nothing about creating a missing one: see `creation_suppressed`."""
    text = str(key)
    paths: list[str] = []
    for rule in ignore:
        if fnmatch.fnmatchcase(text, rule.key):
            if not rule.paths:
                return None
            paths.extend(rule.paths)
    return tuple(paths)


def creation_suppressed(key: ResourceKey, ignore: Iterable[IgnoreRule]) -> bool:
    """True when a rule matching `key` says `create: false`: a missing `key` is left missing.
    Ignore rules without it never keep a desired resource from being created."""
    text = str(key)
    return any(not rule.create and fnmatch.fnmatchcase(text, rule.key) for rule in ignore)


def normalize_spec(key: ResourceKey, spec: Any, extra_paths: Sequence[str] = ()) -> Any:
    volatile = _REGISTRY.volatile(key.layer, key.kind)
    if isinstance(spec, Mapping) and any(v in spec for v in volatile):
        spec = FrozenDict((k, v) for k, v in spec.items() if k not in volatile)
    for p in extra_paths:
        spec = _drop_path(spec, p.split("."))
    return spec


# ---- field diff -------------------------------------------------------------------------
def diff_specs(desired: Any, observed: Any, path: str = "", *,
               set_fields: frozenset[str] | None = None) -> list[FieldDiff]:
    """Field diffs; `set_fields` names the set-valued lists (default: every layer's)."""
    if set_fields is None:
        set_fields = _REGISTRY.all_set_fields()
    return _diff(desired, observed, path, set_fields)


def _diff(desired: Any, observed: Any, path: str, set_fields: frozenset[str]) -> list[FieldDiff]:
    if desired == observed:
        return []
    if isinstance(desired, Mapping) and isinstance(observed, Mapping):
        out: list[FieldDiff] = []
        for k in sorted(desired.keys() | observed.keys()):
            sub = f"{path}.{k}" if path else k
            dv, ov = desired.get(k, _MISSING), observed.get(k, _MISSING)
            if dv is _MISSING or ov is _MISSING:
                out.append(FieldDiff(sub, dv, ov))
            else:
                out.extend(_diff(dv, ov, sub, set_fields))
        return out
    if isinstance(desired, tuple) and isinstance(observed, tuple):
        leaf = path.rsplit(".", 1)[-1]
        if leaf in set_fields and all(not isinstance(x, (Mapping, tuple)) for x in desired + observed):
            ds, os_ = set(desired), set(observed)
            return [FieldDiff(path, added=tuple(sorted(ds - os_, key=str)),
                              removed=tuple(sorted(os_ - ds, key=str)))]
        out = []
        for i in range(max(len(desired), len(observed))):
            sub = f"{path}[{i}]"
            dv = desired[i] if i < len(desired) else _MISSING
            ov = observed[i] if i < len(observed) else _MISSING
            if dv is _MISSING or ov is _MISSING:
                out.append(FieldDiff(sub, dv, ov))
            else:
                out.extend(_diff(dv, ov, sub, set_fields))
        return out
    return [FieldDiff(path or "spec", desired, observed)]


def diff_pair(p: Pair, ignore: Sequence[IgnoreRule] = ()) -> list[FieldDiff] | None:
    """Field diffs of an update; [] when equal after normalisation; None when ignored."""
    assert p.desired is not None and p.observed is not None
    if p.desired.spec is p.observed.spec:
        return []
    paths = ignored_paths(p.key, ignore)
    if paths is None:
        return None
    return _diff(normalize_spec(p.key, p.desired.spec, paths), normalize_spec(p.key, p.observed.spec, paths), "",
                 _REGISTRY.normalizer(p.key.layer).set_fields)
