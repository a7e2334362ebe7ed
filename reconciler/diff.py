"""pair + normalize + diff: desired vs observed, resource by resource (pure).

Contract:
- `pair(desired, observed)` matches resources by `ResourceKey`, never by position. A key
  only on the desired side is a create; only on the observed side a prune candidate (if
  owned; unowned state is left out entirely, it is never touched).
- `normalize(resource, ignore)` strips volatile fields (per-kind table `VOLATILE`) and the
  field paths that `ignore` rules give for that key, on both sides alike.
- `diff_specs(desired, observed)` returns `FieldDiff`s by dotted path. Mappings are compared
  key by key; lists of scalars as sets when the field is a set (`SET_FIELDS`) and element by
  element (by index) otherwise, so one changed rule or one missing set element is named.
"""
from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Mapping, Sequence

from reconciler.model import FrozenDict, IgnoreRule, Resource, ResourceKey, State

# Fields drivers may report that carry no intent: counters, handles, ids, timestamps.
VOLATILE: Mapping[str, tuple[str, ...]] = {
    "*": ("uuid", "_uuid", "handle", "n_packets", "n_bytes", "duration", "idle_age", "hard_age",
          "last_updated", "version_info"),
}
# Lists whose order carries no meaning: diff reports added/removed elements.
SET_FIELDS = frozenset({"elements", "flood", "networks", "neighbors", "trunks", "ct_state"})

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
    """Paths to ignore for `key`; None when the whole resource is ignored."""
    text = str(key)
    paths: list[str] = []
    for rule in ignore:
        if fnmatch.fnmatchcase(text, rule.key):
            if not rule.paths:
                return None
            paths.extend(rule.paths)
    return tuple(paths)


def normalize_spec(key: ResourceKey, spec: Any, extra_paths: Sequence[str] = ()) -> Any:
    volatile = VOLATILE.get("*", ()) + VOLATILE.get(key.kind, ())
    if isinstance(spec, Mapping) and any(v in spec for v in volatile):
        spec = FrozenDict((k, v) for k, v in spec.items() if k not in volatile)
    for p in extra_paths:
        spec = _drop_path(spec, p.split("."))
    return spec


# ---- field diff -------------------------------------------------------------------------
def diff_specs(desired: Any, observed: Any, path: str = "") -> list[FieldDiff]:
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
                out.extend(diff_specs(dv, ov, sub))
        return out
    if isinstance(desired, tuple) and isinstance(observed, tuple):
        leaf = path.rsplit(".", 1)[-1]
        if leaf in SET_FIELDS and all(not isinstance(x, (Mapping, tuple)) for x in desired + observed):
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
                out.extend(diff_specs(dv, ov, sub))
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
    return diff_specs(normalize_spec(p.key, p.desired.spec, paths),
                      normalize_spec(p.key, p.observed.spec, paths))
