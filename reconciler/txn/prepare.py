"""Prepare: check each layer's changes with the real tool, writing nothing to any device.

Contract: `make_preparer(drivers)` returns `prepare(layers) -> {(layer, target): message}`
(empty = every check passed); `layers` is `{layer: [(target, changes, desired, observed,
prune)]}` as the transaction's write gate builds it. Checks use what the drivers render:
- host: the driver's `rules.nft` script is checked with `nft -c -f` in a scratch network
  namespace (`unshare --net`) holding the target's observed owned tables first, so the
  script's deletes and element updates meet the tables they expect. Needs root; without
  root (or without nft/unshare) the host check is skipped and says so in `SKIPPED`.
- hypervisor: the driver's `flows.txt` (an `ovs-ofctl --bundle` file) is parsed by `ovs-ofctl
  parse-flows` (command words dropped, a delete's match given a placeholder action, port names
  replaced by numbers: parse-flows resolves names only against a live switch).
- switch, sidecar: not checked here yet (their drivers verify per target and roll back a
  target on failure; the transaction rolls back the others).
A check that cannot run is never a refusal; a tool's refusal names the target and the tool's
first error lines.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from reconciler.drivers.base import TargetPlan
from reconciler.model import Layer
from reconciler.txn.journal import TargetId

SKIPPED: list[str] = []   # why a layer's check did not run (last call), for the report
_PORT_FIELD = re.compile(r"\b(in_port=|output:)([A-Za-z][A-Za-z0-9_.-]*)")
_BUNDLE_COMMANDS = ("add", "modify", "modify_strict", "delete", "delete_strict")
_COOKIE_MASK = re.compile(r"(cookie=[^,/]+)/[^,]+")


def _plans(items: Sequence[Any]) -> list[TargetPlan]:
    return [TargetPlan(t, tuple(ch), tuple(d), tuple(o), prune) for t, ch, d, o, prune in items]


def _first_lines(text: str, n: int = 3) -> str:
    return " | ".join(line.strip() for line in text.strip().splitlines()[:n])


def check_nft(script: str, preload: str, timeout_s: float = 20) -> str:
    """'' when `nft -c -f script` accepts it after `preload` was loaded, else nft's message."""
    with tempfile.TemporaryDirectory(prefix="ni-prep-") as d:
        pre, new = Path(d, "pre.nft"), Path(d, "new.nft")
        pre.write_text(preload or "\n")
        new.write_text(script)
        p = subprocess.run(["unshare", "--net", "sh", "-c", 'nft -f "$1" && nft -c -f "$2"', "check", str(pre),
                            str(new)], capture_output=True, text=True, timeout=timeout_s)
    return "" if p.returncode == 0 else f"nft -c: {_first_lines(p.stderr or p.stdout)}"


def _as_flow(line: str) -> str:
    """A bundle line (`add ...`, `delete_strict ...`) as the flow parse-flows reads: the command
    word dropped; a delete's match gets its cookie mask removed and a placeholder action."""
    cmd, _, rest = line.strip().partition(" ")
    if cmd not in _BUNDLE_COMMANDS:
        return line.strip()
    if cmd.startswith("delete"):
        return _COOKIE_MASK.sub(r"\1", rest) + ",actions=drop"
    return rest


def check_flows(flows: str, timeout_s: float = 20) -> str:
    names: dict[str, str] = {}

    def number(m: re.Match[str]) -> str:
        return m.group(1) + names.setdefault(m.group(2), str(len(names) + 1))
    text = "\n".join(_PORT_FIELD.sub(number, _as_flow(line)) for line in flows.splitlines() if line.strip()) + "\n"
    with tempfile.NamedTemporaryFile("w", suffix=".flows", prefix="ni-prep-") as f:
        f.write(text)
        f.flush()
        p = subprocess.run(["ovs-ofctl", "parse-flows", f.name], capture_output=True, text=True, timeout=timeout_s)
    return "" if p.returncode == 0 else f"ovs-ofctl parse-flows: {_first_lines(p.stderr)}"


def _host(driver: Any, plans: list[TargetPlan]) -> dict[TargetId, str]:
    from reconciler.drivers.ansible.host import HostDriver
    from reconciler.drivers.ansible.nftables import plan_script
    if not isinstance(driver, HostDriver):
        return {}
    if os.geteuid() != 0 or not shutil.which("nft") or not shutil.which("unshare"):
        SKIPPED.append("host: nft -c needs root, nft and unshare")
        return {}
    out = {}
    for tp in plans:
        script = driver.render(tp).files.get("rules.nft", "")
        if not script:
            continue
        owned = [r for r in tp.observed if r.owned and r.key.kind.startswith("nft-")]
        why = check_nft(script, plan_script(owned, [], False).script)
        if why:
            out[(Layer.HOST, tp.target.name)] = why
    return out


def _hypervisor(driver: Any, plans: list[TargetPlan]) -> dict[TargetId, str]:
    from reconciler.drivers.ansible.hypervisor import HypervisorDriver
    if not isinstance(driver, HypervisorDriver):
        return {}
    if not shutil.which("ovs-ofctl"):
        SKIPPED.append("hypervisor: ovs-ofctl not installed")
        return {}
    out = {}
    for tp in plans:
        flows = driver.render(tp).files.get("flows.txt", "")
        why = check_flows(flows) if flows else ""
        if why:
            out[(Layer.HYPERVISOR, tp.target.name)] = why
    return out


CHECKS: Mapping[Layer, Callable[[Any, list[TargetPlan]], dict[TargetId, str]]] = {
    Layer.HOST: _host, Layer.HYPERVISOR: _hypervisor}


def make_preparer(drivers: Mapping[Layer, Any]) -> Callable[[Mapping[Layer, Sequence[Any]]], dict[TargetId, str]]:
    def prepare(layers: Mapping[Layer, Sequence[Any]]) -> dict[TargetId, str]:
        SKIPPED.clear()
        out: dict[TargetId, str] = {}
        for layer, items in layers.items():
            check, driver = CHECKS.get(layer), drivers.get(layer)
            if check is None or driver is None:
                continue
            out.update(check(driver, _plans(items)))
        return out
    return prepare
