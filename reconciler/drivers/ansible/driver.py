"""Base of the drivers that work through Ansible (host, hypervisor): the batched Driver Protocol
over `ansible.run_plays`.

Contract: a subclass gives its apply playbook (its observe command is in playbooks/observe.yml
under its layer's name), `parse` (stdout of the observe step -> resources)
and `render` (TargetPlan -> Rendered: extravars, files, a count of writes).
- observe(targets): one Observation per target: read over kept ssh shells with the observe
  playbook's own commands (observe_ssh.py), and one ansible-runner run for the targets those
  cannot serve (not plain key-based ssh, or the read failed), which Ansible then reports.
  observe_together([(driver, targets), ...]) does several layers in one run and one play
  (playbooks/observe.yml picks each target's command by its layer).
- apply(plans): targets with nothing to write are not contacted (NOOP, their planned-on
  observation is returned as the read-back); the others go in one run whose apply step ends
  with an observe in the same module call: APPLIED only when every key in the plan's scope now
  matches (else FAILED with `failed_keys`); that observation is `ApplyResult.observed` and
  `driver.verified[target]`.
- apply_together([(driver, plans), ...]): the same for several layers in ONE ansible-runner
  run, one play per layer in the given order (Ansible finishes a play on every host before it
  starts the next, so the engine's layer order holds). Drivers whose `fuse_key` is equal may
  be combined. `prestart(parts)` starts such a run before the layer below is done: it waits at a
  gate (a FIFO read by a first play on the controller) until `go()`, so the process start-up
  (most of a short run) overlaps the layer below and nothing is sent early. When Ansible stops
  before a later play (it does when every host of a play
  failed), the layers that got no result at all are run again on their own, so a failed
  underlay never silently skips the layers above it (the engine's rule, as without fusion).
Nothing raises for one bad target: unreachable and failed hosts are results.
"""
from __future__ import annotations

import dataclasses
import errno
import os
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from reconciler.drivers.ansible import observe_ssh
from reconciler.drivers.ansible.runner import HostRun, Play, Publish, RunSettings, _short, run_plays
from reconciler.drivers.base import ApplyResult, Observation
from reconciler.model import Layer
from reconciler.status import Outcome

SEPARATOR = "@@NI@@"
OBSERVE_PLAYBOOK = "observe.yml"   # one playbook for every Ansible layer, command by layer


@dataclass
class Rendered:
    """What the driver will send to one target: extravars, files and a count of writes."""

    hostvars: dict[str, Any] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)
    writes: int = 0
    details: list[str] = field(default_factory=list)


def plan_scope(plan: Any) -> set | None:
    """Keys a TargetPlan asks to change: the keys of its `changes` when they carry one; None
    (everything in the target's desired/observed) when the changes don't say."""
    keys = {getattr(c, "key", None) for c in plan.changes}
    keys.discard(None)
    return keys or None


@dataclass
class _Prepared:
    """One layer's part of an apply: results known without contacting anyone, and the rest."""

    driver: "AnsibleDriver"
    results: dict[str, ApplyResult]
    rendered: dict[str, Rendered]
    todo: list[str]
    by_name: dict[str, Any]

    def play(self) -> Play:
        return Play(self.driver.apply_playbook, tuple(self.todo), self.driver.layer)

    def hostvars(self) -> dict[str, dict]:
        return {n: {**self.rendered[n].hostvars, "verify": True} for n in self.todo}

    def files(self) -> dict[str, dict[str, str]]:
        empty = dict.fromkeys(self.driver.apply_files, "")
        return {n: {**empty, **self.rendered[n].files} for n in self.todo}


class AnsibleDriver:
    """Batched Driver over ansible-runner (see the module docstring)."""

    layer: Layer
    apply_playbook: str
    # tasks allowed to fail (`soft` steps in the playbook): their rc/stderr become details,
    # and the verify observation decides the outcome
    soft_tasks: tuple[str, ...] = ()
    # files the apply playbook reads with a `file` lookup: written empty when there is nothing
    # to send (the step is then skipped on the host)
    apply_files: tuple[str, ...] = ()

    def __init__(self, inventory_path: str, publish: Publish | None = None, timeout_s: float = 60.0,
                 task_timeout_s: int = 30, connect_timeout_s: int = 5, forks: int = 50, run_id: str = "",
                 **_ignored: Any) -> None:
        self.settings = RunSettings(str(inventory_path), publish, timeout_s, task_timeout_s, connect_timeout_s,
                                    forks, run_id)
        # Observation made in the apply session right after writing (verify step), per target;
        # also returned as ApplyResult.observed.
        self.verified: dict[str, Any] = {}

    @property
    def run_id(self) -> str:
        return self.settings.run_id

    @run_id.setter
    def run_id(self, value: str) -> None:
        """The engine may set the current run id so DRIVER_LOG events carry it."""
        self.settings = dataclasses.replace(self.settings, run_id=value)

    @property
    def fuse_key(self) -> tuple:
        """Drivers with equal keys can share one ansible-runner run (same inventory and limits)."""
        s = self.settings
        return ("ansible", s.inventory_path, s.timeout_s, s.task_timeout_s, s.connect_timeout_s, s.forks)

    # -- subclass hooks
    def parse(self, target: str, stdout: str) -> list:
        raise NotImplementedError

    def render(self, plan: Any) -> Rendered:
        raise NotImplementedError

    def prunable(self, resource: Any) -> bool:
        return True

    # -- Protocol
    def observe(self, targets: Sequence[Any]) -> dict[str, Any]:
        return self.observe_together([(self, targets)])[0]

    @staticmethod
    def observe_together(parts: Sequence[tuple["AnsibleDriver", Sequence[Any]]]) -> list[dict[str, Any]]:
        """Observe several layers in one run: ONE play over all their targets (the observe
        playbook picks each target's command by its layer), so they are read in parallel."""
        t0 = time.monotonic()
        settings = parts[0][0].settings
        # the same commands over kept ssh shells first (bounded as Ansible bounds them: its connect
        # and task timeouts); Ansible reads, and reports, the rest
        bound = settings.connect_timeout_s + settings.task_timeout_s
        read = observe_ssh.read([(d.layer, ts) for d, ts in parts], bound) if observe_ssh.enabled() else {}
        rest = [t for _, ts in parts for t in ts if t.name not in read]
        runs = run_plays([Play(OBSERVE_PLAYBOOK, tuple(t.name for t in rest))],
                         {t.name: {"layer": d.layer.value} for d, ts in parts for t in ts if t.name not in read},
                         _settings(settings, rest)) if rest else {}
        for name, stdout in read.items():
            runs[name] = HostRun(name, results={"observe": {"stdout": stdout}})
        dur = time.monotonic() - t0
        return [{t.name: d._observation(runs[t.name], "observe", dur) for t in ts} for d, ts in parts]

    def apply(self, plans: Sequence[Any], dry_run: bool = False) -> dict[str, Any]:
        return self.apply_together([(self, plans)], dry_run)[0]

    @staticmethod
    def apply_together(parts: Sequence[tuple["AnsibleDriver", Sequence[Any]]],
                       dry_run: bool = False, gate: "Gate | None" = None) -> list[dict[str, Any]]:
        """Apply several layers' plans in one run, one play per part in order; results per part.
        With `gate`, the run starts at once but writes nothing before `gate.go()`."""
        t0 = time.monotonic()
        prepared = [d._prepare(plans, dry_run) for d, plans in parts]
        if dry_run:
            return [p.results for p in prepared]
        pending = [p for p in prepared if p.todo]
        while pending:
            runs = run_plays([p.play() for p in pending], {k: v for p in pending for k, v in p.hostvars().items()},
                             _settings(pending[0].driver.settings,
                                       [p.by_name[n].target for p in pending for n in p.todo]),
                             files={k: v for p in pending for k, v in p.files().items()},
                             gate=gate.path if gate is not None else None)
            if gate is not None and not gate.opened:
                for p in pending:      # stopped at the gate: nothing was sent
                    for n in p.todo:
                        why = ("not applied: the run was stopped before this layer" if gate.stopped
                               else runs[n].error or "not applied: the run ended before the gate opened")
                        p.results[n] = ApplyResult(n, Outcome.FAILED, error=why, details=tuple(p.rendered[n].details))
                break
            gate = None
            dur = time.monotonic() - t0
            done = [p for p in pending if p is pending[0] or any(_touched(runs[n]) for n in p.todo)]
            for p in done:
                p.driver._finish(p, runs, dur)
            # Ansible ends a run when every host of a play failed: run the untouched layers alone
            pending = [p for p in pending if p not in done]
        return [p.results for p in prepared]

    @staticmethod
    def prestart(parts: Sequence[tuple["AnsibleDriver", Sequence[Any]]]) -> "Prestarted":
        """Start `apply_together(parts)` now, gated: ansible-playbook starts up (the costly part
        of a short run) while the layer below is still being applied, and sends nothing before
        `go()`. `result()` waits for the results; `go(False)` stops it unapplied."""
        return Prestarted(parts)

    # -- steps of apply
    def _prepare(self, plans: Sequence[Any], dry_run: bool) -> _Prepared:
        results: dict[str, ApplyResult] = {}
        rendered: dict[str, Rendered] = {}
        for p in plans:
            name = p.target.name
            try:
                rendered[name] = self.render(p)
            except ValueError as e:
                results[name] = ApplyResult(name, Outcome.FAILED, error=f"{self.layer.value}/{name}: {e}")
        by_name = {p.target.name: p for p in plans}
        if dry_run:
            for name, r in rendered.items():
                results[name] = ApplyResult(name, Outcome.DRY_RUN if r.writes else Outcome.NOOP, 0,
                                            details=tuple(r.details))
            return _Prepared(self, results, rendered, [], by_name)
        for n, r in rendered.items():
            if not r.writes:  # not contacted: the state it was planned on is still the latest read
                results[n] = ApplyResult(n, Outcome.NOOP, 0, details=tuple(r.details),
                                         observed=tuple(by_name[n].observed))
        return _Prepared(self, results, rendered, [n for n, r in rendered.items() if r.writes], by_name)

    def _finish(self, p: _Prepared, runs: dict[str, HostRun], dur: float) -> None:
        for n in p.todo:
            hr, r = runs[n], p.rendered[n]
            if hr.unreachable:
                p.results[n] = ApplyResult(n, Outcome.UNREACHABLE, 0, error=hr.error, details=tuple(r.details),
                                           duration_s=dur)
                continue
            if not hr.ok:
                p.results[n] = ApplyResult(n, Outcome.FAILED, r.writes, error=f"{hr.failed_task}: {hr.error}",
                                           details=tuple(r.details), duration_s=dur)
                continue
            soft = [f"{t}: rc={hr.results[t].get('rc')} {_short(hr.results[t].get('stderr', ''), 200)}"
                    for t in self.soft_tasks if t in hr.results and hr.results[t].get("rc")]
            obs = self._observation(hr, "observe", dur)
            self.verified[n] = obs
            bad = self.verify(p.by_name[n], obs.resources) if obs.ok else ["(verify observe failed)"]
            readback = obs.resources if obs.ok else None   # the engine may use it as the next observation
            if bad:
                p.results[n] = ApplyResult(n, Outcome.FAILED, r.writes, error="not converged after apply: "
                                           + ", ".join(map(str, bad[:10])) + "".join(f"; {x}" for x in soft),
                                           details=tuple(r.details + soft),
                                           duration_s=dur, failed_keys=tuple(map(str, bad)), observed=readback)
            else:
                p.results[n] = ApplyResult(n, Outcome.APPLIED, r.writes, details=tuple(r.details + soft),
                                           duration_s=dur, observed=readback)

    def _observation(self, hr: HostRun, task: str, dur: float) -> Observation:
        if hr.unreachable:
            return Observation(hr.host, Outcome.UNREACHABLE, error=hr.error, duration_s=dur)
        if not hr.ok or task not in hr.results:
            return Observation(hr.host, Outcome.FAILED, error=hr.error or f"no {task} result", duration_s=dur)
        try:
            resources = tuple(self.parse(hr.host, hr.results[task].get("stdout", "")))
        except (ValueError, KeyError, TypeError) as e:
            return Observation(hr.host, Outcome.FAILED, error=f"cannot parse {self.layer.value} state: {e}",
                               duration_s=dur)
        return Observation(hr.host, Outcome.NOOP, resources, duration_s=dur)

    def verify(self, plan: Any, observed: Sequence[Any]) -> list:
        """Keys in the plan's scope that the post-apply observation does not show as desired."""
        scope = plan_scope(plan)
        obs = {r.key: r for r in observed}
        bad = []
        for d in plan.desired:
            if scope is not None and d.key not in scope:
                continue
            o = obs.get(d.key)
            if o is None or not o.owned or o.spec != d.spec:
                bad.append(d.key)
        if plan.prune:
            want = {d.key for d in plan.desired}
            for o in plan.observed:
                if o.owned and o.key not in want and (scope is None or o.key in scope) \
                        and o.key in obs and obs[o.key].owned and self.prunable(o):
                    bad.append(o.key)
        return bad


class Gate:
    """A FIFO the gated run's first play reads: `go` lets it on, anything else stops it."""

    def __init__(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="ni-gate-")
        self.path = os.path.join(self.dir, "gate")
        os.mkfifo(self.path, 0o600)
        self.opened = self.stopped = False

    def open(self, go: bool, alive: Callable[[], bool], deadline_s: float) -> None:
        self.opened, self.stopped = go, not go
        end = time.monotonic() + deadline_s
        while True:
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_NONBLOCK)
                break
            except OSError as e:          # ENXIO: the run is not reading yet (still starting)
                if e.errno != errno.ENXIO or not alive() or time.monotonic() > end:
                    return
                time.sleep(0.005)
        try:
            os.write(fd, b"go\n" if go else b"stop\n")
        finally:
            os.close(fd)

    def remove(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


class Prestarted:
    """A gated `apply_together` running in a thread (see AnsibleDriver.prestart)."""

    def __init__(self, parts: Sequence[tuple[AnsibleDriver, Sequence[Any]]]) -> None:
        self.gate = Gate()
        self.deadline_s = parts[0][0].settings.timeout_s   # to reach the gate: a start-up, not a wait
        self._out: list[dict[str, Any]] | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(list(parts),), name="ni-ansible-prestart",
                                        daemon=True)
        self._thread.start()

    def _run(self, parts: list) -> None:
        try:
            self._out = AnsibleDriver.apply_together(parts, gate=self.gate)
        except BaseException as e:  # handed to the caller of result()
            self._error = e

    def go(self, go: bool = True) -> None:
        self.gate.open(go, self._thread.is_alive, self.deadline_s)

    def result(self) -> list[dict[str, Any]]:
        self._thread.join()
        self.gate.remove()
        if self._error is not None:
            raise self._error
        assert self._out is not None
        return self._out


def _settings(settings: RunSettings, targets: Sequence[Any]) -> RunSettings:
    """The run's settings with the targets' `netintent_known_hosts` (one file for one run)."""
    files = {str(t.vars["netintent_known_hosts"]) for t in targets if t.vars.get("netintent_known_hosts")}
    if len(files) > 1:
        raise ValueError(f"targets of one run name different netintent_known_hosts files: {sorted(files)}")
    return dataclasses.replace(settings, known_hosts=files.pop() if files else None)


def _touched(hr: HostRun) -> bool:
    """The run reached this host's play (any result at all)."""
    return bool(hr.results or hr.unreachable or hr.failed_task or hr.skipped)
