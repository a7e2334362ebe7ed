"""Engine: the closed loop observe -> plan -> apply -> observe again, over all layers.

Contract: `Engine.run(desired, ...)` never raises for device trouble; every target ends
with a `TargetReport` (outcome, writes, error) and the run with a `RunReport`.
- Observe: every layer's driver is called once per attempt (layers in parallel threads;
  each driver batches its own targets; layers whose drivers are `FusableObserve` with one `fuse_key`
  are observed by one `observe_together` call). A target whose observation failed is neither
  planned nor written in that attempt, and it is reported; the others go on.
- Apply: creates/updates run layer by layer in creation order (switch, hypervisor, host,
  sidecar), deletes in the reverse order, so no traffic is sent where the path does not
  exist yet. Each layer's targets go to its driver in one batched call; consecutive layers
  whose drivers are `FusableApply` with one `fuse_key` (the Ansible ones) go in one `apply_together` call that
  keeps the order (one play per layer) and saves a process start per layer. A `Prestartable` driver is
  started while the step below it is applied and told `go` when that step is
  done (it sends nothing before): its start-up overlaps the layer below, the order holds.
- Converge: up to `attempts` rounds with exponential backoff between them; a converged
  state (empty plan) makes no apply call at all, so it issues zero writes.
- Every step is published as an `Event` on the bus; the engine itself keeps no history.
- `write_gate` (optional, set by reconciler.txn): called before every write with the plan and the
  unfiltered observation; an exception from it aborts the run before that write (the run is
  still published as failed, then the exception propagates). Without a gate nothing changes.
"""
from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence, TypeVar

from reconciler.drivers.base import (
    ApplyResult,
    Driver,
    FusableApply,
    FusableObserve,
    Observation,
    Prestartable,
    Target,
    TargetPlan,
)
from reconciler.events import Event, EventBus, EventKind
from reconciler.model import FrozenDict, IgnoreRule, Layer, ObservedState, Resource, State
from reconciler.plan import Change, Plan, make_plan
from reconciler.report import RunReport, TargetReport
from reconciler.status import Action, Outcome, Phase


@dataclass
class _Progress:
    """What a run has found so far, kept outside the loop so that an aborted run still reports it."""
    initial: Plan | None = None   # the plan of the first observation: the drift found
    unknown: dict = field(default_factory=dict)   # desired resources on targets that could not be observed
    plan: Plan = field(default_factory=Plan)   # the latest plan: what still differs
    attempt: int = 0
    # targets whose observation failed: one observed again "came back". A target whose APPLY said
    # unreachable (e.g. a workload with no ADS stream, its CSDS fine) is tried again in the next
    # attempt, but the verify round does not turn its last answer into "still differs"
    down: set = field(default_factory=set)


class Engine:
    def __init__(self, drivers: Mapping[Layer, Driver], bus: EventBus | None = None, *,
                 attempts: int = 3, backoff_s: float = 0.5, max_backoff_s: float = 5.0,
                 sleep: Callable[[float], None] = time.sleep, publish_state: bool = False) -> None:
        self.drivers = dict(drivers)
        self.bus = bus or EventBus()
        self.attempts = max(1, attempts)
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self._sleep = sleep
        self.publish_state = publish_state
        # Called as write_gate(run_id, plan, observed) before every write (not in dry runs), with
        # the latest observation of every target unfiltered by --app; raising aborts the run with
        # nothing written by that attempt (the transaction journal and its checks, reconciler.txn).
        self.write_gate: Callable[[str, Plan, State], None] | None = None
        # The latest run's written targets as their drivers read them back right after the write
        # (ApplyResult.observed: unfiltered, foreign resources included), for the checks after a
        # run (transaction and daemon reachability), so they need not observe those targets again.
        self.readbacks: dict[tuple[Layer, str], tuple[Resource, ...]] = {}

    # ---- observe ---------------------------------------------------------------------
    def observe(self, targets: Mapping[Layer, Sequence[Target]], run_id: str = "",
                ) -> tuple[ObservedState, dict[tuple[Layer, str], Observation]]:
        layers = [l for l in Layer.ordered() if l in self.drivers and targets.get(l)]
        results: dict[tuple[Layer, str], Observation] = {}

        groups: list[list[Layer]] = []   # layers observed by one driver call
        for layer in layers:
            g = next((g for g in groups if _fusable(self.drivers[g[0]], self.drivers[layer], FusableObserve)), None)
            if g is None:
                groups.append([layer])
            else:
                g.append(layer)

        def one(group: list[Layer]) -> list[tuple[Layer, Mapping[str, Observation]]]:
            try:
                if len(group) == 1:
                    return [(group[0], self.drivers[group[0]].observe(list(targets[group[0]])))]
                lead = self.drivers[group[0]]
                assert isinstance(lead, FusableObserve)  # grouped by _fusable
                got = lead.observe_together([(self.drivers[l], list(targets[l])) for l in group])
                return list(zip(group, got))
            except Exception as exc:  # a driver bug must not stop the other layers
                return [(l, {t.name: Observation(t.name, Outcome.FAILED, error=f"{l.value} driver: {exc!r}")
                             for t in targets[l]}) for l in group]

        with ThreadPoolExecutor(max_workers=max(1, len(groups))) as pool:
            for layer, obs in (pair for pairs in pool.map(one, groups) for pair in pairs):
                for t in targets[layer]:
                    o = obs.get(t.name) or Observation(t.name, Outcome.FAILED,
                                                       error=f"{t.name}: driver returned nothing")
                    results[(layer, t.name)] = o
                    self.bus.publish(Event(EventKind.OBSERVED, run_id, layer=layer, target=t.name, outcome=o.outcome,
                                           message=o.error, data={"resources": len(o.resources)}))
        resources: dict = {}
        for (layer, name), o in results.items():
            if o.ok:
                for r in o.resources:
                    if r.key.layer == layer and r.key.target == name:
                        resources[r.key] = r
        return ObservedState(FrozenDict(resources)), results

    # ---- run ---------------------------------------------------------------------------
    def run(self, desired: State, targets: Mapping[Layer, Sequence[Target]], *, prune: bool = False,
            dry_run: bool = False, apps: Sequence[str] | None = None, ignore: Sequence[IgnoreRule] = (),
            revision: str = "", run_id: str | None = None, trigger: str = "manual") -> RunReport:
        run_id = run_id or uuid.uuid4().hex[:12]
        self.readbacks = {}
        started = time.time()
        t0 = time.monotonic()
        app_filter = set(apps) if apps else None
        desired = _filter_apps(desired, app_filter)
        reports = self._new_reports(desired, targets)
        self.bus.publish(Event(EventKind.RUN_STARTED, run_id, message=trigger,
                               data={"revision": revision, "dry_run": dry_run, "prune": prune,
                                     "apps": sorted(app_filter) if app_filter else None}))
        progress = _Progress()
        phase = Phase.SUCCEEDED
        try:
            self._converge(progress, desired, targets, reports, run_id, prune=prune, dry_run=dry_run,
                           app_filter=app_filter, ignore=ignore)
            progress.attempt = min(progress.attempt, self.attempts)
            if not dry_run:
                _fail_unconverged(progress.plan, reports, progress.attempt)
        except Exception as exc:  # engine bug: record it, never lose the run
            phase = Phase.FAILED
            for rep in reports.values():
                if rep.outcome.ok:
                    rep.error = rep.error or f"run aborted: {exc!r}"
            raise
        finally:
            report = _run_report(progress, phase, reports, run_id=run_id, revision=revision, started=started,
                                 duration_s=time.monotonic() - t0, dry_run=dry_run)
            self._publish_results(report)
        return report

    def _new_reports(self, desired: State, targets: Mapping[Layer, Sequence[Target]],
                     ) -> dict[tuple[Layer, str], TargetReport]:
        """One report per target of a layer with a driver, naming the apps with resources on it."""
        reports: dict[tuple[Layer, str], TargetReport] = {
            (l, t.name): TargetReport(l, t.name) for l, ts in targets.items() if l in self.drivers for t in ts}
        for r in desired:
            if (r.key.layer, r.key.target) in reports:
                reports[(r.key.layer, r.key.target)].apps.add(r.app)
        return reports

    def _converge(self, progress: _Progress, desired: State, targets: Mapping[Layer, Sequence[Target]],
                  reports: dict[tuple[Layer, str], TargetReport], run_id: str, *, prune: bool, dry_run: bool,
                  app_filter: set[str] | None, ignore: Sequence[IgnoreRule]) -> None:
        """Observe, plan and apply until the plan is empty or the attempts are used up; records
        every step in `progress` as it goes, so an aborted run still reports what it found."""
        readback: tuple[ObservedState, dict] | None = None
        raw_readback: State = ObservedState()
        # attempts + 1 rounds: the last one only verifies what the last apply did
        for attempt in range(1, self.attempts + 2):
            progress.attempt = attempt
            if readback is not None:
                # every written target read its state back in its own session: no extra observe
                observed, obs = readback
                raw = raw_readback
            else:
                observed, obs = self.observe(targets, run_id)
                raw, observed = observed, _filter_apps(observed, app_filter)
            reachable = self._note_observations(obs, reports, progress.down, final=attempt > self.attempts)
            plan = progress.plan = _restrict(make_plan(desired, observed, prune, ignore), reachable)
            if progress.initial is None:
                self._note_initial_drift(progress, plan, desired, observed, reports, reachable, run_id)
            if dry_run:
                self._apply(plan, desired, observed, targets, reports, run_id, dry_run=True)
                break
            if plan.empty or attempt > self.attempts:
                break
            if attempt > 1:
                self._sleep(min(self.max_backoff_s, self.backoff_s * 2 ** (attempt - 2)))
            if self.write_gate is not None:
                self.write_gate(run_id, plan, raw)
            readback = self._apply(plan, desired, observed, targets, reports, run_id, dry_run=False)
            if readback is not None:
                # targets not written keep their last observation (failed ones stay failed)
                raw_readback = readback[0]
                readback = (_filter_apps(readback[0], app_filter), {**obs, **readback[1]})

    def _note_initial_drift(self, progress: _Progress, plan: Plan, desired: State, observed: State,
                            reports: dict[tuple[Layer, str], TargetReport], reachable: set[tuple[Layer, str]],
                            run_id: str) -> None:
        """Record and publish the drift found by the first observation."""
        # Drift is only known where observation worked; the rest is unknown, not "missing".
        progress.initial = initial = plan
        progress.unknown = {k: r for k, r in desired.resources.items()
                            if (k.layer, k.target) in reports and (k.layer, k.target) not in reachable}
        # drift = changes + orphans: the first len(changes) are executed (no membership test,
        # which is quadratic on a first deploy of millions of changes)
        n_exec = len(initial.changes)
        for i, c in enumerate(initial.drift):
            self.bus.publish(Event(EventKind.DRIFT, run_id, app=c.app, layer=c.key.layer,
                                   target=c.key.target, key=str(c.key), message=c.action.value,
                                   data={"action": c.action.value, "executed": i < n_exec,
                                         "diff": [d.to_json() for d in c.diffs]}))
        if self.publish_state:
            self._publish_state(run_id, desired, observed, initial, progress.unknown)

    @staticmethod
    def _note_observations(obs: Mapping[tuple[Layer, str], Observation],
                           reports: dict[tuple[Layer, str], TargetReport], down: set,
                           final: bool = False) -> set[tuple[Layer, str]]:
        reachable = set()
        for k, o in obs.items():
            rep = reports[k]
            if o.ok:
                reachable.add(k)
                if rep.outcome is Outcome.UNREACHABLE and (k in down or not final):  # came back within this run
                    rep.outcome, rep.error = Outcome.NOOP, ""
                down.discard(k)
            else:
                rep.outcome, rep.error = o.outcome, o.error
                down.add(k)
        return reachable

    def _apply(self, plan: Plan, desired: State, observed: State, targets: Mapping[Layer, Sequence[Target]],
               reports: dict[tuple[Layer, str], TargetReport], run_id: str,
               dry_run: bool) -> tuple[ObservedState, dict[tuple[Layer, str], Observation]] | None:
        """Apply `plan`; returns the state read back by the drivers when every written target
        reported it (ApplyResult.observed), else None (the engine then observes itself)."""
        readback: dict[tuple[Layer, str], tuple[Resource, ...]] = {}
        complete = True
        by_target: dict[tuple[Layer, str], list[Change]] = {}
        for c in plan.changes:
            by_target.setdefault((c.key.layer, c.key.target), []).append(c)
        tmap = {(l, t.name): t for l, ts in targets.items() for t in ts}
        phases = [(Layer.ordered(), lambda c: c.action is not Action.DELETE),
                  (tuple(reversed(Layer.ordered())), lambda c: c.action is Action.DELETE)]
        for layer_order, wanted in phases:
            steps = self._driver_steps(layer_order, wanted, by_target, tmap, plan, desired, observed, reports)
            complete = self._apply_steps(steps, reports, readback, run_id, dry_run) and complete
        if dry_run or not complete or not readback:
            return None
        index = {k: r for k, r in observed.resources.items() if (k.layer, k.target) not in readback}
        for (layer, name), resources in readback.items():
            for r in resources:
                if r.key.layer == layer and r.key.target == name:
                    index[r.key] = r
        return ObservedState(FrozenDict(index)), {
            k: Observation(k[1], Outcome.NOOP) for k in readback}

    def _driver_steps(self, layer_order: Sequence[Layer], wanted: Callable[[Change], bool],
                      by_target: Mapping[tuple[Layer, str], list[Change]], tmap: Mapping[tuple[Layer, str], Target],
                      plan: Plan, desired: State, observed: State, reports: dict[tuple[Layer, str], TargetReport],
                      ) -> list[list[tuple[Layer, Driver, list[TargetPlan]]]]:
        """The `wanted` changes as driver calls in `layer_order`: one step per layer, or one for
        consecutive fusable layers. Unreachable targets are left out."""
        steps: list[list[tuple[Layer, Driver, list[TargetPlan]]]] = []
        for layer in layer_order:
            driver = self.drivers.get(layer)
            if driver is None:
                continue
            tplans = []
            for (l, name), changes in sorted(by_target.items(), key=lambda kv: kv[0][1]):
                mine = tuple(c for c in changes if wanted(c))
                if l != layer or not mine:
                    continue
                if reports[(l, name)].outcome is Outcome.UNREACHABLE:
                    continue
                tplans.append(TargetPlan(tmap[(l, name)], mine, tuple(desired.for_target(l, name)),
                                         tuple(observed.for_target(l, name)), plan.prune))
            if not tplans:
                continue
            if steps and _fusable(steps[-1][-1][1], driver, FusableApply):
                steps[-1].append((layer, driver, tplans))   # next layer, same run, in order
            else:
                steps.append([(layer, driver, tplans)])
        return steps

    def _apply_steps(self, steps: list[list[tuple[Layer, Driver, list[TargetPlan]]]],
                     reports: dict[tuple[Layer, str], TargetReport], readback: dict, run_id: str,
                     dry_run: bool) -> bool:
        """Apply the steps in order, starting each `Prestartable` driver while the step before it
        runs. False when a written target did not read its state back."""
        complete = True
        started = None
        for i, step in enumerate(steps):
            upcoming = None
            nxt = steps[i + 1] if i + 1 < len(steps) else None
            nxt_driver = nxt[0][1] if nxt is not None else None
            if not dry_run and nxt is not None and isinstance(nxt_driver, Prestartable):
                # start the next step's driver now; it writes nothing before go()
                try:
                    upcoming = nxt_driver.prestart([(d, tps) for _, d, tps in nxt])
                except Exception:
                    upcoming = None
            ok = False
            try:
                complete = self._apply_step(step, reports, readback, run_id, dry_run, started) and complete
                ok = True
            finally:
                if upcoming is not None:
                    upcoming.go(ok)   # always answered: a waiting run must never hang
            started = upcoming
        return complete

    def _apply_step(self, step: list[tuple[Layer, Driver, list[TargetPlan]]],
                    reports: dict[tuple[Layer, str], TargetReport], readback: dict, run_id: str,
                    dry_run: bool, started: Any = None) -> bool:
        """One driver call (one layer, or consecutive fusable layers in order), or the results of
        the call `started` ahead of time; folds the results into the reports. False when a
        written target did not read its state back."""
        for layer, _, tplans in step:
            for tp in tplans:
                self.bus.publish(Event(EventKind.APPLY_STARTED, run_id, layer=layer, target=tp.target.name,
                                       data={"changes": len(tp.changes), "dry_run": dry_run}))
        try:
            if started is not None:
                step_results = started.result()
            elif len(step) == 1:
                step_results = [step[0][1].apply(step[0][2], dry_run=dry_run)]
            else:
                lead = step[0][1]
                assert isinstance(lead, FusableApply)  # steps are only fused by _fusable
                step_results = lead.apply_together([(d, tps) for _, d, tps in step], dry_run=dry_run)
        except Exception as exc:
            step_results = [{tp.target.name: ApplyResult(tp.target.name, Outcome.FAILED,
                                                         error=f"{layer.value} driver: {exc!r}") for tp in tplans}
                            for layer, _, tplans in step]
        complete = True
        for (layer, _, tplans), results in zip(step, step_results):
            for tp in tplans:
                res = results.get(tp.target.name) or ApplyResult(tp.target.name, Outcome.FAILED,
                                                                 error="driver returned no result")
                rep = reports[(layer, tp.target.name)]
                rep.writes += res.writes
                rep.details.extend(res.details)
                rep.rolled_back = rep.rolled_back or res.rolled_back
                if res.outcome.ok:
                    if res.outcome is not Outcome.NOOP:
                        rep.outcome, rep.error = res.outcome, ""  # also: a retry succeeded
                else:
                    rep.outcome, rep.error = res.outcome, res.error
                if res.observed is None:
                    complete = False
                    self.readbacks.pop((layer, tp.target.name), None)   # an older read-back is stale now
                else:
                    readback[(layer, tp.target.name)] = res.observed
                    self.readbacks[(layer, tp.target.name)] = tuple(
                        r for r in res.observed if r.key.layer == layer and r.key.target == tp.target.name)
                self.bus.publish(Event(EventKind.APPLIED, run_id, layer=layer, target=tp.target.name,
                                       outcome=res.outcome, message=res.error,
                                       data={"writes": res.writes, "rolled_back": res.rolled_back,
                                             "failed_keys": list(res.failed_keys)}))
        return complete

    def _publish_state(self, run_id: str, desired: State, observed: State, plan: Plan,
                       unknown: Mapping) -> None:
        """Every resource of the run with its status, for read models (store, TUI). Resources on
        targets that could not be observed are `unknown`."""
        status = {c.key: ("orphan" if c in plan.orphans else c.action.value) for c in plan.drift}
        status.update({k: "unknown" for k in unknown})
        rows = []
        for key in sorted(desired.resources.keys() | observed.resources.keys(), key=lambda k: k.sort_key()):
            d, o = desired.get(key), observed.get(key)
            if d is None and o is not None and not o.owned:
                continue
            rows.append({"key": str(key), "app": (d or o).app, "status": status.get(key, "synced"),  # type: ignore[union-attr]
                         "desired": None if d is None else d.to_json()["spec"],
                         "observed": None if o is None else o.to_json()["spec"]})
        self.bus.publish(Event(EventKind.STATE, run_id, data={"resources": rows}))

    def _publish_results(self, report: RunReport) -> None:
        residual = {c.key for c in report.residual.changes}
        for (layer, target), rep in sorted(report.targets.items(), key=lambda kv: (kv[0][0].create_rank, kv[0][1])):
            if rep.outcome is Outcome.UNREACHABLE:
                for key in sorted(report.unknown.get((layer, target), ())):
                    self.bus.publish(Event(EventKind.RESOURCE_RESULT, report.run_id, app=key[1], layer=layer,
                                           target=target, key=key[0], outcome=Outcome.UNREACHABLE, message="unknown"))
        for c in report.initial.changes:
            target_rep = report.targets.get((c.key.layer, c.key.target))
            if report.dry_run:
                outcome = Outcome.DRY_RUN
            elif target_rep is not None and not target_rep.outcome.ok:
                outcome = (target_rep.outcome if c.key in residual or target_rep.outcome is Outcome.UNREACHABLE
                           else Outcome.APPLIED)
            else:
                outcome = Outcome.FAILED if c.key in residual else Outcome.APPLIED
            self.bus.publish(Event(EventKind.RESOURCE_RESULT, report.run_id, app=c.app, layer=c.key.layer,
                                   target=c.key.target, key=str(c.key), outcome=outcome, message=c.action.value))
        self.bus.publish(Event(EventKind.RUN_FINISHED, report.run_id, outcome=None,
                               message=report.phase.value,
                               data={"phase": report.phase.value, "duration_s": report.duration_s,
                                     "revision": report.revision, "converged": report.converged,
                                     "writes": report.writes, "apps": report.apps(),
                                     "drift": {a: len(report.initial.for_app(a).drift) for a in report.apps()},
                                     "targets": [t.to_json() for t in report.targets.values()]}))


def _fusable(a: Driver, b: Driver, capability: type) -> bool:
    """Two layers' drivers share one call (in order) when both have the capability and equal keys."""
    return isinstance(a, capability) and isinstance(b, capability) and a.fuse_key == b.fuse_key  # type: ignore[attr-defined]


def _fail_unconverged(plan: Plan, reports: dict[tuple[Layer, str], TargetReport], attempts: int) -> None:
    """A target that still differs after the last attempt failed, even if every call succeeded."""
    for c in plan.changes:
        rep = reports.get((c.key.layer, c.key.target))
        if rep is not None and rep.outcome.ok:
            rep.outcome = Outcome.FAILED
            rep.error = rep.error or f"{c.key}: still differs after {attempts} attempt(s)"


def _run_report(progress: _Progress, phase: Phase, reports: dict[tuple[Layer, str], TargetReport], *,
                run_id: str, revision: str, started: float, duration_s: float, dry_run: bool) -> RunReport:
    """The run's report: failed if any target failed or (unless a dry run) anything still differs."""
    initial = progress.initial or Plan()
    if dry_run:
        residual = initial
    else:
        residual = progress.plan
    if phase is Phase.SUCCEEDED and not all(r.ok for r in reports.values()):
        phase = Phase.FAILED
    if phase is Phase.SUCCEEDED and not dry_run and not residual.empty:
        phase = Phase.FAILED
    unknown_by_target: dict = {}
    for k, r in progress.unknown.items():
        if reports[(k.layer, k.target)].outcome is Outcome.UNREACHABLE:
            unknown_by_target.setdefault((k.layer, k.target), set()).add((str(k), r.app))
    return RunReport(run_id, revision, phase, started, duration_s, initial, residual,
                     reports, progress.attempt, dry_run, unknown_by_target)


_S = TypeVar("_S", bound=State)


def _filter_apps(state: _S, apps: set[str] | None) -> _S:
    if not apps:
        return state
    return type(state)(FrozenDict((k, r) for k, r in state.resources.items() if r.app in apps))


def _restrict(plan: Plan, targets: set[tuple[Layer, str]]) -> Plan:
    keep = lambda c: (c.key.layer, c.key.target) in targets  # noqa: E731
    return Plan(tuple(c for c in plan.changes if keep(c)), tuple(c for c in plan.orphans if keep(c)), plan.prune)
