"""Prepare: check each layer's changes with the real tool, writing nothing to any device.

Contract: `make_preparer(drivers)` returns `prepare(layers) -> {(layer, target): message}`
(empty = every check passed); `layers` is `{layer: [(target, changes, desired, observed,
prune)]}` as the transaction's write gate builds it. Checks use what the drivers render:
- host: the driver's `rules.nft` script is checked with `nft -c -f` in a scratch network
  namespace (`unshare --net`) holding the target's observed owned tables first, so the
  script's deletes and element updates meet the tables they expect. Needs root; without
  root (or without nft/unshare) the host check is skipped and says so in `SKIPPED`.
- hypervisor: the driver's `ovs-vsctl` transaction (hostvars `vsctl`) is run against a scratch
  OVSDB (prepare_ovs.py), and its `flows.txt` (an `ovs-ofctl --bundle` file) is parsed by `ovs-ofctl
  parse-flows` (command words dropped, a delete's match given a placeholder action, port names
  replaced by numbers: parse-flows resolves names only against a live switch).
- switch: the FRR part of what the switch platform renders (its `vtysh -c ...` commands) is
  written as a config file and checked by FRR's own parser, `vtysh --dryrun -f FILE` (offline:
  no daemon is contacted). A render error (an invalid value) is a refusal too. The OVS/ip part
  of a switch change is not checked here.
- sidecar: the xDS lint (reconciler/xds/lint.py) over the node's resources as the sidecar
  driver's apply would serve them (desired, plus kept owned ones without prune, plus the
  observed ones it does not own), with every owned spec encoded to its proto first; only
  problems of owned resources refuse, as in the driver.
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
    from reconciler.txn.prepare_ovs import check_vsctl, why_skipped
    out = {}
    for tp in plans:
        rendered = driver.render(tp)
        flows, vsctl = rendered.files.get("flows.txt", ""), rendered.hostvars.get("vsctl") or []
        why = (check_vsctl(vsctl) if vsctl else "") or (check_flows(flows) if flows else "")
        if vsctl and why_skipped() and why_skipped() not in SKIPPED:
            SKIPPED.append(why_skipped())
        if why:
            out[(Layer.HYPERVISOR, tp.target.name)] = why
    return out


def frr_lines(argvs: Sequence[Sequence[str]]) -> list[str]:
    """The FRR config lines of rendered `vtysh -c "configure terminal" -c LINE ...` commands."""
    lines: list[str] = []
    for argv in argvs:
        if not argv or Path(argv[0]).name != "vtysh":
            continue
        args = list(argv[1:])
        lines += [args[i + 1] for i, a in enumerate(args[:-1]) if a == "-c" and args[i + 1] != "configure terminal"]
    return lines


def check_frr(lines: Sequence[str], timeout_s: float = 20) -> str:
    """'' when FRR's parser (`vtysh --dryrun -f`) accepts the config lines, else vtysh's message."""
    with tempfile.NamedTemporaryFile("w", suffix=".conf", prefix="ni-prep-") as f:
        f.write("".join(f"{line}\n" for line in lines))
        f.flush()
        p = subprocess.run(["vtysh", "--dryrun", "-f", f.name], capture_output=True, text=True,
                           stdin=subprocess.DEVNULL, timeout=timeout_s)
    if p.returncode == 0:
        return ""
    text = p.stderr + p.stdout   # errors are `line N: % ...`; a non-root run also warns about vtysh.conf
    errors = [line for line in text.splitlines() if line.startswith("line ")]
    return f"vtysh --dryrun: {_first_lines(chr(10).join(errors) if errors else text)}"


def _switch(driver: Any, plans: list[TargetPlan]) -> dict[TargetId, str]:
    from reconciler.drivers.switch.platforms import InvalidValue, platform_of
    if not shutil.which("vtysh"):
        SKIPPED.append("switch: vtysh (FRR) not installed")
        return {}
    out = {}
    for tp in plans:
        try:
            cmds = platform_of(tp.target.vars).render(tp.changes, tp.observed, tp.desired, tp.target.vars)
        except InvalidValue as e:
            out[(Layer.SWITCH, tp.target.name)] = f"render: {e}"
            continue
        except Exception as e:  # a renderer fault is the driver's to report; the check just cannot run
            SKIPPED.append(f"switch/{tp.target.name}: render failed: {e.__class__.__name__}: {e}")
            continue
        lines = frr_lines([c.argv for c in cmds])
        why = check_frr(lines) if lines else ""
        if why:
            out[(Layer.SWITCH, tp.target.name)] = why
    return out


def check_xds(desired: Sequence[Any], observed: Sequence[Any], prune: bool) -> str:
    """'' when the node's resources encode and pass the xDS lint, else the problems of owned ones."""
    from reconciler.xds import resources as R
    owned = {(r.key.kind, r.key.name): r.spec for r in desired}
    if not prune:
        for r in observed:
            if r.owned:
                owned.setdefault((r.key.kind, r.key.name), r.spec)
    kinds = dict(owned)
    for r in observed:
        if not r.owned:
            kinds.setdefault((r.key.kind, r.key.name), r.spec)
    try:
        for (kind, name), spec in owned.items():
            if kind not in R.KIND_TYPE:
                return f"xds: unknown sidecar kind {kind!r} ({name})"
            R.to_proto(kind, name, spec)
    except R.SpecError as e:
        return f"xds: {e}"
    problems = [p for p in R.lint((k, n, s) for (k, n), s in kinds.items())
                if any(p.startswith(f"{k}/{n}:") for k, n in owned)]
    return "xds lint: " + "; ".join(problems) if problems else ""


def _sidecar(driver: Any, plans: list[TargetPlan]) -> dict[TargetId, str]:
    out = {}
    for tp in plans:
        why = check_xds(tp.desired, tp.observed, tp.prune)
        if why:
            out[(Layer.SIDECAR, tp.target.name)] = why
    return out


CHECKS: Mapping[Layer, Callable[[Any, list[TargetPlan]], dict[TargetId, str]]] = {
    Layer.HOST: _host, Layer.HYPERVISOR: _hypervisor, Layer.SWITCH: _switch, Layer.SIDECAR: _sidecar}


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
