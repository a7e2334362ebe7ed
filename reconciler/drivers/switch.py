"""Switch driver: leaf switches over SSH with netmiko, one config session per switch, rollback.

Contract (registered as "switch"; batched Protocol of base.py):
- Everything platform-specific comes from the target's `Platform` (platforms.py): observe
  sections, parsers, renderers (with negation rules), the running-config snapshot and the
  session style. This module has no per-platform branches.
- observe(targets): per switch one SSH login and one round trip running every observe
  section; parsed into compile/switch.py's kinds and spec shapes (exact diff).
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
  connect/auth/banner/read timeouts are `io_timeout_s` (default min(10, deadline/3)). A target past its deadline is reported UNREACHABLE/FAILED while the others
  finish; the batch never waits for it.
- Secrets: the key file path and password are given to netmiko only; nothing is logged or put
  in results except host names, commands (built from validated values) and device messages.
Last verified observation per target is kept in `driver.verified[target]`.
"""
from __future__ import annotations

import base64
import concurrent.futures as cf
import re
import shlex
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

from ..diff import diff_specs
from ..events import Event, EventKind
from ..model import Layer, Resource, State
from ..plan import make_plan
from ..status import Action, Outcome
from .base import ApplyResult, Observation, Target, TargetPlan, register
from .platforms import Command, InvalidValue, Platform, platform_of

CHUNK = 2000                # base64 chars per uploaded line (under the 4096-byte tty line limit)
BEGIN, END, FAIL = "@@NI-BEGIN", "@@NI-END", "@@NI-FAIL"


class SwitchError(RuntimeError):
    """A switch-side failure (command rejected, unparsable output); message is user-facing."""


class Unreachable(SwitchError):
    pass


@dataclass
class Sent:
    ok: bool
    output: str
    failed_index: int = -1   # index into the command list of the rejected command
    rc: int = 0


# ------------------------------------------------------------------------ one SSH session
class Session:
    """One netmiko connection to one switch (not thread-safe; one per worker)."""

    def __init__(self, target: Target, platform: Platform, timeout_s: float,
                 connect: Callable[..., Any] | None = None) -> None:
        self.target, self.platform, self.timeout_s = target, platform, timeout_s
        v = target.vars
        params: dict[str, Any] = {
            "device_type": str(v.get("netintent_device_type") or platform.device_type),
            "host": str(v.get("ansible_host", target.name)),
            "port": int(v.get("ansible_port", 22)),
            "username": str(v.get("ansible_user", "root")),
            "conn_timeout": timeout_s, "auth_timeout": timeout_s, "banner_timeout": timeout_s,
            "read_timeout_override": None, "session_timeout": timeout_s * 3,
            "allow_agent": False, "ssh_strict": False, "system_host_keys": False,
            "alt_host_keys": False, "fast_cli": True, "ssh_config_file": None,
        }
        key = v.get("ansible_ssh_private_key_file")
        if key:
            params.update(use_keys=True, key_file=str(key))
        if v.get("ansible_password"):
            params["password"] = str(v["ansible_password"])
        params = {k: val for k, val in params.items() if val is not None}
        if connect is None:
            from netmiko import ConnectHandler as connect  # imported lazily: slow import
        try:
            self.conn = connect(**params)
        except Exception as e:  # netmiko raises many types; all mean "not reachable"
            raise Unreachable(f"{target.name}: cannot log in to {params['host']}:{params['port']} "
                              f"as {params['username']}: {type(e).__name__}: {_first_line(e)}") from None

    def close(self) -> None:
        try:
            self.conn.disconnect()
        except Exception:
            pass

    def send(self, line: str, timeout: float | None = None) -> str:
        try:
            # No echo check: the terminal wraps long lines in the echo; markers delimit output.
            return self.conn.send_command(line, read_timeout=timeout or self.timeout_s,
                                          strip_prompt=True, strip_command=True, cmd_verify=False)
        except Exception as e:
            raise SwitchError(f"{self.target.name}: no answer to a command within "
                              f"{timeout or self.timeout_s:g}s: {type(e).__name__}") from None

    def run_script(self, script: str, timeout: float | None = None) -> str:
        """Upload `script` (base64, short lines) and run it with sh; returns its output."""
        b64 = base64.b64encode(script.encode()).decode()
        chunks = [b64[i:i + CHUNK] for i in range(0, len(b64), CHUNK)] or [""]
        self.send(f"ni_f=$(mktemp /tmp/netintent.XXXXXX) && printf %s {shlex.quote(chunks[0])} > \"$ni_f\"")
        for c in chunks[1:]:
            self.send(f"printf %s {shlex.quote(c)} >> \"$ni_f\"")
        return self.send('base64 -d "$ni_f" > "$ni_f.sh" && sh "$ni_f.sh" </dev/null 2>&1; '
                         'echo "@@NI-RC $?@@"; rm -f "$ni_f" "$ni_f.sh"', timeout)

    # -- observe ---------------------------------------------------------------------
    def observe_raw(self) -> dict[str, str]:
        tvars = {k: shlex.quote(v) for k, v in self.platform.template_vars(self.target.vars).items()}
        parts = []
        for sec in self.platform.observe:
            if sec.needs and self.target.vars.get(sec.needs) in (None, ""):
                continue
            parts.append(f"printf '\\n{BEGIN} {sec.name}@@\\n'; {sec.template.format(**tvars)} 2>&1; "
                         f"printf '\\n{END} {sec.name} %s@@\\n' \"$?\"")
        out = self.run_script("\n".join(parts) + "\n")
        raw: dict[str, str] = {}
        for m in re.finditer(rf"{BEGIN} (\S+)@@\r?\n(.*?)\r?\n{END} \1 (\d+)@@", out, re.S):
            name, text, rc = m.group(1), m.group(2), int(m.group(3))
            if rc != 0:
                raise SwitchError(f"{self.target.name}: observe section {name} failed (rc={rc}): "
                                  f"{_tail(text)}")
            raw[name] = text.replace("\r\n", "\n")
        missing = [s.name for s in self.platform.observe if s.name not in raw
                   and not (s.needs and self.target.vars.get(s.needs) in (None, ""))]
        if missing:
            raise SwitchError(f"{self.target.name}: no output for observe section(s) {', '.join(missing)}: "
                              f"{_tail(out)}")
        return raw

    def observe(self) -> tuple[list[Resource], dict[str, str]]:
        raw = self.observe_raw()
        try:
            return self.platform.parse(self.target.name, raw, self.target.vars), raw
        except (ValueError, KeyError, TypeError) as e:
            raise SwitchError(f"{self.target.name}: cannot parse switch output: {type(e).__name__}: {e}") from None

    # -- config session --------------------------------------------------------------
    def send_config(self, cmds: Sequence[Command]) -> Sent:
        lines = ["#!/bin/sh"]
        for i, c in enumerate(cmds):
            lines.append(f"{c.text()} || {{ ni_rc=$?; printf '\\n{FAIL} {i} %s@@\\n' \"$ni_rc\"; exit 1; }}")
        out = self.run_script("\n".join(lines) + "\n", timeout=self.timeout_s * 2)
        m = re.search(rf"{FAIL} (\d+) (\d+)@@", out)
        if m:
            return Sent(False, out[:m.start()].strip(), int(m.group(1)), int(m.group(2)))
        rc = re.search(r"@@NI-RC (\d+)@@", out)
        if rc is None or rc.group(1) != "0":
            return Sent(False, _tail(out), -1, int(rc.group(1)) if rc else -1)
        return Sent(True, out)


# ------------------------------------------------------------------------ helpers (pure)
def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0][:200] if text else ""


def _tail(text: str, n: int = 400) -> str:
    text = " | ".join(l.strip() for l in text.strip().splitlines() if l.strip() and "@@NI-" not in l)
    return text[-n:]


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
                 run_id: str = "", **_: Any) -> None:
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
        return self._fan_out([(t.name, lambda t=t: self._observe_one(t)) for t in targets],
                             lambda name, el: Observation(name, Outcome.UNREACHABLE,
                                                          error=f"{name}: no result within the deadline "
                                                                f"({el:.1f}s)", duration_s=el))

    def _observe_one(self, t: Target) -> Observation:
        start = time.monotonic()
        try:
            s = self._session(t)
        except (Unreachable, InvalidValue) as e:
            return Observation(t.name, Outcome.UNREACHABLE if isinstance(e, Unreachable) else Outcome.FAILED,
                               error=str(e), duration_s=time.monotonic() - start)
        try:
            resources, raw = s.observe()
            for line in s.platform.health(raw):
                self._log(t.name, line)
            return Observation(t.name, Outcome.NOOP, tuple(resources), duration_s=time.monotonic() - start)
        except (SwitchError, InvalidValue) as e:
            return Observation(t.name, Outcome.FAILED, error=str(e), duration_s=time.monotonic() - start)
        finally:
            s.close()

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
            s = self._session(tp.target)
        except (Unreachable, InvalidValue) as e:
            return res(Outcome.UNREACHABLE if isinstance(e, Unreachable) else Outcome.FAILED, error=str(e))
        try:
            try:
                before, raw_before = s.observe()
                cfg_before = s.platform.running_config(raw_before)
                cmds = s.platform.render(tp.changes, before, tp.desired, tp.target.vars)
            except (SwitchError, InvalidValue) as e:
                return res(Outcome.FAILED, error=f"{name}: {e}")  # nothing written
            if not cmds:
                return res(Outcome.NOOP, observed=tuple(before))
            details += [f"> {c.text()}" for c in cmds]
            self._log(name, f"sending {len(cmds)} command(s) in one session")
            sent = s.send_config(cmds)
            failure, failed_keys = "", ()
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
            return res(Outcome.FAILED, error=f"{name}: {e}; state unknown, observe again")
        finally:
            s.close()

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


@register("switch")
def make_switch_driver(**kwargs: Any) -> SwitchDriver:
    return SwitchDriver(**kwargs)
