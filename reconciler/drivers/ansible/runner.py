"""ansible-runner invocations covering every target with forks.

Contract: `run_plays([Play(name, hosts, layer), ...], hostvars, settings, files, gate)` runs
`playbooks/<name>` (one or several, in order, each restricted to its own hosts) in ONE
invocation against the user's inventory file, passed as is, with an Ansible `--limit` of all
the hosts: consecutive Ansible layers of one engine step share one process start. Per-host data reaches the playbook as extravars `ni[<host>]`; larger
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
path dir (later runs reuse the connections), host keys checked against the inventory's
`netintent_known_hosts` file when it names one (`reconciler lab up` writes it), else not
checked; no fact gathering, connection timeout. The private data dir is a temp dir removed after the run.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from reconciler.events import Event, EventKind
from reconciler.model import Layer

PLAYBOOK_DIR = Path(__file__).resolve().parents[3] / "playbooks"
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
    # known_hosts file to check host keys against (inventory `netintent_known_hosts`); None:
    # host keys are not checked (labs whose keys change on every `up`)
    known_hosts: str | None = None


KNOWN_HOSTS_RE = re.compile(r"^/[A-Za-z0-9_./+-]{1,4095}\Z")   # absolute, nothing ssh would split


def _env(s: RunSettings) -> dict[str, str]:
    # One control dir per inventory and host key mode: two labs that reuse an address never
    # share a master, and a master opened unchecked never serves a checked run.
    import hashlib
    tag = f"{os.path.abspath(s.inventory_path)}\0{s.known_hosts or ''}"
    cp = CONTROL_PATH_DIR / hashlib.blake2b(tag.encode(), digest_size=4).hexdigest()
    cp.mkdir(mode=0o700, parents=True, exist_ok=True)
    if s.known_hosts is not None:
        if not KNOWN_HOSTS_RE.match(s.known_hosts):
            raise ValueError(f"netintent_known_hosts: not an absolute file path: {s.known_hosts!r}")
        keys = f"-o StrictHostKeyChecking=yes -o UserKnownHostsFile={s.known_hosts} "
    else:
        keys = "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null "
    return {
        "ANSIBLE_PIPELINING": "True",
        "ANSIBLE_SSH_ARGS": "-o ControlMaster=auto -o ControlPersist=120s " + keys +
                            "-o ServerAliveInterval=5 -o ServerAliveCountMax=2",
        "ANSIBLE_SSH_CONTROL_PATH_DIR": str(cp),
        # `raw` observes read stdout and stderr apart; a pty would merge them and add CRs
        "ANSIBLE_SSH_USETTY": "False",
        "ANSIBLE_HOST_KEY_CHECKING": str(s.known_hosts is not None),
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
        "ANSIBLE_LIBRARY": str(PLAYBOOK_DIR / "library"),
    }


@dataclass(frozen=True)
class Play:
    """One of our playbooks for some hosts; `var` names the extravar restricting its `hosts:`
    when several run in one invocation (e.g. `ni_hosts_hypervisor`)."""

    playbook: str
    hosts: tuple[str, ...]
    layer: Layer | None = None

    @property
    def var(self) -> str:
        return f"ni_hosts_{self.layer.value if self.layer else 'all'}"


GATE_WAIT_S = 600   # how long a gated run waits for the layer below at most

# Waits on the controller until the engine says go (writes `go` into the FIFO `ni_gate`), so the
# ansible-playbook start-up overlaps the layer below it; anything else ends the run unapplied.
GATE_PLAY = """- name: wait for the layers below
  hosts: localhost
  gather_facts: false
  vars: {ansible_connection: local}
  tasks:
    - name: gate
      ansible.builtin.raw: cat {{ ni_gate | quote }}
      # bounded even if the engine is gone (kill -9): the run then ends without writing
      timeout: "{{ ni_gate_timeout }}"
      register: ni_gate_answer
      changed_when: false
      failed_when: ni_gate_answer.stdout | trim != 'go'
"""


def run_plays(plays: Sequence[Play], hostvars: Mapping[str, Mapping[str, Any]], settings: RunSettings,
              files: Mapping[str, Mapping[str, str]] | None = None, gate: str | None = None) -> dict[str, HostRun]:
    """Run several of our playbooks, in the given order, in ONE ansible-runner invocation (one
    process start instead of one per playbook; Ansible runs the plays one after the other, so
    their order is kept). Each playbook's `hosts:` is its own list (extravar `Play.var`); a host
    may appear in one play only. With `gate` (a FIFO path) the run first waits for `go` on it.
    One HostRun per host."""
    plays = [p for p in plays if p.hosts]
    hosts = [h for p in plays for h in p.hosts]
    if len(set(hosts)) != len(hosts):
        raise ValueError("a host may be in one play of a run only")
    layer_of = {h: p.layer for p in plays for h in p.hosts}
    out = {h: HostRun(h) for h in hosts}
    if not hosts:
        return out
    import ansible_runner  # imported lazily: heavy, and pure users of drivers don't need it

    tmp = Path(tempfile.mkdtemp(prefix="ni-runner-"))
    lock = threading.Lock()
    started: dict[tuple[str, str], float] = {}
    by_host = {h: p.playbook for p in plays for h in p.hosts}

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
                # ssh says why at the end (e.g. "Host key verification failed."): keep both ends
                hr.error = _ends(res.get("msg", "unreachable"))
            else:
                hr.failed_task = str(res.get("failed_step") or task)
                hr.error = _short(res.get("stderr") or res.get("msg") or "failed")
        if settings.publish is not None:
            dur = time.monotonic() - started.pop((host, task), time.monotonic())
            playbook = by_host[host]
            settings.publish(Event(EventKind.DRIVER_LOG, run_id=settings.run_id, layer=layer_of[host], target=host,
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
        limit = list(hosts)
        if len(plays) == 1 and gate is None:
            playbook_path = str(PLAYBOOK_DIR / plays[0].playbook)   # `hosts: all` within --limit
        else:
            # A wrapper importing our playbooks in order; only constant paths go into it (JSON
            # quoting is valid YAML), the host lists are extravars.
            playbook_path = str(tmp / "run.yml")
            Path(playbook_path).write_text((GATE_PLAY if gate else "") + "".join(
                f"- import_playbook: {json.dumps(str(PLAYBOOK_DIR / p.playbook))}\n" for p in plays))
            extravars.update({p.var: list(p.hosts) for p in plays})
            if gate:
                extravars.update(ni_gate=gate, ni_gate_timeout=GATE_WAIT_S)
                limit.append("localhost")
        # extravars go to a JSON file (not the command line): large payloads are fine.
        r = ansible_runner.run(
            private_data_dir=str(tmp), playbook=playbook_path,
            inventory=os.path.abspath(settings.inventory_path), limit=",".join(limit),
            extravars=extravars, envvars=_env(settings), forks=max(1, min(settings.forks, len(hosts))),
            event_handler=on_event, quiet=True,
            # a gated run also waits for the layer below: give it that much more time
            timeout=int(settings.timeout_s + (GATE_WAIT_S if gate else 0)),
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


def _ends(text: Any, head: int = 120, tail: int = 280) -> str:
    s = " ".join(str(text).split())
    return s if len(s) <= head + tail + 5 else f"{s[:head]} ... {s[-tail:]}"


def _short(text: Any, limit: int = 400) -> str:
    s = text if isinstance(text, str) else json.dumps(text, default=str)
    s = " ".join(s.split())
    return s if len(s) <= limit else s[:limit] + "..."
