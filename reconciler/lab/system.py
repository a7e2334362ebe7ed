"""Thin, explicit wrappers around the system commands the lab runs (all argv lists, no shell).

Contract:
- `run(argv, step=...)` runs one command with a timeout and raises `StepError(step, detail)`
  on failure; the step names what the lab was doing ("leaf1: start sshd") so a half-failed
  `lab up` can say which step failed. Output is never logged here (it may hold secrets).
- `in_node(holder_pid, argv)` builds the nsenter argv that runs a command inside a node
  (network + UTS + mount namespace of the node's holder process).
- `REQUIRED_TOOLS` is the data table of commands each feature needs; `missing_tools()`
  reports the absent ones so callers can refuse (CLI) or skip (tests) with a clear reason.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from typing import Iterable, Mapping, Sequence

REQUIRED_TOOLS: Mapping[str, tuple[str, ...]] = {
    "base": ("ip", "nsenter", "unshare", "ethtool", "sysctl"),
    "ssh": ("/usr/sbin/sshd", "ssh-keygen", "ssh"),
    "ovs": ("ovsdb-tool", "ovsdb-server", "ovs-vswitchd", "ovs-vsctl"),
    "frr": ("/usr/lib/frr/frrinit.sh", "vtysh"),
}
OVS_SCHEMA = "/usr/share/openvswitch/vswitch.ovsschema"


class StepError(RuntimeError):
    """A lab step failed; `step` says which one, `detail` why."""

    def __init__(self, step: str, detail: str):
        super().__init__(f"{step}: {detail}")
        self.step, self.detail = step, detail


def missing_tools(features: Iterable[str] = ("base", "ssh", "ovs", "frr")) -> list[str]:
    out = []
    for f in features:
        for tool in REQUIRED_TOOLS[f]:
            if (os.path.isabs(tool) and not os.access(tool, os.X_OK)) or \
                    (not os.path.isabs(tool) and shutil.which(tool) is None):
                out.append(tool)
    if "ovs" in features and not os.path.exists(OVS_SCHEMA):
        out.append(OVS_SCHEMA)
    return out


def run(argv: Sequence[str], step: str, *, env: Mapping[str, str] | None = None,
        timeout: float = 30, check: bool = True, input: str | None = None
        ) -> subprocess.CompletedProcess:
    full_env = None
    if env:
        full_env = dict(os.environ)
        full_env.update(env)
    # Output goes to files, not pipes: a command that leaves a daemon or a background job
    # behind (exec: "sh -c 'x &'") must not hold the lab up until the timeout.
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        try:
            proc = subprocess.run(list(argv), stdout=out, stderr=err, text=True, timeout=timeout,
                                  env=full_env, input=input,
                                  stdin=None if input is not None else subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise StepError(step, f"`{argv[0]}` timed out after {timeout:g}s") from None
        except FileNotFoundError:
            raise StepError(step, f"`{argv[0]}` is not installed") from None
        out.seek(0)
        err.seek(0)
        cp = subprocess.CompletedProcess(proc.args, proc.returncode, out.read(), err.read())
    if check and cp.returncode != 0:
        msg = (cp.stderr or cp.stdout).strip().splitlines()
        raise StepError(step, f"`{' '.join(argv[:4])}...` exited {cp.returncode}: "
                              f"{msg[-1] if msg else 'no output'}")
    return cp


def in_node(holder_pid: int, argv: Sequence[str], mount: bool = True) -> list[str]:
    ns = ["-n", "-u"] + (["-m"] if mount else [])
    return ["nsenter", "-t", str(holder_pid), *ns, "--", *argv]


def ip_batch(lines: Sequence[str], step: str, netns: str | None = None,
             force: bool = False) -> None:
    """Run many `ip` commands in one process (fast); lines hold validated names only."""
    if not lines:
        return
    argv = ["ip"] + (["-n", netns] if netns else []) + (["-force"] if force else []) \
        + ["-batch", "-"]
    run(argv, step, input="\n".join(lines) + "\n")


def netns_list() -> set[str]:
    try:
        return set(os.listdir("/run/netns"))
    except FileNotFoundError:
        return set()


def netns_pids(netns: str) -> list[int]:
    cp = run(["ip", "netns", "pids", netns], f"list processes of {netns}", check=False)
    return [int(x) for x in cp.stdout.split() if x.isdigit()]


def alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        return state != "Z"
    except (FileNotFoundError, IndexError, ProcessLookupError):
        return False


def read_pid(path: str) -> int | None:
    try:
        with open(path) as f:
            return int(f.read().strip() or 0) or None
    except (OSError, ValueError):
        return None


def kill_all(pids: Iterable[int], grace: float = 0.0) -> None:
    """SIGTERM (if grace) then SIGKILL the given pids; reap the ones that are our children."""
    pids = [p for p in set(pids) if p and p != os.getpid()]
    if grace:
        for p in pids:
            _signal(p, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and any(alive(p) for p in pids):
            time.sleep(0.02)
    for p in pids:
        if alive(p):
            _signal(p, signal.SIGKILL)
    deadline = time.monotonic() + 3.0
    waiting = set(pids)
    while waiting and time.monotonic() < deadline:
        for p in list(waiting):
            try:
                os.waitpid(p, os.WNOHANG)   # reap our own children (holders)
            except ChildProcessError:
                pass
            if not alive(p):
                waiting.discard(p)
        if waiting:
            time.sleep(0.01)


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def process_running(comm: str) -> bool:
    """Is a live process with this command name running anywhere on the machine?"""
    for pid in os.listdir("/proc"):
        if pid.isdigit() and alive(int(pid)):
            try:
                with open(f"/proc/{pid}/comm") as f:
                    if f.read().strip() == comm:
                        return True
            except OSError:
                continue
    return False
