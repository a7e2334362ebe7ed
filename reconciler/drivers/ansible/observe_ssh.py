"""Observe hosts and hypervisors over a kept SSH shell, with the observe playbook's own commands.

Why: an observe through ansible-playbook costs a process start (about a second here) before the
one `raw` command per target runs; a daemon observes on every commit. The same command over an
`sh` kept open on the target (kept_ssh.SshReader) answers in milliseconds.

Contract:
- `observe_command(layer, target)`: the command playbooks/observe.yml runs for a target of that
  layer, read from the playbook itself (one source), with its two template values filled in the
  way the playbook fills them: the workload-file script, and the hypervisor's bridge name
  (`netintent_bridge`, default br0) validated as an interface name and shell-quoted. Raises
  ValueError for a bridge name that is not one, or when the playbook's command uses a template
  value this module does not know (the two transports must run the same command).
- `read(targets_by_layer, timeout_s)` -> {target: stdout} for the targets it could read; a
  target it cannot serve (not plain key-based ssh, or ssh, the shell or the command failed) is
  left out, and the caller observes it through Ansible, which then reports it as it would have.
  Targets are read in parallel through one process-wide reader, closed at exit.
- `enabled()`: False when env RECONCILER_OBSERVE_SSH is "0" (every read goes through Ansible).
Nothing here writes to a target, and no value from an app's intents is put into a command.
"""
from __future__ import annotations

import atexit
import os
import re
import shlex
import threading
from functools import lru_cache
from typing import Any, Mapping, Sequence

import yaml

from reconciler.drivers.ansible.kept_ssh import SshReader
from reconciler.drivers.ansible.runner import CONTROL_PATH_DIR, PLAYBOOK_DIR
from reconciler.model import Layer

BRIDGE_RE = re.compile(r"^[A-Za-z0-9_.-]{1,15}\Z")
_BRIDGE_EXPR = "{{ netintent_bridge | default('br0') | quote }}"
_WORKLOAD_EXPR = "{{ ni_workload_observe }}"

_lock = threading.Lock()
_reader: SshReader | None = None


def enabled() -> bool:
    return os.environ.get("RECONCILER_OBSERVE_SSH", "1") != "0"


class _PlaybookLoader(yaml.SafeLoader):
    """Reads Ansible's `!unsafe` strings as plain strings (they are constants of ours)."""


_PlaybookLoader.add_constructor("!unsafe", lambda loader, node: loader.construct_scalar(node))


@lru_cache(maxsize=1)
def _templates() -> tuple[Mapping[str, str], str]:
    play = yaml.load((PLAYBOOK_DIR / "observe.yml").read_text(), Loader=_PlaybookLoader)[0]
    return play["vars"]["ni_observe_commands"], play["vars"]["ni_workload_observe"]


def observe_command(layer: Layer, target: Any) -> str:
    commands, workload = _templates()
    bridge = str(target.vars.get("netintent_bridge") or "br0")
    if not BRIDGE_RE.match(bridge):
        raise ValueError(f"{target.name}: not an interface name: netintent_bridge={bridge!r}")
    command = commands[layer.value].replace(_WORKLOAD_EXPR, workload).replace(_BRIDGE_EXPR, shlex.quote(bridge))
    if "{{" in command or "{%" in command:
        raise ValueError(f"observe.yml's {layer.value} command uses a template value the ssh reader cannot fill")
    return command


def servable(target: Any) -> bool:
    """Whether a plain `ssh` with the target's inventory settings is what Ansible would run."""
    return SshReader.usable(target)


def _shared() -> SshReader:
    global _reader
    if _reader is None:
        _reader = SshReader(CONTROL_PATH_DIR / "observe", persist_s=120)
        atexit.register(_reader.close)
    return _reader


def read(targets_by_layer: Sequence[tuple[Layer, Sequence[Any]]], timeout_s: float) -> dict[str, str]:
    items = []
    for layer, targets in targets_by_layer:
        for t in targets:
            if not servable(t):
                continue
            try:
                items.append((t, observe_command(layer, t)))
            except ValueError:
                continue    # Ansible reports it (the same bridge name fails there too)
    if not items:
        return {}
    with _lock:     # one round at a time per kept shell
        got = _shared().run(items, timeout_s)
    return {name: text for name, (ok, text) in got.items() if ok}


def close() -> None:
    """End the kept shells now (tests; the process's exit does it too)."""
    global _reader
    with _lock:
        if _reader is not None:
            _reader.close()
            atexit.unregister(_reader.close)
            _reader = None

