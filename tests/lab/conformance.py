"""Driver conformance suite: checks every driver must pass against the real component.

Contract: a driver's test module builds an *adapter* (below) around a lab it brought up and runs

    @pytest.mark.lab
    @pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__)
    def test_conformance(my_adapter, check):
        check(my_adapter)

CHECKS run in list order on one lab; every check after the first brings the targets to a known
state itself (through the driver, with the real planner `reconciler.plan.make_plan`, building
TargetPlans the way the engine does: changes per target, deletes only when pruning).

The adapter (duck-typed) provides:
  layer: Layer
  driver() -> Driver                   a new driver for the lab
  targets() -> list[Target]            >= 2 targets of the layer
  desired() -> State                   desired resources of the layer for those targets (>= 2 apps)
  drift(target) -> ResourceKey         change one owned resource by hand on the device
  make_unowned(target) -> None         create state by hand that the reconciler does not own
  unowned_present(target) -> bool      is that hand-made state still there (asked on the device)
  make_unreachable(target) / restore(target)   cut / restore the driver's transport to target
"""
from __future__ import annotations

from typing import Any, Callable, Iterable

from reconciler.drivers.base import Target, TargetPlan
from reconciler.model import Resource, State
from reconciler.plan import make_plan
from reconciler.status import Outcome


# ---------------------------------------------------------------------------- helpers
def observe(adapter: Any, driver: Any = None, targets: Iterable[Target] | None = None) -> dict:
    driver = driver or adapter.driver()
    return dict(driver.observe(list(targets or adapter.targets())))


def observed_state(obs: dict) -> State:
    return State.of(r for o in obs.values() if o.ok for r in o.resources)


def owned(resources: Iterable[Resource]) -> dict:
    return {r.key: r for r in resources if r.owned}


def plans(adapter: Any, desired: State, obs: dict, prune: bool, deletes_only: bool | None = None) -> list[TargetPlan]:
    """TargetPlans as the engine builds them for the layer (all changes of each target)."""
    layer = adapter.layer
    observed = observed_state(obs)
    plan = make_plan(desired, observed, prune=prune)
    out = []
    for t in adapter.targets():
        if not obs[t.name].ok:
            continue
        changes = tuple(c for c in plan.changes if c.key.layer == layer and c.key.target == t.name)
        out.append(TargetPlan(t, changes, tuple(desired.for_target(layer, t.name)),
                              tuple(observed.for_target(layer, t.name)), prune))
    return out


def converge(adapter: Any, desired: State, prune: bool = True, driver: Any = None) -> dict:
    """observe -> plan -> apply (targets with changes) -> results; asserts nothing."""
    driver = driver or adapter.driver()
    obs = observe(adapter, driver)
    ps = [p for p in plans(adapter, desired, obs, prune) if p.changes]
    return dict(driver.apply(ps)) if ps else {}


def mismatches(adapter: Any, desired: State, obs: dict) -> list[str]:
    out = []
    for t in adapter.targets():
        want = {r.key: r for r in desired.for_target(adapter.layer, t.name)}
        have = owned(obs[t.name].resources)
        for k in sorted(set(want) | set(have)):
            if k not in have:
                out.append(f"missing {k}")
            elif k not in want:
                out.append(f"extra {k}")
            elif have[k].spec != want[k].spec:
                out.append(f"differs {k}: {have[k].spec} != {want[k].spec}")
            elif have[k].app != want[k].app:
                out.append(f"app of {k}: {have[k].app!r} != {want[k].app!r}")
    return out


def without_app(desired: State, app: str) -> State:
    return State.of(r for r in desired if r.app != app)


def _apps(desired: State) -> list[str]:
    return sorted({r.app for r in desired if r.app})


# ---------------------------------------------------------------------------- checks
def check_fresh_target_has_no_owned_state(adapter: Any) -> None:
    obs = observe(adapter)
    for t in adapter.targets():
        assert obs[t.name].outcome is Outcome.NOOP, obs[t.name].error
        assert not owned(obs[t.name].resources), f"{t.name}: fresh target shows owned state"


def check_apply_round_trip(adapter: Any) -> None:
    desired = adapter.desired()
    driver = adapter.driver()
    obs = observe(adapter, driver)
    ps = plans(adapter, desired, obs, prune=True)
    assert any(p.changes for p in ps), "nothing to create: the check would prove nothing"
    res = driver.apply([p for p in ps if p.changes])
    for name, r in res.items():
        assert r.outcome is Outcome.APPLIED, f"{name}: {r.outcome} {r.error}"
        assert r.writes > 0
    assert mismatches(adapter, desired, observe(adapter, driver)) == []


def check_second_apply_writes_nothing(adapter: Any) -> None:
    desired = adapter.desired()
    converge(adapter, desired)
    driver = adapter.driver()
    obs = observe(adapter, driver)
    ps = plans(adapter, desired, obs, prune=True)
    assert all(not p.changes for p in ps), [c.key for p in ps for c in p.changes]
    # Even handed the whole target (no change list), the driver itself must find nothing to write.
    res = driver.apply(ps)
    for name, r in res.items():
        assert r.outcome is Outcome.NOOP and r.writes == 0, f"{name}: {r.outcome} writes={r.writes} {r.details}"


def check_drift_by_hand_is_observed_and_repaired(adapter: Any) -> None:
    desired = adapter.desired()
    converge(adapter, desired)
    target = adapter.targets()[0].name
    key = adapter.drift(target)
    obs = observe(adapter)
    have = owned(obs[target].resources).get(key)
    want = desired.get(key)
    assert want is not None, f"adapter drifted {key}, which is not desired"
    assert have is None or have.spec != want.spec, f"drift on {key} not observed"
    plan = make_plan(desired, observed_state(obs), prune=True)
    assert key in {c.key for c in plan.changes}, f"plan does not name {key}"
    res = converge(adapter, desired)
    assert res[target].outcome is Outcome.APPLIED, res[target].error
    assert mismatches(adapter, desired, observe(adapter)) == []


def check_unowned_state_survives(adapter: Any) -> None:
    desired = adapter.desired()
    target = adapter.targets()[0].name
    adapter.make_unowned(target)
    assert adapter.unowned_present(target)
    obs = observe(adapter)
    assert obs[target].ok
    converge(adapter, desired, prune=True)                     # create/update with prune on
    converge(adapter, without_app(desired, _apps(desired)[0]), prune=True)  # and a prune
    converge(adapter, desired, prune=True)
    assert adapter.unowned_present(target), "hand-made state did not survive"
    assert mismatches(adapter, desired, observe(adapter)) == []


def check_prune_on_and_off(adapter: Any) -> None:
    desired = adapter.desired()
    converge(adapter, desired)
    app = _apps(desired)[0]
    gone = without_app(desired, app)
    app_keys = {r.key for r in desired if r.app == app}
    assert app_keys
    converge(adapter, gone, prune=False)
    still = {k for o in observe(adapter).values() for k in owned(o.resources)}
    assert app_keys <= still, f"prune off removed {sorted(map(str, app_keys - still))[:5]}"
    res = converge(adapter, gone, prune=True)
    assert all(r.outcome.ok for r in res.values()), {n: r.error for n, r in res.items()}
    obs = observe(adapter)
    left = {k for o in obs.values() for k in owned(o.resources)}
    assert not (app_keys & left), f"prune on left {sorted(map(str, app_keys & left))[:5]}"
    assert mismatches(adapter, gone, obs) == []
    converge(adapter, desired)


def check_unreachable_target_is_data(adapter: Any) -> None:
    desired = adapter.desired()
    targets = adapter.targets()
    down = targets[0].name
    converge(adapter, without_app(desired, _apps(desired)[0]), prune=True)
    adapter.make_unreachable(down)
    try:
        driver = adapter.driver()
        obs = observe(adapter, driver)           # must not raise
        assert obs[down].outcome is Outcome.UNREACHABLE, (obs[down].outcome, obs[down].error)
        assert obs[down].error
        for t in targets[1:]:
            assert obs[t.name].outcome is Outcome.NOOP, (t.name, obs[t.name].error)
        # apply: the reachable targets converge; the unreachable one is a result, not an exception
        reachable_plans = plans(adapter, desired, obs, prune=True)
        stale = next(p for p in plans(adapter, desired, {**obs, down: _last_good(adapter, down)}, True)
                     if p.target.name == down)
        res = driver.apply(reachable_plans + [stale])
        assert res[down].outcome is Outcome.UNREACHABLE, (res[down].outcome, res[down].error)
        for p in reachable_plans:
            assert res[p.target.name].outcome.ok, (p.target.name, res[p.target.name].error)
        obs2 = observe(adapter, driver)
        others = [t for t in targets[1:]]
        sub = type("Sub", (), {"targets": lambda self: others, "layer": adapter.layer})()
        assert mismatches(sub, desired, obs2) == []
    finally:
        adapter.restore(down)
    converge(adapter, desired)


def _last_good(adapter: Any, target: str) -> Any:
    """An Observation of `target` as if seen before it went away: empty, so the plan has creates."""
    from reconciler.drivers.base import Observation
    return Observation(target, Outcome.NOOP, ())


CHECKS: list[Callable[[Any], None]] = [
    check_fresh_target_has_no_owned_state,
    check_apply_round_trip,
    check_second_apply_writes_nothing,
    check_drift_by_hand_is_observed_and_repaired,
    check_unowned_state_survives,
    check_prune_on_and_off,
    check_unreachable_target_is_data,
]
