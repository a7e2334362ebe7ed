"""ansible-playbook runs covering every target with forks, started without forking this process.

Contract: `run_plays([Play(name, hosts, layer), ...], hostvars, settings, files, gate)` runs
`playbooks/<name>` (one or several, in order, each restricted to its own hosts) in ONE
ansible-playbook process against the user's inventory file, passed as is, with an Ansible
`--limit` of all the hosts: consecutive Ansible layers of one engine step share one process
start. Per-host data reaches the playbook as extravars `ni[<host>]` (in a private JSON file,
`-e @file`: never on a command line); larger payloads (nft scripts, `ip -batch` files, flow
files) are written to files under the run's private temp dir and read by the playbook with a
`file` lookup, which Ansible never templates, and fed to commands on stdin (never interpolated
into a shell string).

Process model (fork-safe): this process also runs gRPC (the sidecar driver), so it never forks.
ansible-runner prepares the run (command, environment, its event callback plugin) and
ansible-playbook is started with subprocess.Popen (vfork+exec: no fork handlers run) in a
session of its own; its output is decoded into runner events as it arrives. A run ends at its
timeout (settings.timeout_s, plus GATE_WAIT_S when gated) or when `settings.cancel()` says so:
its process tree is killed, as it is when the following thread raises (e.g. KeyboardInterrupt).
No signal handler is installed (ansible-runner's own launcher takes SIGINT/SIGTERM in the main
thread).

Per-host results are collected from runner events (`runner_on_ok`, `runner_on_failed`,
`runner_on_unreachable`, `runner_on_skipped`), so one unreachable host becomes a
`HostRun(unreachable=True)` while the others succeed; a host the run said nothing about gets
the run's end (`ansible run failed (rc=2)`) as its error. Every runner event of a task result is
published as `EventKind.DRIVER_LOG` with host, task, status and duration only: module
arguments, stdin and stdout are never published (they may hold data the user considers
sensitive; secrets are never passed through here at all).

Transport settings (env): SSH pipelining, ControlMaster/ControlPersist with a stable control
path dir (later runs reuse the connections), host keys checked against the inventory's
`netintent_known_hosts` file when it names one (`reconciler lab up` writes it), else not
checked; no fact gathering, connection timeout. The private data dir is a temp dir removed after the run.
"""
from __future__ import annotations

import codecs
import json
import os
import re
import selectors
import shlex
import shutil
import signal
import subprocess
import tempfile
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
    # asked every POLL_S while a run goes on: True ends it (its processes are killed; hosts
    # without a result get "ansible run canceled"). None: only the timeout ends a run early.
    cancel: Callable[[], bool] | None = None


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
    """Run several of our playbooks, in the given order, in ONE ansible-playbook process (one
    process start instead of one per playbook; Ansible runs the plays one after the other, so
    their order is kept). Each playbook's `hosts:` is its own list (extravar `Play.var`); a host
    may appear in one play only. With `gate` (a FIFO path) the run first waits for `go` on it.
    One HostRun per host."""
    plays = [p for p in plays if p.hosts]
    hosts = [h for p in plays for h in p.hosts]
    if len(set(hosts)) != len(hosts):
        raise ValueError("a host may be in one play of a run only")
    out = {h: HostRun(h) for h in hosts}
    if not hosts:
        return out
    tmp = Path(tempfile.mkdtemp(prefix="ni-runner-"))
    try:
        invocation = _invocation(plays, hostvars, settings, _write_files(tmp, files or {}), tmp, gate)
        status, note = _run_ansible(invocation, settings, _Collector(plays, out, settings).on_event)
        _settle(out, status, note)
        return out
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@dataclass(frozen=True)
class _Invocation:
    """One ansible-playbook run: what to run, on which hosts, with what, for how long."""

    private_dir: Path
    playbook: str
    inventory: str
    limit: tuple[str, ...]
    extravars_file: Path
    forks: int
    timeout_s: float


def _write_files(tmp: Path, files: Mapping[str, Mapping[str, str]]) -> Path:
    """Payload files, one dir per host, read by the playbooks with a `file` lookup (never templated)."""
    fdir = tmp / "files"
    for host, named in files.items():
        hdir = fdir / host
        hdir.mkdir(parents=True, exist_ok=True)
        for name, text in named.items():
            (hdir / name).write_text(text)
    return fdir


def _invocation(plays: Sequence[Play], hostvars: Mapping[str, Mapping[str, Any]], settings: RunSettings,
                fdir: Path, tmp: Path, gate: str | None) -> _Invocation:
    hosts = [h for p in plays for h in p.hosts]
    extravars: dict[str, Any] = {"ni": {h: dict(hostvars.get(h, {})) for h in hosts}, "ni_files": str(fdir),
                                 "ni_task_timeout": int(settings.task_timeout_s)}
    limit = list(hosts)
    if len(plays) == 1 and gate is None:
        playbook = str(PLAYBOOK_DIR / plays[0].playbook)   # `hosts: all` within --limit
    else:
        # A wrapper importing our playbooks in order; only constant paths go into it (JSON
        # quoting is valid YAML), the host lists are extravars.
        playbook = str(tmp / "run.yml")
        Path(playbook).write_text((GATE_PLAY if gate else "") + "".join(
            f"- import_playbook: {json.dumps(str(PLAYBOOK_DIR / p.playbook))}\n" for p in plays))
        extravars.update({p.var: list(p.hosts) for p in plays})
        if gate:
            extravars.update(ni_gate=gate, ni_gate_timeout=GATE_WAIT_S)
            limit.append("localhost")
    # Extravars go to a private JSON file read with `-e @file`, not onto the command line:
    # large payloads are fine (one argument is at most 128 KiB) and `ps` never shows them.
    extravars_file = tmp / "extravars.json"
    fd = os.open(extravars_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(extravars, f)
    return _Invocation(tmp, playbook, os.path.abspath(settings.inventory_path), tuple(limit), extravars_file,
                       max(1, min(settings.forks, len(hosts))),
                       # a gated run also waits for the layer below: give it that much more time
                       settings.timeout_s + (GATE_WAIT_S if gate else 0))


class _Collector:
    """Per-host results and DRIVER_LOG events from the runner events of one run. Called from the
    one thread that follows the run's output."""

    def __init__(self, plays: Sequence[Play], out: dict[str, HostRun], settings: RunSettings) -> None:
        self.out, self.settings = out, settings
        self.layer_of = {h: p.layer for p in plays for h in p.hosts}
        self.playbook_of = {h: p.playbook for p in plays for h in p.hosts}
        self.started: dict[tuple[str, str], float] = {}

    def on_event(self, ev: dict) -> bool:
        kind = ev.get("event", "")
        data = ev.get("event_data") or {}
        host, task = data.get("host", ""), data.get("task", "")
        if kind == "runner_on_start":
            self.started[(host, task)] = time.monotonic()
        status = RESULT_EVENTS.get(kind)
        if status is None or host not in self.out:
            return False  # don't keep stdout artifacts of other events
        hr = self.out[host]
        _record(hr, status, task, data.get("res") or {})
        if self.settings.publish is not None:
            dur = time.monotonic() - self.started.pop((host, task), time.monotonic())
            playbook = self.playbook_of[host]
            self.settings.publish(Event(
                EventKind.DRIVER_LOG, run_id=self.settings.run_id, layer=self.layer_of[host], target=host,
                message=f"{playbook}: {task}: {status}",
                data={"playbook": playbook, "task": task, "status": status, "duration_s": round(dur, 3),
                      **({"error": hr.error} if status in ("failed", "unreachable") else {})}))
        return False


def _record(hr: HostRun, status: str, task: str, res: dict) -> None:
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


def _settle(out: dict[str, HostRun], status: str, note: str) -> None:
    """Hosts the run said nothing about get the run's end (`note`) as their error; after a
    timeout or a cancel, so do those whose results may be partial."""
    for hr in out.values():
        if not hr.results and not hr.unreachable and not hr.failed_task and not hr.skipped:
            hr.error = note or "no result from ansible (host not in inventory?)"
        elif status in ("timeout", "canceled") and not hr.error:
            hr.error = note


# ---- the ansible-playbook process ----------------------------------------------------------
# Fork-safe process model. The Ansible drivers share their process with gRPC (the sidecar
# driver's ADS server and CSDS channels). gRPC registers fork handlers (pthread_atfork), and a
# fork() of a process whose gRPC threads are running can leave the child with a broken poller
# (`epoll_wait error: Bad file descriptor`, `Check failed: next_worker->state == KICKED`): it
# dies before it execs ansible-playbook, about 1 run in 11 (`ansible run failed (rc=None)`).
# ansible-runner's own launcher forks this process (pexpect -> pty.fork). So ansible-runner only
# prepares the run here (command, environment, its event callback plugin, artifact dir), and
# subprocess.Popen starts ansible-playbook: without preexec_fn, user or group changes it spawns
# with vfork+exec (CPython >= 3.10 on Linux), which runs no fork handlers, Python's or gRPC's,
# and copies no gRPC state into a child. The events ansible-runner's callback plugin encodes in
# the output are decoded by its own OutputEventFilter as the output arrives, so events still
# stream. A timeout or a cancel kills the run's process tree, and so does any exception in the
# thread following the run (no orphan ansible-playbook, worker or ssh client). Its own session
# keeps terminal signals (Ctrl-C) to this process: the run is ended by this code, not by them.
POLL_S = 0.1           # how often a run checks its deadline and its cancel flag
READ_CHUNKS = 64       # reads of 64 KiB per poll at most, so a chatty run still sees its deadline


def _run_ansible(inv: _Invocation, settings: RunSettings, on_event: Callable[[dict], bool]) -> tuple[str, str]:
    """Start ansible-playbook and follow it to its end: (status, note); status is one of
    successful, failed, timeout, canceled; the note says how it ended ("" when successful)."""
    # imported lazily: heavy, and pure users of drivers don't need it
    from ansible_runner.interface import init_runner
    from ansible_runner.utils import OutputEventFilter

    runner = init_runner(
        private_data_dir=str(inv.private_dir), playbook=inv.playbook, inventory=inv.inventory,
        limit=",".join(inv.limit), cmdline=f"-e @{shlex.quote(str(inv.extravars_file))}",
        envvars=_env(settings), forks=inv.forks, event_handler=on_event, quiet=True,
        suppress_env_files=True, json_mode=False,
        cancel_callback=lambda: False)   # given, so ansible-runner installs no SIGINT/SIGTERM handler
    cfg = runner.config
    os.makedirs(os.path.join(cfg.artifact_dir, "job_events"), mode=0o700, exist_ok=True)
    sink = OutputEventFilter(None, runner.event_callback, suppress_ansible_output=True)
    env = {str(k): str(v) for k, v in cfg.env.items()}
    try:
        proc = subprocess.Popen([str(a) for a in cfg.command], cwd=cfg.cwd, env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, close_fds=True,
                                start_new_session=True)
    except OSError as e:
        return "failed", f"ansible run not started: {cfg.command[0]}: {e.strerror}"
    assert proc.stdout is not None
    try:
        ended = _follow(proc, sink, time.monotonic() + inv.timeout_s, settings.cancel)
    finally:
        if proc.poll() is None:       # timeout, cancel, or an exception here (e.g. KeyboardInterrupt)
            _end_run(proc)
        proc.stdout.close()
    sink.close()
    status = ended or ("successful" if proc.returncode == 0 else "failed")
    return status, "" if status == "successful" else f"ansible run {status} (rc={proc.returncode})"


def _follow(proc: subprocess.Popen, sink: Any, deadline: float, cancel: Callable[[], bool] | None) -> str:
    """Feed the run's output to `sink` until ansible-playbook ends; "" then, else "timeout" or
    "canceled" (the caller kills the run)."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    os.set_blocking(fd, False)
    decode = codecs.getincrementaldecoder("utf-8")(errors="replace").decode
    with selectors.DefaultSelector() as sel:
        sel.register(fd, selectors.EVENT_READ)
        reading = True
        while proc.poll() is None:
            if reading:
                if sel.select(POLL_S):
                    reading = _pump(fd, decode, sink) != "eof"
            else:                     # output closed early: only the exit is left to wait for
                try:
                    proc.wait(POLL_S)
                except subprocess.TimeoutExpired:
                    pass
            if cancel is not None and cancel():
                return "canceled"
            if time.monotonic() > deadline:
                return "timeout"
    # It ended: all it wrote is in the pipe. Read that, without waiting for EOF: a process it
    # left behind (an ssh ControlPersist master) may hold the pipe open.
    state = "more" if reading else "eof"
    for _ in range(1 << 10):
        if state != "more":
            break
        state = _pump(fd, decode, sink)
    return ""


def _pump(fd: int, decode: Callable[..., str], sink: Any) -> str:
    """Read what the pipe holds now into `sink`, at most READ_CHUNKS reads: "eof", "drained"
    (nothing more for now) or "more" (the bound was reached)."""
    for _ in range(READ_CHUNKS):
        try:
            data = os.read(fd, 1 << 16)
        except BlockingIOError:
            return "drained"
        if not data:
            sink.write(decode(b"", final=True))
            return "eof"
        sink.write(decode(data))
    return "more"


def _end_run(proc: subprocess.Popen) -> None:
    """Kill ansible-playbook and every process under it: its workers start sessions of their
    own (so its process group is not enough), and under them run the ssh clients and, with a
    local connection, the modules. All are stopped first, so none forks a process unseen."""
    stopped: set[int] = set()
    for _ in range(8):                  # each pass stops the processes forked before the last one
        found = ({proc.pid} | _descendants(proc.pid)) - stopped
        if not found:
            break
        for pid in found:
            _signal(pid, signal.SIGSTOP)
        stopped |= found
    for pid in stopped:
        _signal(pid, signal.SIGKILL)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass


def _descendants(root: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                stat = Path(entry.path, "stat").read_bytes()
            except OSError:            # it ended meanwhile
                continue
            ppid = int(stat[stat.rindex(b")") + 2:].split()[1])   # "pid (comm) state ppid ..."
            children.setdefault(ppid, []).append(int(entry.name))
    found: set[int] = set()
    todo = [root]
    while todo:
        for pid in children.get(todo.pop(), ()):
            if pid not in found:
                found.add(pid)
                todo.append(pid)
    return found


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


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
