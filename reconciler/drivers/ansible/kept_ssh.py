"""Direct SSH reads for hosts and hypervisors: one command per target, over a kept connection.

Used by the Ansible drivers' observe (observe_ssh.py) and by telemetry: reads only, never writes.

Contract: `SshReader(control_dir, connect_timeout_s)` runs one constant, read-only command per
target with the target's own SSH settings from the inventory, exactly those the Ansible drivers
connect with (ansible_host, ansible_port, ansible_user, ansible_ssh_private_key_file; host keys
checked against `netintent_known_hosts` when given, else not checked, as runner.py does), in
parallel, through one `sh` per target kept open over ssh (behind an OpenSSH ControlMaster kept
`persist_s`): the first round logs in, later rounds write the command to that shell and read its
output up to an end marker, a round trip of milliseconds (an ansible-playbook start costs seconds,
a new ssh session ~0.1 s of the target's CPU). A shell that died or timed out is dropped and
started again on the next round. `usable(target)` is False for targets plain ssh cannot serve as
Ansible would (a password, become, extra ssh arguments, another connection plugin); the caller
reads those through Ansible. `run(items, timeout_s)` -> {target: (ok, stdout or error)}; never
raises for a target. Processes are started without a fork of this process (subprocess, vfork +
exec: safe beside gRPC); `close()` ends the masters it opened. Every value put on the command
line is validated first; nothing comes from an app's intents.
"""
from __future__ import annotations

import hashlib
import os
import re
import selectors
import subprocess
import time
from pathlib import Path
from typing import Any, Sequence

HOST_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.:_-]{0,252}\Z")
USER_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,31}\Z")
PATH_RE = re.compile(r"^/[A-Za-z0-9_./+-]{1,4095}\Z")
END = "@@NI-TEL-END"
# connection settings plain `ssh` would not honour as Ansible does: such targets go through Ansible
ANSIBLE_ONLY_VARS = ("ansible_password", "ansible_ssh_pass", "ansible_become", "ansible_ssh_common_args",
                     "ansible_ssh_extra_args", "ansible_ssh_args", "ansible_ssh_executable",
                     "ansible_private_key_passphrase")


class SshReader:
    def __init__(self, control_dir: str | Path, connect_timeout_s: int = 5, persist_s: int = 300) -> None:
        self.dir = Path(control_dir)
        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.connect_timeout_s, self.persist_s = int(connect_timeout_s), int(persist_s)
        self._used: dict[str, list[str]] = {}
        self._shells: dict[str, _Shell] = {}

    @staticmethod
    def usable(target: Any) -> bool:
        """Whether a plain `ssh` with the target's inventory settings is what Ansible would run."""
        v = target.vars
        return str(v.get("ansible_connection", "ssh")) == "ssh" and not any(v.get(k) for k in ANSIBLE_ONLY_VARS)

    def argv(self, target: Any) -> list[str]:
        v = target.vars
        host, user = str(v.get("ansible_host", target.name)), str(v.get("ansible_user", "root"))
        port = int(v.get("ansible_port", 22))
        if not HOST_RE.match(host) or not USER_RE.match(user) or not 0 < port < 65536:
            raise ValueError(f"{target.name}: invalid ssh host/user/port {host!r}/{user!r}/{port!r}")
        known, key = v.get("netintent_known_hosts"), v.get("ansible_ssh_private_key_file")
        for path in (p for p in (known, key) if p):
            if not PATH_RE.match(str(path)):
                raise ValueError(f"{target.name}: not an absolute file path: {path!r}")
        keys = (["-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={known}"] if known
                else ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null"])
        # A session over a kept master skips host-key and key checks: a master is only shared by
        # connections with the same trust settings (as runner.py tags Ansible's control dirs)
        trust = hashlib.blake2b(f"{known or ''}\0{key or ''}".encode(), digest_size=4).hexdigest()
        self._used[target.name] = argv = [
            "ssh", "-o", "BatchMode=yes", "-o", "ControlMaster=auto", "-o", f"ControlPath={self.dir}/{trust}-%C",
            "-o", f"ControlPersist={self.persist_s}s", "-o", f"ConnectTimeout={self.connect_timeout_s}",
            "-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=2", "-o", "LogLevel=ERROR", *keys,
            *(["-i", str(key), "-o", "IdentitiesOnly=yes"] if key else []), "-p", str(port), "-l", user, host]
        return argv

    def run(self, items: Sequence[tuple[Any, str]], timeout_s: float) -> dict[str, tuple[bool, str]]:
        out: dict[str, tuple[bool, str]] = {}
        sent: list[tuple[str, _Shell]] = []
        for target, command in items:
            shell = None
            try:
                shell = self._shell(target)
                shell.send(command)
                sent.append((target.name, shell))
            except (ValueError, OSError) as e:
                why = shell.why() if shell is not None else ""
                self._drop(target.name)
                out[target.name] = (False, why or str(e))
        deadline = time.monotonic() + timeout_s
        for name, shell in sent:
            try:
                out[name] = shell.receive(deadline)
            except (OSError, TimeoutError) as e:
                why = shell.why() if not isinstance(e, TimeoutError) else ""
                self._drop(name)
                out[name] = (False, why or str(e) or type(e).__name__)
        return out

    def _shell(self, target: Any) -> "_Shell":
        argv = self.argv(target)
        shell = self._shells.get(target.name)
        if shell is not None and (shell.argv != argv or shell.proc.poll() is not None):
            self._drop(target.name)
            shell = None
        if shell is None:
            shell = self._shells[target.name] = _Shell(argv)
        return shell

    def _drop(self, name: str) -> None:
        shell = self._shells.pop(name, None)
        if shell is not None:
            shell.close()

    def close(self) -> None:
        """End the kept shells and the ControlMasters this reader used (bounded)."""
        for name in list(self._shells):
            self._drop(name)
        for argv in self._used.values():
            try:
                subprocess.run(argv[:-1] + ["-O", "exit", argv[-1]], stdin=subprocess.DEVNULL, capture_output=True,
                               timeout=10, check=False)
            except (subprocess.TimeoutExpired, OSError):   # a master that hangs dies with ControlPersist
                pass
        self._used.clear()


class _Shell:
    """`sh` on the target over one ssh process kept open: each command is written to its stdin
    and its output read up to an end marker carrying the exit status."""

    def __init__(self, argv: list[str]) -> None:
        self.argv = argv
        self.proc = subprocess.Popen(argv + ["exec sh"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, close_fds=True, start_new_session=True)
        assert self.proc.stdout is not None
        os.set_blocking(self.proc.stdout.fileno(), False)
        self.seq = 0

    def send(self, command: str) -> None:
        assert self.proc.stdin is not None
        self.seq += 1
        self.proc.stdin.write(f"{{ {command}\n}} 2>&1; printf '\\n{END} {self.seq} %s@@\\n' \"$?\"\n".encode())
        self.proc.stdin.flush()

    def receive(self, deadline: float) -> tuple[bool, str]:
        assert self.proc.stdout is not None
        fd, buf = self.proc.stdout.fileno(), bytearray()
        marker = re.compile(rf"\n{END} {self.seq} (\d+)@@\n".encode())
        with selectors.DefaultSelector() as sel:
            sel.register(fd, selectors.EVENT_READ)
            while True:
                m = marker.search(buf)
                if m is not None:
                    text = buf[:m.start()].decode(errors="replace")
                    return (True, text) if m.group(1) == b"0" else (False, f"rc={m.group(1).decode()}: {text[-300:]}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("no answer within the round's deadline")
                if sel.select(min(left, 1.0)):
                    chunk = os.read(fd, 1 << 16)
                    if not chunk:
                        raise OSError("ssh ended")
                    buf += chunk

    def why(self) -> str:
        """ssh's own words once it has ended (e.g. `Connection refused`), else ""."""
        try:
            rc = self.proc.wait(5)
            err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr is not None else ""
        except (subprocess.TimeoutExpired, OSError, ValueError):
            return ""
        return f"ssh rc={rc}: {' '.join(err.split())[-300:]}"

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(5)
        for f in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if f is not None:
                try:
                    f.close()
                except OSError:     # stdin of an ssh that already ended (its buffered command)
                    pass
