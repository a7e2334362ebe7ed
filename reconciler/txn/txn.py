"""One transaction across layers: journal the pre-state, prepare, apply, verify, commit or roll back.

Contract (`Transactions(engine, journal, ...)`):
- `apply(desired, targets, ...)` runs the engine with a write gate: before the first write of
  each attempt the gate journals the observed pre-state of every target the plan touches (and
  holds those targets), checks the leader fence, and runs the tools' checks (`prepare`) once.
  A refusal there aborts with nothing written (`ABORTED`, naming target and message). After
  the engine, verification is its final observe (observed == desired) plus `checks` plus,
  with `reach`, reachability verification (txn/reach.py: the touched targets observed again;
  the transaction fails when the change ADDED a violation or a leak). Any failure, or an
  exception once something was written, rolls back. Success ends `COMMITTED`, or
  `PENDING_CONFIRM` with a deadline when `confirm_within` is given.
- `rollback(txn_id)` applies the journalled pre-state (owned resources) as desired, with prune,
  to the journalled targets through the same engine and drivers in REVERSE layer order
  (txn/rollback.py), then verifies resource by resource: `ROLLED_BACK`, `ROLLBACK_FAILED` naming the
  differing resources, or `ROLLBACK_PENDING` when targets were unreachable (journalled `unknown`;
  the next `recover` repairs them to the pre-state before anything else is applied).
- `recover()` finishes what a dead process left (dead: txn/heartbeat.py, a local pid or an
  expired heartbeat): transactions mid-apply roll back, a lapsed confirm window rolls back,
  `ROLLBACK_PENDING` ones retry their unknown targets. Apply and rollback keep the heartbeat.
- The journal is written before any device; `JournalUnavailable` aborts with nothing written.
"""
from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

from reconciler.drivers.base import Target
from reconciler.engine import Engine
from reconciler.model import FrozenDict, IgnoreRule, Layer, Resource, State
from reconciler.plan import Plan
from reconciler.report import RunReport
from reconciler.status import Outcome
from reconciler.txn.heartbeat import HEARTBEAT_TTL_S, Heartbeat, owner_alive, row_owner_alive, this_owner
from reconciler.txn.journal import Journal, JournalUnavailable, TargetBusy, TargetId, target_name
from reconciler.txn.models import TargetStatus, TxnState
from reconciler.txn.reach import ReachCheck, ReachOutcome, finding_line
from reconciler.txn.rollback import rollback_runs

# A check gets the run report of a clean apply and returns an error message or "".
Check = Callable[[RunReport], str]
# Prepare gets {layer: [(target, changes, desired, observed)]} and returns {target id: refusal}.
Preparer = Callable[[Mapping[Layer, Sequence[Any]]], Mapping[TargetId, str]]
# The leader fence: "" while this process may write, else why not.
Fence = Callable[[], str]

__all__ = ["Refused", "Transactions", "TxnResult", "new_txn_id", "owner_alive", "this_owner", "timings_of"]
_IN_FLIGHT = (TxnState.PREPARED, TxnState.APPLYING, TxnState.APPLIED, TxnState.VERIFIED, TxnState.ROLLING_BACK)


class Refused(Exception):
    """The transaction was refused before anything was written (prepare, fence)."""


def new_txn_id() -> tuple[str, str]:
    run_id = uuid.uuid4().hex[:12]
    return f"tx-{run_id}", run_id


@dataclass
class TxnResult:
    txn_id: str
    state: TxnState
    report: RunReport | None = None
    rollback: list[RunReport] = field(default_factory=list)   # one run per layer, in reverse layer order
    differs: dict[str, list[str]] = field(default_factory=dict)   # "layer/target" -> resource keys
    unknown: list[str] = field(default_factory=list)
    error: str = ""
    deadline: float | None = None
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.state in (TxnState.COMMITTED, TxnState.PENDING_CONFIRM, TxnState.NOOP)

    def to_json(self) -> dict:
        return {"txn_id": self.txn_id, "state": self.state.value, "error": self.error, "deadline": self.deadline,
                "differs": self.differs, "unknown": self.unknown, "timings": self.timings}


@dataclass
class _Gate:
    """Per-transaction state of the write gate."""
    txn_id: str
    desired: State
    targets: Mapping[TargetId, Target]
    prune: bool
    wrote: bool = False
    prepared: bool = False
    # the journalled pre-state, also kept here: a journal lost mid-transaction must not stop the rollback
    pre: dict[TargetId, tuple[Resource, ...]] = field(default_factory=dict)
    reach: ReachCheck | None = None    # reachability before the first write, compared after the apply


class Transactions:
    def __init__(self, engine: Engine, journal: Journal, *, context: Mapping[str, Any] | None = None,
                 prepare: Preparer | None = None, checks: Sequence[Check] = (), fence: Fence | None = None,
                 owner: str | None = None, reach: Callable[[], ReachCheck] | None = None,
                 heartbeat_s: float | None = None, ttl_s: float = HEARTBEAT_TTL_S) -> None:
        self.engine = engine
        self.journal = journal
        self.context = dict(context or {})
        self.prepare = prepare
        self.checks = list(checks)
        self.fence = fence
        self.owner = owner or this_owner()
        self.reach = reach     # a new ReachCheck per transaction (None: no reachability verification)
        self.heartbeat = Heartbeat(journal, self.owner, *(() if heartbeat_s is None else (heartbeat_s,)))
        self.ttl_s = ttl_s

    # ---- apply -------------------------------------------------------------------------
    def apply(self, desired: State, targets: Mapping[Layer, Sequence[Target]], *, prune: bool = False,
              apps: Sequence[str] | None = None, ignore: Sequence[IgnoreRule] = (), revision: str = "",
              trigger: str = "manual", confirm_within: float | None = None, reverts: str = "") -> TxnResult:
        with self.heartbeat:   # alive for whoever looks at this transaction from another process or host
            return self._apply(desired, targets, prune=prune, apps=apps, ignore=ignore, revision=revision,
                               trigger=trigger, confirm_within=confirm_within, reverts=reverts)

    def _apply(self, desired: State, targets: Mapping[Layer, Sequence[Target]], *, prune: bool,
               apps: Sequence[str] | None, ignore: Sequence[IgnoreRule], revision: str, trigger: str,
               confirm_within: float | None, reverts: str) -> TxnResult:
        txn_id, run_id = new_txn_id()
        self.journal.begin(txn_id, run_id=run_id, revision=revision, trigger=trigger, owner=self.owner,
                           context=self.context, apps=apps or (), reverts=reverts)
        wanted = _only_apps(desired, apps)
        gate = _Gate(txn_id, wanted, {(l, t.name): t for l, ts in targets.items() for t in ts}, prune,
                     # a revert restores an older state the repo's intents may not describe: no reachability
                     reach=self.reach() if self.reach is not None and not reverts else None)
        t0 = time.monotonic()
        self.engine.write_gate = lambda rid, plan, observed: self._gate(gate, plan, observed)
        try:
            report = self.engine.run(desired, targets, prune=prune, apps=apps, ignore=ignore, revision=revision,
                                     run_id=run_id, trigger=trigger)
        except (Refused, TargetBusy, JournalUnavailable) as exc:
            return self._refused(gate, str(exc), targets, ignore)
        except Exception as exc:  # an engine bug: never leave a half-applied network behind
            if not gate.wrote:
                return self._finish(txn_id, TxnState.ABORTED, f"aborted before any write: {exc!r}")
            return self._roll_back_after(gate, f"apply failed: {exc!r}", None, targets, ignore)
        finally:
            self.engine.write_gate = None
        self.journal.add_timing(txn_id, "apply", time.monotonic() - t0)
        if not gate.wrote:
            return self._finish(txn_id, TxnState.NOOP if report.converged else TxnState.ABORTED,
                                "" if report.converged else _report_error(report), report)
        self._mark_written(txn_id, report)
        problem = _report_error(report) if not report.converged else self._verify(report) or self._reach(gate)
        if not problem and self.fence is not None:
            problem = self.fence()   # the leader lock, checked at commit
        if problem:
            return self._roll_back_after(gate, problem, report, targets, ignore)
        if confirm_within:
            deadline = time.time() + confirm_within
            self.journal.set_state(txn_id, TxnState.PENDING_CONFIRM, deadline=deadline)
            return TxnResult(txn_id, TxnState.PENDING_CONFIRM, report, deadline=deadline)
        return self._finish(txn_id, TxnState.COMMITTED, "", report)

    def _gate(self, gate: _Gate, plan: Plan, observed: State) -> None:
        """Before a write: journal pre-state and hold targets, check the fence, prepare once."""
        touched: dict[TargetId, int] = {}
        for c in plan.changes:
            t = (c.key.layer, c.key.target)
            touched[t] = touched.get(t, 0) + 1
        pre = {t: tuple(observed.for_target(*t).resources.values()) for t in touched}
        if gate.reach is not None and not gate.reach.ready:
            self._reach_before(gate, observed)
        if self.fence is not None:
            why = self.fence()
            if why:
                raise Refused(f"not the leader: {why}")
        self.journal.record_prestate(gate.txn_id, pre, touched)
        for t, resources in pre.items():
            gate.pre.setdefault(t, resources)
        if not gate.prepared and self.prepare is not None:
            refusals = self.prepare(_prepare_input(plan, gate, observed))
            if refusals:
                raise Refused("prepare refused: " + "; ".join(f"{target_name(t)}: {m}"
                                                              for t, m in sorted(refusals.items(),
                                                                                 key=lambda kv: target_name(kv[0]))))
        gate.prepared = True
        if not gate.wrote:
            self.journal.set_state(gate.txn_id, TxnState.APPLYING)
        gate.wrote = True

    def _verify(self, report: RunReport) -> str:
        for check in self.checks:
            why = check(report)
            if why:
                return f"verification failed: {why}"
        return ""

    def _reach_before(self, gate: _Gate, observed: State) -> None:
        assert gate.reach is not None
        try:
            secs = gate.reach.before(observed, gate.targets)
        except Exception as exc:   # a verifier bug must not block writes; reported, then no reachability check
            gate.reach, why = None, repr(exc)
            _journal_try(lambda: self.journal.record_findings(gate.txn_id, [("error", "error", "", "", why)]))
            return
        self.journal.add_timing(gate.txn_id, "reach", secs)

    def _reach(self, gate: _Gate) -> str:
        """Reachability verification: observe the touched targets again and compare each pair's
        finding with its finding before the first write; '' unless the change added one."""
        if gate.reach is None or not gate.reach.ready:
            return ""
        t0 = time.monotonic()
        # a written target's own read-back right after its write (Engine.readbacks) is its state
        # after the change; only touched targets without one are observed again
        readbacks = self.engine.readbacks
        changed = {tid: readbacks[tid] for tid in gate.pre if tid in readbacks}
        unreachable: dict[TargetId, str] = {}
        by_layer: dict[Layer, list[Target]] = {}
        for tid in gate.pre:
            if tid not in changed:
                by_layer.setdefault(tid[0], []).append(gate.targets.get(tid) or Target(tid[1], tid[0]))
        if by_layer:
            observed, obs = self.engine.observe(by_layer)
            changed.update({tid: tuple(observed.for_target(*tid).resources.values())
                            for l, ts in by_layer.items() for tid in ((l, t.name) for t in ts)})
            unreachable = {tid: o.error or o.outcome.value for tid, o in obs.items() if not o.ok}
        out: ReachOutcome = gate.reach.after(changed, unreachable)
        self.journal.record_findings(gate.txn_id, [(change, f.kind, f.source.id, f.dest.id, finding_line(f))
                                                   for change, f in out.rows()])
        self.journal.add_timing(gate.txn_id, "reach", time.monotonic() - t0)
        why = out.problem()
        return f"verification failed: {why}" if why else ""

    def _refused(self, gate: _Gate, why: str, targets: Mapping[Layer, Sequence[Target]],
                 ignore: Sequence[IgnoreRule]) -> TxnResult:
        if gate.wrote:  # refused at a later attempt, after writes: roll back what was written
            return self._roll_back_after(gate, why, None, targets, ignore)
        try:
            return self._finish(gate.txn_id, TxnState.ABORTED, why)
        except JournalUnavailable:
            return TxnResult(gate.txn_id, TxnState.ABORTED, error=why)

    def _mark_written(self, txn_id: str, report: RunReport) -> None:
        status, writes = {}, {}
        for k, rep in report.targets.items():
            if rep.writes or rep.outcome.wrote:
                status[k] = (TargetStatus.WRITTEN, rep.error)
                writes[k] = rep.writes
        self.journal.mark_targets(txn_id, status, writes)

    def _finish(self, txn_id: str, state: TxnState, error: str, report: RunReport | None = None) -> TxnResult:
        self.journal.set_state(txn_id, state, error=error)
        return TxnResult(txn_id, state, report, error=error)

    # ---- rollback ------------------------------------------------------------------------
    def _roll_back_after(self, gate: _Gate, why: str, report: RunReport | None,
                         targets: Mapping[Layer, Sequence[Target]], ignore: Sequence[IgnoreRule]) -> TxnResult:
        """Roll back what this process wrote, from the pre-state it holds (the journal may be gone)."""
        lost = []
        for step in ((lambda: self._mark_written(gate.txn_id, report)) if report is not None else None,
                     lambda: self.journal.set_state(gate.txn_id, TxnState.ROLLING_BACK, error=why)):
            lost += _journal_try(step) if step is not None else []
        # the written targets' state is what their drivers just read back: no observation needed
        read_back = {tid: rs for tid, rs in self.engine.readbacks.items() if tid in gate.pre}
        res = self.rollback(gate.txn_id, targets, ignore, pre=gate.pre, read_back=read_back)
        res.report, res.error = report, "; ".join([why, *([res.error] if res.error else []), *lost])
        return res

    def rollback(self, txn_id: str, targets: Mapping[Layer, Sequence[Target]], ignore: Sequence[IgnoreRule] = (),
                 pre: Mapping[TargetId, Sequence[Resource]] | None = None,
                 read_back: Mapping[TargetId, Sequence[Resource]] | None = None) -> TxnResult:
        """Restore every journalled target (or every target of `pre`, the caller's copy of the
        journal) to its pre-state and verify it (the caller owns the transaction: ROLLING_BACK)."""
        t0 = time.monotonic()
        if pre is None:
            pre_state, tids = self.journal.pre_state(txn_id)
        else:
            pre_state, tids = State.of(r for rs in pre.values() for r in rs), list(pre)
        known = {(l, t.name): t for l, ts in targets.items() for t in ts}
        rb_targets: dict[Layer, list[Target]] = {}
        for tid in tids:
            if tid in known:
                rb_targets.setdefault(tid[0], []).append(known[tid])
        owned = State(FrozenDict({k: r for k, r in pre_state.resources.items() if r.owned}))
        # no gate (the journal already holds these targets); no STATE event: the pre-state is not
        # what the repo wants, read models must keep showing the repo's desired state
        gate, self.engine.write_gate = self.engine.write_gate, None
        publish_state, self.engine.publish_state = self.engine.publish_state, False
        try:
            with self.heartbeat:
                runs, clean = rollback_runs(self.engine, owned, rb_targets, ignore, f"rollback {txn_id}",
                                            lambda step, secs: self.journal.add_timing(txn_id, step, secs),
                                            known=read_back)
        finally:
            self.engine.write_gate, self.engine.publish_state = gate, publish_state
        secs = time.monotonic() - t0
        self.journal.add_timing(txn_id, "rollback", secs)
        return self._rollback_outcome(txn_id, tids, known, runs, clean, secs)

    def _rollback_outcome(self, txn_id: str, tids: Sequence[TargetId], known: Mapping[TargetId, Target],
                          runs: Sequence[RunReport], clean: set[TargetId], secs: float) -> TxnResult:
        differs: dict[str, list[str]] = {}
        for c in (c for rb in runs for c in rb.residual.changes):
            differs.setdefault(target_name((c.key.layer, c.key.target)), []).append(str(c.key))
        reports = {k: rep for rb in runs for k, rep in rb.targets.items()}
        status: dict[TargetId, tuple[TargetStatus, str]] = {}
        unknown: list[str] = []
        for tid in tids:
            rep = reports.get(tid)
            if tid in clean and tid not in reports:
                status[tid] = (TargetStatus.ROLLED_BACK, "")
            elif tid not in known or rep is None or rep.outcome is Outcome.UNREACHABLE:
                status[tid] = (TargetStatus.UNKNOWN, rep.error if rep else "not in the inventory")
                unknown.append(target_name(tid))
            elif target_name(tid) in differs or not rep.ok:
                keys = differs.setdefault(target_name(tid), [])
                status[tid] = (TargetStatus.DIFFERS, rep.error or "differs: " + ", ".join(keys))
            else:
                status[tid] = (TargetStatus.ROLLED_BACK, "")
        lost = _journal_try(lambda: self.journal.mark_targets(txn_id, status))
        if differs:
            state, err = TxnState.ROLLBACK_FAILED, "rollback left differences: " + "; ".join(
                f"{t}: {', '.join(ks) or 'failed'}" for t, ks in sorted(differs.items()))
        elif unknown:
            state, err = TxnState.ROLLBACK_PENDING, "unknown (unreachable), repaired on return: " + ", ".join(unknown)
        else:
            state, err = TxnState.ROLLED_BACK, ""
        lost += _journal_try(lambda: self.journal.set_state(txn_id, state, error=err or None))
        return TxnResult(txn_id, state, rollback=list(runs), differs=differs, unknown=unknown,
                         error="; ".join([e for e in (err, *lost) if e]), timings={"rollback": secs})

    # ---- confirm, recover, revert ----------------------------------------------------------
    def confirm(self, txn_id: str) -> bool:
        return self.journal.claim(txn_id, [TxnState.PENDING_CONFIRM], TxnState.COMMITTED, owner=self.owner,
                                  not_after=time.time())

    def recover(self, targets: Mapping[Layer, Sequence[Target]], ignore: Sequence[IgnoreRule] = (),
                only: str | None = None) -> list[TxnResult]:
        """Finish what dead processes and lapsed confirm windows left, oldest first."""
        done = []
        rows = [r for r in self.journal.unfinished() if not only or r.txn_id == only]
        beats = self.journal.beats(r.owner for r in rows)
        for row in rows:
            state = TxnState(row.state)
            now = time.time()
            if state in _IN_FLIGHT and row.owner != self.owner and not row_owner_alive(row, beats, now, self.ttl_s):
                won = self.journal.claim(row.txn_id, [state], TxnState.ROLLING_BACK, owner=self.owner)
            elif state is TxnState.PENDING_CONFIRM:
                won = self.journal.claim(row.txn_id, [state], TxnState.ROLLING_BACK, owner=self.owner, not_before=now)
            elif state is TxnState.ROLLBACK_PENDING:
                won = self.journal.claim(row.txn_id, [state], TxnState.ROLLING_BACK, owner=self.owner)
            else:
                continue
            if won:
                t0 = time.monotonic()
                res = self.rollback(row.txn_id, targets, ignore)
                self.journal.add_timing(row.txn_id, "recover", time.monotonic() - t0)
                done.append(res)
        return done

    def revert(self, txn_id: str, targets: Mapping[Layer, Sequence[Target]], ignore: Sequence[IgnoreRule] = (),
               confirm_within: float | None = None) -> TxnResult:
        """A committed transaction undone by a new one: its pre-state as desired on its targets."""
        row = self.journal.txn(txn_id)
        if row is None or TxnState(row.state) is not TxnState.COMMITTED:
            raise Refused(f"{txn_id}: {'no such transaction' if row is None else 'is ' + row.state}; "
                          "only a committed transaction can be reverted")
        pre, tids = self.journal.pre_state(txn_id)
        wanted = set(tids)
        mine = {l: [t for t in ts if (l, t.name) in wanted] for l, ts in targets.items()}
        owned = State(FrozenDict({k: r for k, r in pre.resources.items() if r.owned}))
        return self.apply(owned, {l: ts for l, ts in mine.items() if ts}, prune=True, ignore=ignore,
                          revision=f"revert {txn_id}", trigger="revert", confirm_within=confirm_within,
                          reverts=txn_id)


def _journal_try(step: Callable[[], Any]) -> list[str]:
    """A journal write during a rollback: its loss is reported, never a reason to stop restoring."""
    try:
        step()
        return []
    except JournalUnavailable as exc:
        return [f"not recorded: {exc}"]


def _only_apps(desired: State, apps: Sequence[str] | None) -> State:
    if not apps:
        return desired
    keep = set(apps)
    return State(FrozenDict({k: r for k, r in desired.resources.items() if r.app in keep}))


def _prepare_input(plan: Plan, gate: _Gate, observed: State) -> dict[Layer, list[Any]]:
    """Per layer: (target, its changes, its whole desired and observed state), what drivers render from."""
    out: dict[Layer, list[Any]] = {}
    for (layer, name) in sorted({(c.key.layer, c.key.target) for c in plan.changes}, key=lambda t: t[1]):
        changes = plan.for_target(layer, name)
        target = gate.targets.get((layer, name)) or Target(name, layer)
        out.setdefault(layer, []).append((target, changes, tuple(gate.desired.for_target(layer, name)),
                                          tuple(observed.for_target(layer, name)), gate.prune))
    return out


def _report_error(report: RunReport) -> str:
    bad = [f"{t.layer.value}/{t.target}: {t.outcome.value}: {t.error}" for t in report.targets.values() if not t.ok]
    if not bad and not report.residual.empty:
        bad = [f"{len(report.residual.changes)} resource(s) still differ after apply"]
    return "; ".join(bad)[:4000]


def timings_of(row: Any) -> dict[str, float]:
    return json.loads(getattr(row, "timings", "") or "{}")
