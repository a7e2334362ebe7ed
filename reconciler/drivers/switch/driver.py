"""Switch driver: leaf switches over SSH with netmiko, one config session per switch, rollback.

Contract (the switch layer in registry.FACTORIES; batched Protocol of base.py):
- Everything platform-specific comes from the target's `Platform` (platforms.py): observe
  sections, parsers, renderers (with negation rules), the running-config snapshot and the
  session style. This module has no per-platform branches.
- observe(targets): per switch one SSH round trip running every observe section, parsed into
  compile/switch.py's kinds and spec shapes (exact diff). Sessions (switch_session.py) are kept
  idle for `session_reuse_s` (switch_pool.py), so the apply that follows an observe, or the next
  run, does not log in again; a stale reused session is replaced by a new login once, before
  anything is written. `close()` closes the idle ones.
- apply(plans): per switch, in one SSH session:
    1. observe again and capture the running config (the commit-confirm point),
    2. render only the plan's changes (against that fresh observation) and send them as one
       session (`posix_script`: one fail-fast sh script; the first rejected command stops it),
    3. observe again and check every changed key against the plan (verification),
    4. on a rejected command or a failed verification: compute the inverse changes from the
       captured observation, send them, observe, and compare the running config with the
       captured one. Outcome ROLLED_BACK (rolled_back=True) when it matches, else FAILED
       (rolled_back=False) naming both failures. `details` lists commands and both steps.
  A plan with no changes does not contact the switch. dry_run renders without connecting.
  The last observation of steps 1, 3 or 4 is returned as `ApplyResult.observed` (the engine
  uses it as the next observation instead of logging in again); none after a lost session.
- Concurrency: targets run on a ThreadPoolExecutor bounded by `max_parallel`. Each target
  has a deadline (`deadline_s`, default the engine's `timeout_s`, 30 s); netmiko's
  connect/auth/banner/read timeouts are `io_timeout_s` (default min(10, deadline/3)). A target
  past its deadline is reported UNREACHABLE/FAILED while the others finish; the batch never waits for it.
- Secrets: the key file path and password are given to netmiko only; nothing is logged or put
  in results except host names, commands (built from validated values) and device messages.
Last verified observation per target is kept in `driver.verified[target]`.
"""
from __future__ import annotations

import concurrent.futures as cf
import functools
import threading
import time
from typing import Any, Callable, Mapping, Sequence

from reconciler.diff import diff_specs
from reconciler.drivers.base import ApplyResult, Observation, Target, TargetPlan
from reconciler.drivers.switch.platforms import InvalidValue, platform_of
from reconciler.drivers.switch.pool import SessionPool
from reconciler.drivers.switch.session import Session, SwitchError, Unreachable, _tail
from reconciler.events import Event, EventKind
from reconciler.model import Layer, Resource, State
from reconciler.plan import make_plan
from reconciler.status import Action, Outcome


def verify(changes: Sequence[Any], observed: Sequence[Resource]) -> list[tuple[str, str]]:
    """(key, problem) for every change whose key does not match the plan after apply."""
    index = {r.key: r for r in observed}
    problems = []
    for c in changes:
        o = index.get(c.key)
        if c.action is Action.DELETE:
            if o is not None and o.owned:
                problems.append((str(c.key), "still present"))
        elif o is None:
            problems.append((str(c.key), "missing after apply"))
        else:
            diffs = diff_specs(c.desired.spec, o.spec)
            if diffs:
                problems.append((str(c.key), "differs after apply: " + ", ".join(d.path for d in diffs)))
    return problems


def inverse_changes(changes: Sequence[Any], before: Sequence[Resource], now: Sequence[Resource]) -> tuple:
    """Changes that take `now` back to `before`: every resource seen before is restored (a
    command may touch more than its key, e.g. a port's trunk list), and what the session
    created is removed; state that is new but untouched by the session is left alone."""
    keys = {c.key for c in changes} | {r.key for r in before}
    want = State.of(before)
    # What the session created is ours to remove, marked or not (it may have failed halfway).
    have = State.of(Resource(r.key, r.spec, r.app, True) for r in now if r.key in keys)
    return make_plan(want, have, prune=True).changes


# ------------------------------------------------------------------------ the driver
class SwitchDriver:
    layer = Layer.SWITCH

    def __init__(self, inventory_path: str | None = None, publish: Callable[[Event], None] | None = None,
                 timeout_s: float = 30.0, max_parallel: int = 16, deadline_s: float | None = None,
                 io_timeout_s: float | None = None, connect: Callable[..., Any] | None = None,
                 run_id: str = "", session_reuse_s: float = 60.0, **_: Any) -> None:
        self.inventory_path = inventory_path
        self.publish = publish
        # timeout_s (the engine-wide setting) bounds one switch's whole observe or apply;
        # io_timeout_s bounds each SSH step (connect, auth, banner, one command's answer).
        self.deadline_s = float(deadline_s or timeout_s)
        self.timeout_s = float(io_timeout_s or min(10.0, max(1.0, self.deadline_s / 3)))
        self.max_parallel = max(1, int(max_parallel))
        self.connect = connect
        self.run_id = run_id
        self.verified: dict[str, tuple[Resource, ...]] = {}
        self._lock = threading.Lock()
        self.sessions = SessionPool(self._session, session_reuse_s)

    def close(self) -> None:
        """Close the idle sessions kept for reuse."""
        self.sessions.close()

    def _first_observe(self, t: Target) -> tuple[Session, list[Resource], dict[str, str]]:
        """A session (reused when one is idle) and a fresh observation through it. A reused
        session that fails this first, read-only step is replaced by a new login, once."""
        s, reused = self.sessions.take(t)
        try:
            resources, raw = s.observe()
            return s, resources, raw
        except SwitchError:
            s.close()
            if not reused:
                raise
        s = self._session(t)
        try:
            resources, raw = s.observe()
        except BaseException:
            s.close()
            raise
        return s, resources, raw

    # -- fan-out with a bound and a per-target deadline -----------------------------
    def _fan_out(self, items: Sequence[tuple[str, Callable[[], Any]]],
                 on_timeout: Callable[[str, float], Any]) -> dict[str, Any]:
        results: dict[str, Any] = {}
        if not items:
            return results
        pool = cf.ThreadPoolExecutor(max_workers=min(self.max_parallel, len(items)),
                                     thread_name_prefix="ni-switch")
        start = time.monotonic()
        try:
            futs = {pool.submit(fn): name for name, fn in items}
            # Targets queued behind the bound get their own deadline once they start; the
            # batch as a whole waits at most ceil(n / bound) deadlines.
            waves = -(-len(items) // self.max_parallel)
            done, not_done = cf.wait(futs, timeout=self.deadline_s * waves)
            for f in done:
                results[futs[f]] = f.result()
            for f in not_done:
                f.cancel()
                results[futs[f]] = on_timeout(futs[f], time.monotonic() - start)
        finally:
            pool.shutdown(wait=False, cancel_futures=True)
        return results

    def _log(self, target: str, message: str, outcome: Outcome | None = None) -> None:
        if self.publish is not None:
            self.publish(Event(EventKind.DRIVER_LOG, self.run_id, layer=Layer.SWITCH, target=target,
                               outcome=outcome, message=message))

    def _session(self, target: Target) -> Session:
        return Session(target, platform_of(target.vars), self.timeout_s, self.connect)

    # -- observe -----------------------------------------------------------------------
    def observe(self, targets: Sequence[Target]) -> Mapping[str, Observation]:
        return self._fan_out([(t.name, functools.partial(self._observe_one, t)) for t in targets],
                             lambda name, el: Observation(name, Outcome.UNREACHABLE,
                                                          error=f"{name}: no result within the deadline "
                                                                f"({el:.1f}s)", duration_s=el))

    def _observe_one(self, t: Target) -> Observation:
        start = time.monotonic()
        try:
            s, resources, raw = self._first_observe(t)
        except (Unreachable, InvalidValue) as e:
            return Observation(t.name, Outcome.UNREACHABLE if isinstance(e, Unreachable) else Outcome.FAILED,
                               error=str(e), duration_s=time.monotonic() - start)
        except SwitchError as e:
            return Observation(t.name, Outcome.FAILED, error=str(e), duration_s=time.monotonic() - start)
        self.sessions.give(t, s, healthy=True)
        for line in s.platform.health(raw):
            self._log(t.name, line)
        return Observation(t.name, Outcome.NOOP, tuple(resources), duration_s=time.monotonic() - start)

    def running_config(self, target: Target) -> dict:
        """The platform's canonical running-config snapshot of one switch (tests, rollback)."""
        s = self._session(target)
        try:
            return s.platform.running_config(s.observe_raw())
        finally:
            s.close()

    # -- apply -------------------------------------------------------------------------
    def apply(self, plans: Sequence[TargetPlan], dry_run: bool = False) -> Mapping[str, ApplyResult]:
        items = []
        out: dict[str, ApplyResult] = {}
        for tp in plans:
            if not tp.changes:
                out[tp.target.name] = ApplyResult(tp.target.name, Outcome.NOOP, observed=tuple(tp.observed))
            elif dry_run:
                out[tp.target.name] = self._dry_run(tp)
            else:
                items.append((tp.target.name, lambda tp=tp: self._apply_one(tp)))
        out.update(self._fan_out(items, lambda name, el: ApplyResult(
            name, Outcome.FAILED, error=f"{name}: no result within the deadline ({el:.1f}s); "
                                        "the switch's state is unknown, observe it again", duration_s=el)))
        return out

    def _dry_run(self, tp: TargetPlan) -> ApplyResult:
        try:
            cmds = platform_of(tp.target.vars).render(tp.changes, tp.observed, tp.desired, tp.target.vars)
        except InvalidValue as e:
            return ApplyResult(tp.target.name, Outcome.FAILED, error=f"{tp.target.name}: {e}")
        return ApplyResult(tp.target.name, Outcome.DRY_RUN, details=tuple(c.text() for c in cmds))

    def _apply_one(self, tp: TargetPlan) -> ApplyResult:
        name, start = tp.target.name, time.monotonic()
        details: list[str] = []
        res = lambda outcome, **kw: ApplyResult(name, outcome, details=tuple(details),  # noqa: E731
                                                duration_s=time.monotonic() - start, **kw)
        try:
            s, before, raw_before = self._first_observe(tp.target)
        except (Unreachable, InvalidValue) as e:
            return res(Outcome.UNREACHABLE if isinstance(e, Unreachable) else Outcome.FAILED, error=str(e))
        except SwitchError as e:
            return res(Outcome.FAILED, error=f"{name}: {e}")  # nothing written
        healthy = False
        try:
            try:
                cfg_before = s.platform.running_config(raw_before)
                cmds = s.platform.render(tp.changes, before, tp.desired, tp.target.vars)
            except (SwitchError, InvalidValue) as e:
                return res(Outcome.FAILED, error=f"{name}: {e}")  # nothing written
            healthy = True
            if not cmds:
                return res(Outcome.NOOP, observed=tuple(before))
            details += [f"> {c.text()}" for c in cmds]
            self._log(name, f"sending {len(cmds)} command(s) in one session")
            sent = s.send_config(cmds)
            failure = ""
            failed_keys: tuple[str, ...] = ()
            if not sent.ok:
                bad = cmds[sent.failed_index] if 0 <= sent.failed_index < len(cmds) else None
                failure = (f"{name}: switch rejected command {sent.failed_index + 1}/{len(cmds)} "
                           f"`{bad.text() if bad else '?'}` (rc={sent.rc}): {_tail(sent.output) or 'no message'}")
                failed_keys = tuple(bad.key.split(",")) if bad and bad.key else ()
            else:
                after, raw_after = s.observe()
                problems = verify(tp.changes, after)
                if not problems:
                    self.verified[name] = tuple(after)
                    details += s.platform.health(raw_after)
                    # read back in this session: the engine takes it instead of observing again
                    return res(Outcome.APPLIED, writes=len(cmds), observed=tuple(after))
                failure = f"{name}: verification failed: " + "; ".join(f"{k}: {p}" for k, p in problems)
                failed_keys = tuple(k for k, _ in problems)
            details.append(f"! {failure}")
            self._log(name, failure, Outcome.FAILED)
            return self._rollback(s, tp, before, cfg_before, failure, failed_keys, len(cmds), details, res)
        except SwitchError as e:
            healthy = False   # the session's state is unknown: never reused
            return res(Outcome.FAILED, error=f"{name}: {e}; state unknown, observe again")
        finally:
            self.sessions.give(tp.target, s, healthy)

    def _rollback(self, s: Session, tp: TargetPlan, before: Sequence[Resource], cfg_before: dict,
                  failure: str, failed_keys: tuple, writes: int, details: list[str], res) -> ApplyResult:
        name = tp.target.name
        try:
            now, _ = s.observe()
            inverse = inverse_changes(tp.changes, before, now)
            cmds = s.platform.render(inverse, now, before, tp.target.vars)
            details += [f"rollback> {c.text()}" for c in cmds]
            if cmds:
                sent = s.send_config(cmds)
                writes += len(cmds)
                if not sent.ok:
                    raise SwitchError(f"rollback command {sent.failed_index + 1} rejected: {_tail(sent.output)}")
            final, raw_final = s.observe()
            cfg_now = s.platform.running_config(raw_final)
            if cfg_now != cfg_before:
                diff = sorted(k for k in cfg_before.keys() | cfg_now.keys() if cfg_before.get(k) != cfg_now.get(k))
                raise SwitchError(f"running config differs from the captured one after rollback "
                                  f"(sections: {', '.join(diff)})")
        except (SwitchError, InvalidValue) as e:
            msg = f"{failure}; ROLLBACK FAILED: {e}"
            details.append(f"! rollback failed: {e}")
            self._log(name, msg, Outcome.FAILED)
            return res(Outcome.FAILED, error=msg, writes=writes, failed_keys=failed_keys)
        details.append("rollback: running config equals the one captured before the change")
        self.verified[name] = tuple(final)
        self._log(name, "rolled back to the configuration captured before the change", Outcome.ROLLED_BACK)
        return res(Outcome.ROLLED_BACK, error=failure + "; rolled back to the captured configuration",
                   writes=writes, rolled_back=True, failed_keys=failed_keys, observed=tuple(final))


def make_switch_driver(**kwargs: Any) -> SwitchDriver:
    return SwitchDriver(**kwargs)
