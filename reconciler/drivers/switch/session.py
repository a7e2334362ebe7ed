"""One SSH session to one switch through netmiko: login, running a script, observing, sending
a config session.

Contract: `Session(target, platform, timeout_s)` logs in (raises `Unreachable` naming host,
port and user, never a secret); `run_script` uploads a script in base64 lines and runs it with
sh; `observe()` runs every observe section of the platform in one round trip and parses it
(raises `SwitchError` on a failed section or unparsable output); `send_config(cmds)` sends the
commands as one fail-fast script and says which one was rejected. Not thread-safe: one caller at
a time (the driver's SessionPool hands a session to one worker).
"""
from __future__ import annotations

import base64
import re
import shlex
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from reconciler.drivers.base import Target
from reconciler.drivers.switch.platforms import Command, Platform
from reconciler.model import Resource

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
        known = v.get("netintent_known_hosts")
        if known:   # host key checked: unknown or different keys are refused (paramiko RejectPolicy)
            params.update(ssh_strict=True, alt_host_keys=True, alt_key_file=str(known))
        key = v.get("ansible_ssh_private_key_file")
        if key:
            params.update(use_keys=True, key_file=str(key))
        if v.get("ansible_password"):
            params["password"] = str(v["ansible_password"])
        params = {k: val for k, val in params.items() if val is not None}
        if connect is None:
            from netmiko import ConnectHandler  # imported lazily: slow import
            connect = ConnectHandler
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
            return str(self.conn.send_command(line, read_timeout=timeout or self.timeout_s,
                                              strip_prompt=True, strip_command=True, cmd_verify=False))
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
    """The exception's message on one line (netmiko puts paramiko's reason on a later line)."""
    text = " ".join(l.strip() for l in str(e).strip().splitlines() if l.strip())
    return text[:300]


def _tail(text: str, n: int = 400) -> str:
    text = " | ".join(l.strip() for l in text.strip().splitlines() if l.strip() and "@@NI-" not in l)
    return text[-n:]
