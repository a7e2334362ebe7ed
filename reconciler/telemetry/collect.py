"""One collection round: every target read once, through the drivers' transports (I/O).

Contract: `Collector(inventory_path, ...)` reads counters; `read(targets)` takes
`{layer: [Target]}` and returns one `TargetRead` per target, never raising for a target:
- host and hypervisor: one constant read-only command per target (`COMMANDS`), in parallel over
  SSH with the target's own connection settings and a kept ControlMaster (drivers/ansible/kept_ssh.py: a round trip,
  no ansible-playbook start per round); targets plain ssh cannot serve (a password) go through
  ONE ansible-runner run (playbooks/telemetry.yml, the same commands, run_plays' process model);
- switch: one SSH round trip per leaf through a SwitchDriver's session pool (a warm session is
  reused: no login per round), leaves in parallel within the driver's bound and deadline;
- sidecar: not read here (see docs/telemetry.md).
The two transports run in parallel. `round(targets, index)` reads and aggregates (a `Sample`).
Nothing here writes to a device.
"""
from __future__ import annotations

import re
import shlex
import threading
import time
from typing import Any, Mapping, Sequence

from reconciler.model import Layer
from reconciler.names import is_interface_name
from reconciler.telemetry.aggregate import aggregate
from reconciler.telemetry.index import Index
from reconciler.telemetry.model import Sample, TargetRead
from reconciler.telemetry.parse import parse_host, parse_hypervisor, parse_switch

PLAYBOOK = "telemetry.yml"
# The same commands as playbooks/telemetry.yml (a test keeps them equal).
HOST_COMMAND = ("nft -j list counters && echo '@@NI@@' && for t in $(nft list tables inet | sed -n "
                "'s/^table inet \\(netintent_[A-Za-z0-9_]*\\)$/\\1/p'); do nft -j list set inet \"$t\" refused "
                "2>/dev/null; echo; done")
HYPERVISOR_COMMAND = "ovs-ofctl --names dump-flows {bridge} cookie=0x4e49000000000000/0xffff000000000000"
PARSERS = {Layer.HOST: parse_host, Layer.HYPERVISOR: parse_hypervisor}
SWITCH_BEGIN, SWITCH_END = "@@NI-TEL-BEGIN@@", "@@NI-TEL-END"
SWITCH_SCRIPT = (f"printf '\\n{SWITCH_BEGIN}\\n'; ip -s -j link show type vxlan 2>&1; "
                 f"printf '\\n{SWITCH_END} %s@@\\n' \"$?\"\n")
_SWITCH_OUT = re.compile(rf"{SWITCH_BEGIN}\r?\n(.*?)\r?\n{SWITCH_END} (\d+)@@", re.S)


class Collector:
    def __init__(self, inventory_path: str, timeout_s: float = 30.0, switch_driver: Any = None,
                 task_timeout_s: int = 20, connect_timeout_s: int = 5, forks: int = 50) -> None:
        from reconciler.drivers.ansible.kept_ssh import SshReader
        from reconciler.drivers.ansible.runner import CONTROL_PATH_DIR, RunSettings
        self.settings = RunSettings(str(inventory_path), None, timeout_s, task_timeout_s, connect_timeout_s, forks)
        self.timeout_s = timeout_s
        self.ssh = SshReader(CONTROL_PATH_DIR / "telemetry", connect_timeout_s)
        self._switch = switch_driver
        self._own_switch = switch_driver is None

    def close(self) -> None:
        self.ssh.close()
        if self._own_switch and self._switch is not None:
            self._switch.close()

    def read(self, targets: Mapping[Layer, Sequence[Any]]) -> list[TargetRead]:
        out: list[TargetRead] = []
        leaves = list(targets.get(Layer.SWITCH, ()))
        thread = None
        if leaves:
            thread = threading.Thread(target=lambda: out.extend(self._read_switches(leaves)),
                                      name="ni-telemetry-switch", daemon=True)
            thread.start()
        both = [t for layer in (Layer.HOST, Layer.HYPERVISOR) for t in targets.get(layer, ())]
        ansible = [t for t in both if not self.ssh.usable(t)]
        res = self._read_ssh([t for t in both if self.ssh.usable(t)])
        res += self._read_ansible(ansible) if ansible else []
        if thread is not None:
            thread.join(self.timeout_s * 2)
            if thread.is_alive():
                res += [TargetRead(Layer.SWITCH.value, t.name, False, error="no answer within the deadline")
                        for t in leaves]
        return res + out

    def round(self, targets: Mapping[Layer, Sequence[Any]], index: Index) -> Sample:
        t0 = time.monotonic()
        reads = self.read(targets)
        return aggregate(reads, index, time.time(), time.monotonic() - t0)

    # -- host and hypervisor: ssh, or one ansible-runner run ------------------------------
    def _read_ssh(self, targets: Sequence[Any]) -> list[TargetRead]:
        t0 = time.monotonic()
        items, out = [], []
        for t in targets:
            try:
                items.append((t, command(t)))
            except ValueError as e:
                out.append(TargetRead(t.layer.value, t.name, False, error=str(e)))
        got = self.ssh.run(items, self.timeout_s)
        dur = time.monotonic() - t0
        for t, _cmd in items:
            ok, text = got[t.name]
            out.append(_parsed(t, text, dur) if ok else TargetRead(t.layer.value, t.name, False, error=text,
                                                                    duration_s=dur))
        return out

    def _read_ansible(self, targets: Sequence[Any]) -> list[TargetRead]:
        from reconciler.drivers.ansible.driver import _settings
        from reconciler.drivers.ansible.runner import Play, run_plays
        t0 = time.monotonic()
        try:
            runs = run_plays([Play(PLAYBOOK, tuple(t.name for t in targets))],
                             {t.name: {"layer": t.layer.value} for t in targets}, _settings(self.settings, targets))
        except (OSError, ValueError) as e:
            return [TargetRead(t.layer.value, t.name, False, error=f"telemetry run failed: {e}") for t in targets]
        dur = time.monotonic() - t0
        out = []
        for t in targets:
            hr = runs[t.name]
            if not hr.ok or "telemetry" not in hr.results:
                out.append(TargetRead(t.layer.value, t.name, False, error=hr.error or "no telemetry result",
                                      duration_s=dur))
                continue
            out.append(_parsed(t, hr.results["telemetry"].get("stdout", ""), dur))
        return out

    # -- switches: one round trip per leaf over a pooled session --------------------------
    def _driver(self) -> Any:
        if self._switch is None:
            from reconciler.drivers.switch.driver import SwitchDriver
            self._switch = SwitchDriver(timeout_s=self.timeout_s, session_reuse_s=300.0)
        return self._switch

    def _read_switches(self, leaves: Sequence[Any]) -> list[TargetRead]:
        drv = self._driver()
        res = drv._fan_out([(t.name, lambda t=t: self._read_switch(drv, t)) for t in leaves],
                           lambda name, el: TargetRead(Layer.SWITCH.value, name, False,
                                                       error=f"no answer within the deadline ({el:.1f}s)"))
        return list(res.values())

    def _read_switch(self, drv: Any, t: Any) -> TargetRead:
        from reconciler.drivers.switch.session import SwitchError
        t0 = time.monotonic()
        name = Layer.SWITCH.value
        try:
            s, _reused = drv.sessions.take(t)
        except SwitchError as e:
            return TargetRead(name, t.name, False, error=str(e), duration_s=time.monotonic() - t0)
        healthy = False
        try:
            m = _SWITCH_OUT.search(s.run_script(SWITCH_SCRIPT))
            if m is None or m.group(2) != "0":
                return TargetRead(name, t.name, False, error="ip -s -j link failed", duration_s=time.monotonic() - t0)
            raws = parse_switch(t.name, m.group(1))
            healthy = True
            return TargetRead(name, t.name, True, tuple(raws), duration_s=time.monotonic() - t0)
        except (SwitchError, ValueError, KeyError, TypeError) as e:
            return TargetRead(name, t.name, False, error=f"{type(e).__name__}: {e}", duration_s=time.monotonic() - t0)
        finally:
            drv.sessions.give(t, s, healthy)


def command(t: Any) -> str:
    """The read-only command for a host or hypervisor target (the bridge name validated, quoted)."""
    if t.layer is Layer.HOST:
        return HOST_COMMAND
    bridge = t.vars.get("netintent_bridge", "br0")
    if not is_interface_name(bridge):
        raise ValueError(f"{t.name}: invalid netintent_bridge {bridge!r}")
    return HYPERVISOR_COMMAND.format(bridge=shlex.quote(str(bridge)))


def _parsed(t: Any, text: str, dur: float) -> TargetRead:
    try:
        raws = PARSERS[t.layer](t.name, text)
    except (ValueError, KeyError, TypeError) as e:
        return TargetRead(t.layer.value, t.name, False, error=f"cannot parse counters: {e}", duration_s=dur)
    return TargetRead(t.layer.value, t.name, True, tuple(raws), duration_s=dur)
