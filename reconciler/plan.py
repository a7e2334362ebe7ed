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
"""
from __future__ import annotations

import gc
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

from reconciler.diff import FieldDiff, creation_suppressed, diff_pair, ignored_paths, pair
from reconciler.model import FrozenDict, IgnoreRule, Layer, Resource, ResourceKey, State
from reconciler.status import Action


@dataclass(frozen=True)
class Change:
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
        return sorted({c.app for c in self.drift})

    def for_target(self, layer: Layer, target: str) -> tuple[Change, ...]:
        return tuple(c for c in self.changes if c.key.layer == layer and c.key.target == target)

    def for_app(self, app: str) -> "Plan":
        return Plan(tuple(c for c in self.changes if c.app == app),
                    tuple(c for c in self.orphans if c.app == app), self.prune)

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


def _order(changes: Iterable[Change]) -> tuple[Change, ...]:
    def rank(c: Change) -> tuple:
        if c.action is Action.DELETE:
            return (1, c.key.layer.prune_rank, c.key.target, c.key.kind, c.key.name)
        return (0, c.key.layer.create_rank, c.key.target, c.key.kind, c.key.name)
    return tuple(sorted(changes, key=rank))


def make_plan(desired: State, observed: State, prune: bool = False,
              ignore: Sequence[IgnoreRule] = (), apps: Iterable[str] | None = None) -> Plan:
    """`apps` restricts the plan to those applications' resources (incremental re-plan:
    the cost follows the change, not the size of the estate)."""
    if apps is not None:
        apps = list(apps)
        desired, observed = desired.for_apps(apps), observed.for_apps(apps)
    gc_was_enabled = gc.isenabled()
    gc.disable()  # builds many small cycle-free objects; full-heap GC passes only cost time
    try:
        return _make_plan(desired, observed, prune, ignore)
    finally:
        if gc_was_enabled:
            gc.enable()


def _make_plan(desired: State, observed: State, prune: bool, ignore: Sequence[IgnoreRule]) -> Plan:
    changes: list[Change] = []
    orphans: list[Change] = []
    for p in pair(desired, observed):
        if p.desired is not None and p.observed is None:
            if creation_suppressed(p.key, ignore):
                continue  # only an explicit `create: false` keeps a wanted resource missing
            changes.append(Change(p.key, Action.CREATE, p.desired.app, p.desired, None))
        elif p.desired is None and p.observed is not None:
            if ignored_paths(p.key, ignore) is None:
                continue
            c = Change(p.key, Action.DELETE, p.observed.app, None, p.observed)
            (changes if prune else orphans).append(c)
        else:
            diffs = diff_pair(p, ignore)
            if diffs:
                changes.append(Change(p.key, Action.UPDATE, p.desired.app, p.desired, p.observed,  # type: ignore[union-attr]
                                      tuple(diffs)))
    return Plan(_order(changes), _order(orphans), prune)


def apply_plan(plan: Plan, observed: State) -> State:
    """What observed looks like after a perfect apply of `plan` (a model, for tests)."""
    index = dict(observed.resources)
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
