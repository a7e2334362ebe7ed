"""One ansible-runner invocation per layer per call, covering every target with forks.

Contract: `run_playbook(name, inventory, hosts, hostvars, files, ...)` runs
`playbooks/<name>` once against `hosts` (an Ansible `--limit` over the user's inventory file,
which is passed as is). Per-host data reaches the playbook as extravars `ni[<host>]`; larger
payloads (nft scripts, `ip -batch` files, flow files) are written to files under the run's
private temp dir and read by the playbook with a `file` lookup, which Ansible never templates,
and fed to commands on stdin (never interpolated into a shell string).

Per-host results are collected from runner events (`runner_on_ok`, `runner_on_failed`,
`runner_on_unreachable`, `runner_on_skipped`), so one unreachable host becomes a
`HostRun(unreachable=True)` while the others succeed. Every runner event of a task result is
published as `EventKind.DRIVER_LOG` with host, task, status and duration only: module
arguments, stdin and stdout are never published (they may hold data the user considers
sensitive; secrets are never passed through here at all).

Transport settings (env): SSH pipelining, ControlMaster/ControlPersist with a stable control
path dir (later runs reuse the connections), host key checking off (lab), no fact gathering,
connection timeout. The private data dir is a temp dir removed after the run.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from ..events import Event, EventKind
from ..model import Layer

PLAYBOOK_DIR = Path(__file__).resolve().parents[2] / "playbooks"
CONTROL_PATH_DIR = Path(tempfile.gettempdir()) / "netintent-ansible-cp"
RESULT_EVENTS = {"runner_on_ok": "ok", "runner_on_failed": "failed",
                 "runner_on_unreachable": "unreachable", "runner_on_skipped": "skipped"}

Publish = Callable[[Event], None]


@dataclass
class HostRun:
    """What one host did in one playbook run."""

    host: str
    results: dict[str, dict] = field(default_factory=dict)  # task name -> module result (ok ones)
    failed_task: str = ""
    error: str = ""
    unreachable: bool = False
    skipped: set[str] = field(default_factory=set)

    @property
    def ok(self) -> bool:
        return not self.unreachable and not self.failed_task and not self.error


@dataclass(frozen=True)
class RunSettings:
    inventory_path: str
    publish: Publish | None = None
    timeout_s: float = 60.0          # whole run
    task_timeout_s: int = 30         # per task per host
    connect_timeout_s: int = 5
    forks: int = 50
    run_id: str = ""


def _env(s: RunSettings) -> dict[str, str]:
    # One control dir per inventory: two labs that reuse an address never share a master.
    import hashlib
    cp = CONTROL_PATH_DIR / hashlib.blake2b(os.path.abspath(s.inventory_path).encode(), digest_size=4).hexdigest()
    cp.mkdir(mode=0o700, parents=True, exist_ok=True)
    return {
        "ANSIBLE_PIPELINING": "True",
        "ANSIBLE_SSH_ARGS": "-o ControlMaster=auto -o ControlPersist=120s "
                            "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null "
                            "-o ServerAliveInterval=5 -o ServerAliveCountMax=2",
        "ANSIBLE_SSH_CONTROL_PATH_DIR": str(cp),
        # `raw` observes read stdout and stderr apart; a pty would merge them and add CRs
        "ANSIBLE_SSH_USETTY": "False",
        "ANSIBLE_HOST_KEY_CHECKING": "False",
        "ANSIBLE_TIMEOUT": str(s.connect_timeout_s),
        "ANSIBLE_SSH_RETRIES": "0",
        "ANSIBLE_GATHERING": "explicit",
        "ANSIBLE_RETRY_FILES_ENABLED": "False",
        "ANSIBLE_DEPRECATION_WARNINGS": "False",
        "ANSIBLE_LOCALHOST_WARNING": "False",
        "ANSIBLE_INVENTORY_UNPARSED_WARNING": "False",
        "ANSIBLE_SYSTEM_WARNINGS": "False",
        "ANSIBLE_NOCOLOR": "True",
        "PATH": _path_with_our_ansible(),
    }


def run_playbook(playbook: str, hosts: Sequence[str], hostvars: Mapping[str, Mapping[str, Any]],
                 settings: RunSettings, files: Mapping[str, Mapping[str, str]] | None = None,
                 layer: Layer | None = None) -> dict[str, HostRun]:
    """Run `playbooks/<playbook>` once for all `hosts`; return one HostRun per host."""
    out = {h: HostRun(h) for h in hosts}
    if not hosts:
        return out
    import ansible_runner  # imported lazily: heavy, and pure users of drivers don't need it

    tmp = Path(tempfile.mkdtemp(prefix="ni-runner-"))
    lock = threading.Lock()
    started: dict[tuple[str, str], float] = {}

    def on_event(ev: dict) -> bool:
        kind = ev.get("event", "")
        data = ev.get("event_data") or {}
        host, task = data.get("host", ""), data.get("task", "")
        if kind == "runner_on_start":
            started[(host, task)] = time.monotonic()
        status = RESULT_EVENTS.get(kind)
        if status is None or host not in out:
            return False  # don't keep stdout artifacts of other events
        res = data.get("res") or {}
        with lock:
            hr = out[host]
            if status == "ok":
                hr.results[task] = res
                if isinstance(res.get("steps"), dict):  # netintent_steps: one result per step
                    hr.results.update(res["steps"])
            elif status == "skipped":
                hr.skipped.add(task)
            elif status == "unreachable":
                hr.unreachable = True
                hr.error = _short(res.get("msg", "unreachable"))
            else:
                hr.failed_task = str(res.get("failed_step") or task)
                hr.error = _short(res.get("stderr") or res.get("msg") or "failed")
        if settings.publish is not None:
            dur = time.monotonic() - started.pop((host, task), time.monotonic())
            settings.publish(Event(EventKind.DRIVER_LOG, run_id=settings.run_id, layer=layer, target=host,
                                   message=f"{playbook}: {task}: {status}",
                                   data={"playbook": playbook, "task": task, "status": status,
                                         "duration_s": round(dur, 3),
                                         **({"error": hr.error} if status in ("failed", "unreachable") else {})}))
        return False

    try:
        fdir = tmp / "files"
        for host, named in (files or {}).items():
            hdir = fdir / host
            hdir.mkdir(parents=True, exist_ok=True)
            for name, text in named.items():
                (hdir / name).write_text(text)
        extravars = {"ni": {h: dict(hostvars.get(h, {})) for h in hosts}, "ni_files": str(fdir),
                     "ni_task_timeout": int(settings.task_timeout_s)}
        # extravars go to a JSON file (not the command line): large payloads are fine.
        r = ansible_runner.run(
            private_data_dir=str(tmp), playbook=str(PLAYBOOK_DIR / playbook),
            inventory=os.path.abspath(settings.inventory_path), limit=",".join(hosts),
            extravars=extravars, envvars=_env(settings), forks=max(1, min(settings.forks, len(hosts))),
            event_handler=on_event, quiet=True, timeout=int(settings.timeout_s),
            suppress_env_files=True, json_mode=False)
        rc_note = "" if r.status == "successful" else f"ansible run {r.status} (rc={r.rc})"
        for hr in out.values():
            if not hr.results and not hr.unreachable and not hr.failed_task and not hr.skipped:
                hr.error = rc_note or "no result from ansible (host not in inventory?)"
            elif r.status == "timeout" and not hr.error:
                hr.error = rc_note
        return out
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _path_with_our_ansible() -> str:
    """PATH with the bin dir of the environment we run in first, so ansible-runner starts the
    `ansible-playbook` installed with it (same Ansible version, no shell shim in front of it)."""
    import sys
    path = os.environ.get("PATH", os.defpath)
    bindir = Path(sys.executable).parent
    return f"{bindir}{os.pathsep}{path}" if (bindir / "ansible-playbook").exists() else path


def _short(text: Any, limit: int = 400) -> str:
    s = text if isinstance(text, str) else json.dumps(text, default=str)
    s = " ".join(s.split())
    return s if len(s) <= limit else s[:limit] + "..."


# ---------------------------------------------------------------------------- driver base
SEPARATOR = "@@NI@@"


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


class AnsibleDriver:
    """Batched Driver over ansible-runner: subclasses give the playbooks, `parse` (stdout of the
    observe task -> resources) and `render` (TargetPlan -> Rendered). Results per host; nothing
    raises for one bad target."""

    layer: Layer
    observe_playbook: str
    apply_playbook: str
    # tasks allowed to fail (`failed_when: false` in the playbook): their rc/stderr become details,
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
        import dataclasses
        self.settings = dataclasses.replace(self.settings, run_id=value)

    # -- subclass hooks
    def parse(self, target: str, stdout: str) -> list:
        raise NotImplementedError

    def render(self, plan: Any) -> Rendered:
        raise NotImplementedError

    # -- Protocol
    def observe(self, targets: Sequence[Any]) -> dict[str, Any]:
        from .base import Observation
        from ..status import Outcome
        t0 = time.monotonic()
        runs = run_playbook(self.observe_playbook, [t.name for t in targets], {}, self.settings, layer=self.layer)
        dur = time.monotonic() - t0
        return {t.name: self._observation(runs[t.name], "observe", dur) for t in targets}

    def _observation(self, hr: HostRun, task: str, dur: float) -> Any:
        from .base import Observation
        from ..status import Outcome
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

    def apply(self, plans: Sequence[Any], dry_run: bool = False) -> dict[str, Any]:
        from .base import ApplyResult
        from ..status import Outcome
        t0 = time.monotonic()
        results: dict[str, Any] = {}
        rendered: dict[str, Rendered] = {}
        for p in plans:
            name = p.target.name
            try:
                rendered[name] = self.render(p)
            except ValueError as e:
                results[name] = ApplyResult(name, Outcome.FAILED, error=f"{self.layer.value}/{name}: {e}")
        if dry_run:
            for name, r in rendered.items():
                results[name] = ApplyResult(name, Outcome.DRY_RUN if r.writes else Outcome.NOOP, 0,
                                            details=tuple(r.details))
            return results
        by_name = {p.target.name: p for p in plans}
        todo = [n for n, r in rendered.items() if r.writes]
        for n, r in rendered.items():
            if not r.writes:  # not contacted: the state it was planned on is still the latest read
                results[n] = ApplyResult(n, Outcome.NOOP, 0, details=tuple(r.details),
                                         observed=tuple(by_name[n].observed))
        runs = run_playbook(self.apply_playbook, todo, {n: {**rendered[n].hostvars, "verify": True} for n in todo},
                            self.settings, layer=self.layer,
                            files={n: {**dict.fromkeys(self.apply_files, ""), **rendered[n].files} for n in todo})
        dur = time.monotonic() - t0
        for n in todo:
            hr, r = runs[n], rendered[n]
            if hr.unreachable:
                results[n] = ApplyResult(n, Outcome.UNREACHABLE, 0, error=hr.error, details=tuple(r.details),
                                         duration_s=dur)
                continue
            if not hr.ok:
                results[n] = ApplyResult(n, Outcome.FAILED, r.writes, error=f"{hr.failed_task}: {hr.error}",
                                         details=tuple(r.details), duration_s=dur)
                continue
            soft = [f"{t}: rc={hr.results[t].get('rc')} {_short(hr.results[t].get('stderr', ''), 200)}"
                    for t in self.soft_tasks if t in hr.results and hr.results[t].get("rc")]
            obs = self._observation(hr, "observe", dur)
            self.verified[n] = obs
            bad = self.verify(by_name[n], obs.resources) if obs.ok else ["(verify observe failed)"]
            readback = obs.resources if obs.ok else None   # the engine may use it as the next observation
            if bad:
                results[n] = ApplyResult(n, Outcome.FAILED, r.writes, error="not converged after apply: "
                                         + ", ".join(map(str, bad[:10])) + "".join(f"; {x}" for x in soft),
                                         details=tuple(r.details + soft),
                                         duration_s=dur, failed_keys=tuple(map(str, bad)), observed=readback)
            else:
                results[n] = ApplyResult(n, Outcome.APPLIED, r.writes, details=tuple(r.details + soft),
                                         duration_s=dur, observed=readback)
        return results

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

    def prunable(self, resource: Any) -> bool:
        return True
