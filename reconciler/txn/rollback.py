"""Rollback runs of a transaction: the journalled pre-state put back in REVERSE layer order.

Contract: `rollback_runs(engine, owned, targets, ignore, label)` restores `owned` (the pre-state's
owned resources) with prune on `targets` and returns the engine's run reports, one per group of
layers, in the order they ran, and the targets found at their pre-state already (no run).
Every write of layer L happens before any write of a layer below it (sidecar, host, hypervisor,
switch — creations, updates and deletes alike), so every state the network passes through while
rolling back is one it already passed through while applying.
How, at the cost of one observation:
- every layer to restore is observed ONCE, in parallel (fused where the drivers fuse), except the
  targets in `known` (a rollback right after a failed apply: the state each written target's
  driver read back after its last write in this process, `Engine.readbacks`), and that
  observation is what each run starts from (`_primed`: the engine's first `observe` of a run is
  answered from it; the drivers' read-back and later attempts are the engine's own). Devices of
  one layer are not written by the runs of another, so the observation stays true;
- a layer with nothing to restore gets no run;
- a run holds one layer with creations or updates and below it only layers that just delete:
  the engine writes creations/updates in layer order, then deletes in reverse, so within such a
  run the order is still top layer first, then downwards.
"""
from __future__ import annotations

import contextlib
import time
import uuid
from typing import Any, Callable, Iterator, Mapping, Sequence

from reconciler.drivers.base import Observation, Target
from reconciler.engine import Engine
from reconciler.model import FrozenDict, IgnoreRule, Layer, ObservedState, Resource, State
from reconciler.plan import make_plan
from reconciler.report import RunReport
from reconciler.status import Action, Outcome

TargetId = tuple[Layer, str]


def layer_groups(plan_actions: Mapping[Layer, set[Action]]) -> list[list[Layer]]:
    """Layers to restore, grouped into runs, top layer first (see the module contract)."""
    groups: list[list[Layer]] = []
    for layer in reversed(Layer.ordered()):
        acts = plan_actions.get(layer)
        if not acts:
            continue
        if groups and acts <= {Action.DELETE}:
            groups[-1].append(layer)        # deletes only: the engine deletes downwards after the top layer
        else:
            groups.append([layer])
    return groups


@contextlib.contextmanager
def _primed(engine: Engine, observed: State, results: Mapping[TargetId, Observation]) -> Iterator[None]:
    """The engine's next `observe` of targets all in `results` is answered from them, once."""
    real = engine.observe

    def observe(targets: Mapping[Layer, Sequence[Target]], run_id: str = "") -> Any:
        engine.__dict__.pop("observe", None)   # once: later attempts observe the devices again
        keys = {(l, t.name) for l, ts in targets.items() for t in ts}
        if not keys <= results.keys():
            return real(targets, run_id)
        mine = {k: r for k, r in observed.resources.items() if (k.layer, k.target) in keys}
        return ObservedState(FrozenDict(mine)), {k: o for k, o in results.items() if k in keys}
    engine.observe = observe                # type: ignore[method-assign]
    try:
        yield
    finally:
        engine.__dict__.pop("observe", None)


def _observe_once(engine: Engine, targets: Mapping[Layer, Sequence[Target]],
                  known: Mapping[TargetId, Sequence[Resource]]) -> tuple[State, dict[TargetId, Observation]]:
    """One observation of `targets`; a target in `known` is taken from it instead of observed."""
    rest = {l: [t for t in ts if (l, t.name) not in known] for l, ts in targets.items()}
    rest = {l: ts for l, ts in rest.items() if ts}
    observed, results = engine.observe(rest) if rest else (ObservedState(), {})
    index = dict(observed.resources)
    results = dict(results)
    for l, ts in targets.items():
        for t in ts:
            if (l, t.name) in known:
                index.update({r.key: r for r in known[(l, t.name)]})
                results[(l, t.name)] = Observation(t.name, Outcome.NOOP)
    return ObservedState(FrozenDict(index)), results


def rollback_runs(engine: Engine, owned: State, targets: Mapping[Layer, Sequence[Target]],
                  ignore: Sequence[IgnoreRule], label: str,
                  timing: Callable[[str, float], None] = lambda step, secs: None,
                  known: Mapping[TargetId, Sequence[Resource]] | None = None,
                  ) -> tuple[list[RunReport], set[TargetId]]:
    """(the runs, the targets observed already at their pre-state: no run needed)."""
    observed, results = _observe_once(engine, targets, known or {})
    ok = {k for k, o in results.items() if o.ok}
    plan = make_plan(owned, ObservedState(FrozenDict({k: r for k, r in observed.resources.items()
                                                      if (k.layer, k.target) in ok})), True, ignore)
    actions: dict[Layer, set[Action]] = {}
    for c in plan.changes:
        actions.setdefault(c.key.layer, set()).add(c.action)
    for k in results.keys() - ok:           # not observed: its run reports it unreachable
        actions.setdefault(k[0], set()).add(Action.UPDATE)
    runs = []
    for group in layer_groups(actions):
        t0 = time.monotonic()
        mine = State(FrozenDict({k: r for k, r in owned.resources.items() if k.layer in group}))
        with _primed(engine, observed, results):
            runs.append(engine.run(mine, {l: list(targets[l]) for l in group}, prune=True, ignore=ignore,
                                   trigger="txn-rollback", revision=label, run_id=f"rb{uuid.uuid4().hex[:10]}"))
        timing("rollback." + "+".join(l.value for l in group), time.monotonic() - t0)
    return runs, ok - {(c.key.layer, c.key.target) for c in plan.changes}
