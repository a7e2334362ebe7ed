"""`reconciler demo`: the closed loop on the bundled lab, end to end.

Contract: brings up labs/app-fabric.clab.yml (netns, sshd, OVS, FRR), applies
examples/intents through the real drivers, proves allowed and denied flows with TCP from
inside the hosts, introduces drift by hand (an nftables set flushed on a host, an OpenFlow
rule deleted on a hypervisor), shows the drift per application, repairs it, proves the flows
again and prints a summary. Exit 0 only when every step held. The lab is taken down at the
end unless --keep.
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from reconciler.lab.probe import Flow, probe_tcp

ROOT = Path(__file__).resolve().parents[1]
LAB_FILE = ROOT / "labs" / "app-fabric.clab.yml"
INTENTS = ROOT / "examples" / "intents"

ALLOWED = [
    Flow("h1", "10.50.1.11", "h3", "10.50.1.21", 8080, "shop/web -> shop/api v1"),
    Flow("h1", "10.50.1.11", "h5", "10.50.1.22", 8080, "shop/web -> shop/api v2 (other leaf)"),
    Flow("h2", "10.50.2.11", "h6", "10.50.2.21", 5432, "billing/invoicer -> billing/ledger (other leaf)"),
    Flow("h2", "10.50.2.11", "h3", "10.50.1.21", 8080, "billing/invoicer -> shop/api (export)"),
    Flow("h4", "10.50.3.12", "h4", "10.50.3.11", 9000, "analytics/dash -> analytics/collector"),
]
DENIED = [
    Flow("h4", "10.50.3.12", "h3", "10.50.1.21", 8080, "analytics/dash -> shop/api (no allow)"),
    Flow("h1", "10.50.1.11", "h6", "10.50.2.21", 5432, "shop/web -> billing/ledger (not exported)"),
    Flow("h6", "10.50.2.21", "h5", "10.50.1.22", 8080, "billing/ledger -> shop/api (not allowed)"),
    Flow("h3", "10.50.1.21", "h1", "10.50.1.11", 80, "shop/api -> shop/web (nobody may call web)"),
]
# Drift introduced by hand: (node, argv, what it breaks)
DRIFT = [
    ("h3", ["nft", "flush", "set", "inet", "netintent_shop", "allow_api_grpc"], "host h3: callers of shop/api removed"),
    ("hv1", ["ovs-ofctl", "--strict", "del-flows", "br0", "priority=200,ip,in_port=eth2,nw_src=10.50.1.11"],
     "hypervisor hv1: shop/web's anti-spoofing allow flow deleted"),
]


def _say(msg: str) -> None:
    print(msg, flush=True)


def _check_flows(lab, title: str) -> bool:
    results = probe_tcp(lab, ALLOWED + DENIED)
    ok = True
    _say(f"\n== {title}")
    for r in results:
        want = r.flow in ALLOWED
        good = r.connected == want
        ok &= good
        verdict = ("connects" if r.connected else "refused")
        _say(f"  [{'ok' if good else 'FAIL'}] {verdict:<9} {r.flow}")
    return ok


class _Steps:
    """The demo's steps as they finish: name, whether it held, seconds taken."""

    def __init__(self) -> None:
        self.done: list[tuple[str, bool, float]] = []

    def record(self, name: str, ok: bool, t0: float) -> bool:
        self.done.append((name, ok, time.monotonic() - t0))
        return ok

    def summary(self, t_start: float) -> bool:
        """Print every step and the verdict; True when every step held."""
        _say("\n== summary")
        for name, ok, dt in self.done:
            _say(f"  [{'ok' if ok else 'FAIL'}] {name:<45} {dt:6.2f}s")
        all_ok = all(ok for _, ok, _ in self.done)
        _say(f"demo {'passed' if all_ok else 'FAILED'} in {time.monotonic() - t_start:.1f}s")
        return all_ok


@dataclass(frozen=True)
class _Loop:
    """The closed loop the demo drives: one engine, the compiled intents and their targets."""
    engine: Any
    desired: Any
    targets: dict
    ignore: Any

    def run(self, trigger: str, **kw: Any) -> Any:
        return self.engine.run(self.desired, self.targets, **kw, ignore=self.ignore, trigger=trigger)


def run_demo(args: argparse.Namespace) -> int:
    from reconciler.lab import Lab

    t_start = time.monotonic()
    steps = _Steps()
    lab = Lab.from_file(args.lab, getattr(args, "name", None), None, getattr(args, "mgmt_subnet", None))
    t0 = time.monotonic()
    _say(f"== lab: bringing up {args.lab} (netns, sshd, Open vSwitch, FRR)")
    lab.up()
    steps.record("lab up", True, t0)
    try:
        loop = _build_loop(lab, args)
        _apply_and_prove(lab, loop, steps)
        _drift_by_hand(lab)
        _detect_drift(loop, steps)
        _repair_and_prove(lab, loop, steps)
    finally:
        if not args.keep:
            t0 = time.monotonic()
            problems = lab.down()
            steps.record("lab down", not problems, t0)
    return 0 if steps.summary(t_start) else 1


def _build_loop(lab, args: argparse.Namespace) -> _Loop:
    """Load and compile the intents repo against the lab's inventory; the engine for the chosen layers."""
    from reconciler.cli import build_engine
    from reconciler.compile import Compiler
    from reconciler.drivers.registry import targets_of
    from reconciler.intents.validate import load_repo

    repo = load_repo(args.repo, inventory_override=str(lab.inventory_path))
    desired = Compiler().compile(repo)
    ns = SimpleNamespace(observed=None, inventory_path=str(lab.inventory_path), timeout=60.0,
                         attempts=3, layers=args.layers)
    targets = targets_of(repo.inventory)
    engine, _ = build_engine(ns, targets)
    layers = [l for l in engine.drivers]
    _say(f"== apply: {len(repo.apps)} applications, {len(desired)} resources, layers: "
         f"{', '.join(l.value for l in layers)}")
    targets = {l: ts for l, ts in targets.items() if l in engine.drivers}
    return _Loop(engine, desired, targets, repo.config.ignore)


def _converge_and_prove(lab, loop: _Loop, steps: _Steps, trigger: str, step: str, flows: tuple[str, str]) -> None:
    """One converging run (a step of the summary), then the allowed and denied flows (another)."""
    from reconciler.cli import format_report

    t0 = time.monotonic()
    report = loop.run(trigger)
    _say(format_report(report))
    steps.record(step, report.converged, t0)
    t0 = time.monotonic()
    steps.record(flows[0], _check_flows(lab, flows[1]), t0)


def _apply_and_prove(lab, loop: _Loop, steps: _Steps) -> None:
    _converge_and_prove(lab, loop, steps, "demo", "apply examples/intents",
                        ("flows after apply", "TCP from inside the hosts"))


def _drift_by_hand(lab) -> None:
    _say("\n== drift: changing devices by hand")
    for node, argv, what in DRIFT:
        lab.exec(node, argv)
        _say(f"  {what}")


def _detect_drift(loop: _Loop, steps: _Steps) -> None:
    """A dry run must show both changes made by hand, each under its application."""
    from reconciler.plan import render_text

    t0 = time.monotonic()
    seen = loop.run("demo-diff", dry_run=True)
    _say(render_text(seen.initial))
    found = {str(c.key) for c in seen.initial.drift}
    steps.record("drift detected per application",
                 "host/h3/nft-set/netintent_shop/allow_api_grpc" in found
                 and "hypervisor/hv1/ovs-flow/priority=200,ip,in_port=eth2,nw_src=10.50.1.11" in found, t0)


def _repair_and_prove(lab, loop: _Loop, steps: _Steps) -> None:
    """Repair the drift, prove the flows again, then show that a converged run writes nothing."""
    _converge_and_prove(lab, loop, steps, "demo-repair", "drift repaired", ("flows after repair", "TCP after repair"))
    t0 = time.monotonic()
    again = loop.run("demo-noop")
    steps.record(f"converged run writes nothing ({again.writes} writes)", again.converged and again.writes == 0, t0)


def add_cli(subparsers) -> None:
    p = subparsers.add_parser("demo", help="bring up the bundled lab, apply the example intents, prove flows, "
                                           "repair drift")
    p.add_argument("--lab", default=str(LAB_FILE), help="containerlab topology (default: the reference lab)")
    p.add_argument("--repo", default=str(INTENTS), help="intents repo (default: examples/intents)")
    p.add_argument("--keep", action="store_true", help="leave the lab running at the end")
    p.add_argument("--name", help="lab name (default: the topology's), to run beside another lab")
    p.add_argument("--mgmt-subnet", help="management IPv4 subnet for a lab run beside another (e.g. 172.31.77.0/24)")
    # The sidecar layer needs running gRPC workloads; the demo proves the L2-L4 loop.
    p.set_defaults(func=run_demo, layers=("switch", "hypervisor", "host"))


if __name__ == "__main__":
    sys.exit(run_demo(argparse.Namespace(lab=str(LAB_FILE), repo=str(INTENTS), keep=False,
                                            layers=("switch", "hypervisor", "host"))))
