"""plan: desired vs observed -> ordered changes (pure), plus its inverse check and renderers.

Contract:
- `make_plan(desired, observed, prune=False, ignore=())` pairs by key and returns a `Plan`:
  `changes` (create/update, and delete of owned orphans when `prune`) and `orphans`
  (owned resources nobody wants, reported but kept when not pruning). Creates/updates are
  ordered underlay first (switch, hypervisor, host, sidecar); deletes in reverse.
- `ignore` rules act on resources the device has: an update skips their paths (or the
  whole resource), an orphan matched by a whole-resource rule is neither pruned nor reported.
  A wanted resource that is missing is always created, unless a matching rule says
  `create: false` (validate refuses that for the default-deny tables, model.DEFAULT_DENY_KEYS).
- `apply_plan(plan, observed)` is the model of what a perfect driver does; the round-trip
  property `apply_plan(make_plan(d, o, prune=True), o) == d` (over owned resources) is tested.
- `render_text` / `to_json` are deterministic: same inputs, same bytes.
- Cost: one pass over each side and one small sort per target (plan walks desired target by
  target), so linear in resources; with `apps` (a re-plan after an incremental compile, over
  `Compiler.last_changed`) it follows those apps' resources only, and equals the full plan
  when observed is the previous desired state (tested as a property).
"""
from __future__ import annotations

import gc
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Iterable, NamedTuple, Sequence

from reconciler.diff import FieldDiff, Pair, creation_suppressed, diff_pair, ignored_paths
from reconciler.model import (
    SETTLE_AFTER,
    FrozenDict,
    IgnoreRule,
    Layer,
    PersistentMap,
    Resource,
    ResourceIndex,
    ResourceKey,
    State,
    settle_young_objects,
)
from reconciler.status import Action


class Change(NamedTuple):
    """One create, update or delete. A named tuple: a full plan holds one per resource (millions)."""

    key: ResourceKey
    action: Action
    app: str
    desired: Resource | None = None
    observed: Resource | None = None
    diffs: tuple[FieldDiff, ...] = ()

    def to_json(self) -> dict:
        d: dict[str, Any] = {"key": str(self.key), "action": self.action.value, "app": self.app,
                             "layer": self.key.layer.value, "target": self.key.target,
                             "kind": self.key.kind, "name": self.key.name}
        if self.action is Action.UPDATE:
            d["diff"] = [f.to_json() for f in self.diffs]
        elif self.action is Action.CREATE and self.desired is not None:
            d["desired"] = self.desired.to_json()["spec"]
        elif self.observed is not None:
            d["observed"] = self.observed.to_json()["spec"]
        return d


@dataclass(frozen=True)
class Plan:
    changes: tuple[Change, ...] = ()
    orphans: tuple[Change, ...] = ()   # prune candidates kept because prune is off
    prune: bool = False

    @property
    def empty(self) -> bool:
        return not self.changes

    @property
    def drift(self) -> tuple[Change, ...]:
        """Everything that differs, executed or not."""
        return self.changes + self.orphans

    def apps(self) -> list[str]:
        return sorted(self._by_app)

    @cached_property
    def _by_app(self) -> dict[str, tuple[list[Change], list[Change]]]:
        out: dict[str, tuple[list[Change], list[Change]]] = {}
        for i, part in enumerate((self.changes, self.orphans)):
            for c in part:
                out.setdefault(c.app, ([], []))[i].append(c)
        return out

    @cached_property
    def _by_target(self) -> dict[tuple[Layer, str], list[Change]]:
        out: dict[tuple[Layer, str], list[Change]] = {}
        for c in self.changes:
            out.setdefault((c.key[0], c.key[1]), []).append(c)
        return out

    def for_target(self, layer: Layer, target: str) -> tuple[Change, ...]:
        return tuple(self._by_target.get((layer, target), ()))

    def for_app(self, app: str) -> "Plan":
        """The part of the plan for `app` (indexed once per plan: O(its changes) per call)."""
        changes, orphans = self._by_app.get(app, ((), ()))
        return Plan(tuple(changes), tuple(orphans), self.prune)

    def counts(self) -> dict[str, int]:
        out = {a.value: 0 for a in Action}
        for c in self.changes:
            out[c.action.value] += 1
        out["orphan"] = len(self.orphans)
        return out

    def to_json(self) -> dict:
        return {"summary": self.counts(), "prune": self.prune,
                "changes": [c.to_json() for c in self.changes],
                "orphans": [c.to_json() for c in self.orphans]}


_new_change = tuple.__new__  # Change((...)) without the Python-level __new__ of a named tuple
_CREATE, _UPDATE, _DELETE = Action.CREATE, Action.UPDATE, Action.DELETE


def make_plan(desired: State, observed: State, prune: bool = False,
              ignore: Sequence[IgnoreRule] = (), apps: Iterable[str] | None = None) -> Plan:
    """`apps` restricts the plan to those applications' resources (incremental re-plan:
    the cost follows the change, not the size of the estate)."""
    gc_was_enabled = gc.isenabled()
    gc.disable()  # builds many small cycle-free objects; full-heap GC passes only cost time
    try:
        if apps is not None:
            apps = list(apps)
            desired, observed = desired.for_apps(apps), observed.for_apps(apps)
        plan = _make_plan(desired, observed, prune, tuple(ignore))
        if len(plan.changes) + len(plan.orphans) >= SETTLE_AFTER:
            settle_young_objects()
        return plan
    finally:
        if gc_was_enabled:
            gc.enable()


def _create_order(item: tuple[tuple[Layer, str], Any]) -> tuple[int, str]:
    return (item[0][0].create_rank, item[0][1])  # underlay first, then by target


def _prune_order(item: tuple[tuple[Layer, str], Any]) -> tuple[int, str]:
    return (item[0][0].prune_rank, item[0][1])  # overlay first, then by target


def _key_text(c: Change) -> str:
    # Orders like the key tuple (NUL sorts before any character of a name), compared faster.
    return "\0".join(c[0])


def _make_plan(desired: State, observed: State, prune: bool, ignore: tuple[IgnoreRule, ...]) -> Plan:
    """Target by target in plan order, so the changes come out ordered with one small sort per
    target (by kind, then name) and each target's resources are visited together; observed is
    looked up by key in one flat dict."""
    obs = observed.resources
    if not isinstance(obs, dict):
        obs = obs.to_dict() if isinstance(obs, (PersistentMap, ResourceIndex)) else dict(obs.items())
    oget, paired, in_sync = obs.get, 0, obs.items()
    changes: list[Change] = []
    for _, group in sorted(desired.groups.items(), key=_create_order):
        if group.items() <= in_sync:  # every resource of the target observed as wanted (checked in C)
            paired += len(group)
            continue
        found: list[Change] = []
        for key, d in group.items():
            o = oget(key)
            if o is None:
                if not ignore or not creation_suppressed(key, ignore):  # only `create: false` keeps it missing
                    found.append(_new_change(Change, (key, _CREATE, d.app, d, None, ())))
                continue
            paired += 1
            if d.spec is not o.spec:
                diffs = diff_pair(Pair(key, d, o), ignore)
                if diffs:
                    found.append(_new_change(Change, (key, _UPDATE, d.app, d, o, tuple(diffs))))
        found.sort(key=_key_text)
        changes.extend(found)
    deletes = _deletes(desired, obs, ignore) if paired < len(obs) else []
    orphans: list[Change] = []
    (changes if prune else orphans).extend(deletes)
    return Plan(tuple(changes), tuple(orphans), prune)


def _deletes(desired: State, obs: dict, ignore: tuple[IgnoreRule, ...]) -> list[Change]:
    """Owned observed resources nobody wants (unowned ones are never touched), in prune order."""
    dgroups = desired.groups
    by_target: dict[tuple[Layer, str], list[Change]] = {}
    for key, o in obs.items():
        g = dgroups.get((key[0], key[1]))
        if (g is None or key not in g) and o.owned:
            if ignore and ignored_paths(key, ignore) is None:
                continue
            by_target.setdefault((key[0], key[1]), []).append(_new_change(Change, (key, _DELETE, o.app, None, o, ())))
    out: list[Change] = []
    for _, found in sorted(by_target.items(), key=_prune_order):
        out.extend(sorted(found, key=_key_text))
    return out


def apply_plan(plan: Plan, observed: State) -> State:
    """What observed looks like after a perfect apply of `plan` (a model, for tests)."""
    index = dict(observed.resources.items())
    for c in plan.changes:
        if c.action is Action.DELETE:
            index.pop(c.key, None)
        else:
            assert c.desired is not None
            index[c.key] = c.desired
    return State(FrozenDict(index))


# ---- rendering --------------------------------------------------------------------------
_COLOURS = {"+": "\x1b[32m", "-": "\x1b[31m", "~": "\x1b[33m", "@": "\x1b[36m", "#": "\x1b[1m"}
_RESET = "\x1b[0m"


def render_lines(plan: Plan) -> list[tuple[str, str]]:
    """(style, text) lines grouped by application, then layer and target."""
    out: list[tuple[str, str]] = []
    by_app: dict[str, list[tuple[Change, bool]]] = {}
    for c in plan.changes:
        by_app.setdefault(c.app, []).append((c, True))
    for c in plan.orphans:
        by_app.setdefault(c.app, []).append((c, False))
    for app in sorted(by_app):
        items = by_app[app]
        out.append(("#", f"application {app or '(fabric)'}: {len(items)} change(s)"))
        groups: dict[tuple[int, str, str], list[tuple[Change, bool]]] = {}
        for c, executed in items:
            groups.setdefault((c.key.layer.create_rank, c.key.layer.value, c.key.target), []).append((c, executed))
        for (_, layer, target) in sorted(groups):
            out.append(("@", f"@@ {layer} {target} @@"))
            for c, executed in sorted(groups[(_, layer, target)], key=lambda t: (t[0].key.kind, t[0].key.name)):
                label = f"{c.key.kind} {c.key.name}"
                if c.action is Action.CREATE:
                    out.append(("+", f"+ {label}"))
                elif c.action is Action.DELETE:
                    note = "" if executed else "  (not wanted by any intent; kept, use --prune)"
                    out.append(("-", f"- {label}{note}"))
                else:
                    out.append(("~", f"~ {label}"))
                    for d in c.diffs:
                        for sign, text in d.lines():
                            out.append((sign, f"    {sign} {text}"))
    return out


def render_text(plan: Plan, colour: bool = False) -> str:
    lines = render_lines(plan)
    if not lines:
        return "No changes: observed state matches the intents.\n"
    counts = plan.counts()
    summary = (f"Plan: {counts['create']} to create, {counts['update']} to update, "
               f"{counts['delete']} to delete, {counts['orphan']} orphaned (kept).")
    body = []
    for style, text in lines:
        body.append(f"{_COLOURS[style]}{text}{_RESET}" if colour else text)
    return "\n".join(body + [summary]) + "\n"
