"""`reconciler demo`: the closed loop on the bundled lab, end to end.

Contract: brings up labs/app-fabric.clab.yml (netns, sshd, OVS, FRR, gRPC workloads and the
lab's ADS server), applies examples/intents to all four layers through the real drivers,
proves allowed and denied flows with TCP from inside the hosts, then with gRPC
(reconciler/lab/demo_grpc.py): calls through xds:/// targets, shop/api's split over 1,000 calls,
a caller with a disallowed identity refused by RBAC, plaintext refused under mtls strict, and a
git commit changing the split seen in live traffic. Then it introduces drift by hand (an
nftables set flushed on a host, an OpenFlow rule deleted on a hypervisor, a workload's key
replaced, a route served with other weights), shows the drift per application, repairs it,
proves the flows and the split again and prints a summary. Exit 0 only when every step held.
The lab is taken down at the end unless --keep.
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
from reconciler.model import Layer

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
    ("h3", ["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
            "-out", "/etc/netintent/xds/certs/api.shop.key"], "host h3: shop/api's private key replaced"),
]
DRIFT_KEYS = ("host/h3/nft-set/netintent_shop/allow_api_grpc",
              "hypervisor/hv1/ovs-flow/priority=200,ip,in_port=eth2,nw_src=10.50.1.11",
              "host/h3/workload-cert/api.shop", "sidecar/h1/route/api.shop:8080")


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
    trust_domain: str = "corp.example"
    repo_dir: Path | None = None

    def run(self, trigger: str, **kw: Any) -> Any:
        return self.engine.run(self.desired, self.targets, **kw, ignore=self.ignore, trigger=trigger)


def run_demo(args: argparse.Namespace) -> int:
    from reconciler.lab import Lab

    t_start = time.monotonic()
    steps = _Steps()
    lab = Lab.from_file(args.lab, getattr(args, "name", None), None, getattr(args, "mgmt_subnet", None))
    t0 = time.monotonic()
    _say(f"== lab: bringing up {args.lab} (netns, sshd, Open vSwitch, FRR, gRPC workloads, ADS server)")
    lab.up()
    steps.record("lab up", True, t0)
    try:
        loop = _build_loop(lab, args)
        _apply_and_prove(lab, loop, steps)
        if Layer.SIDECAR in loop.engine.drivers:
            loop = _grpc_steps(lab, loop, steps)
        _drift_by_hand(lab, Layer.SIDECAR in loop.engine.drivers)
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
    from reconciler.assembly import build_engine
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
    return _Loop(engine, desired, targets, repo.config.ignore, repo.config.trust_domain, Path(args.repo))


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


def _grpc_steps(lab, loop: _Loop, steps: _Steps) -> _Loop:
    """gRPC through the sidecar layer; returns the loop on the intents of the split-changing commit."""
    import dataclasses
    import tempfile

    from reconciler.compile import Compiler
    from reconciler.intents.validate import load_repo
    from reconciler.lab import demo_grpc

    _say("\n== gRPC between workloads (proxyless xDS, mTLS from the reconciler's CA)")
    for name, fn in (("gRPC calls via xds:///, split 90/10", lambda: demo_grpc.split_step(lab, 90)),
                     ("RBAC refuses a disallowed identity", lambda: demo_grpc.rbac_step(lab, loop.trust_domain)),
                     ("plaintext refused (mtls: strict)", lambda: demo_grpc.plaintext_step(lab))):
        t0 = time.monotonic()
        ok, line = fn()
        _say(f"  [{'ok' if ok else 'FAIL'}] {name}: {line}")
        steps.record(name, ok, t0)
    t0 = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="ni-demo-"))
    repo_dir = demo_grpc.commit_split(INTENTS if loop.repo_dir is None else loop.repo_dir, 50, 50, work)
    repo = load_repo(str(repo_dir), inventory_override=str(lab.inventory_path))
    loop = dataclasses.replace(loop, desired=Compiler().compile(repo))
    _say("\n== commit: shop/api split 90/10 -> 50/50")
    report = loop.run("demo-commit")
    ok, line = demo_grpc.split_step(lab, 50)
    _say(f"  [{'ok' if ok and report.converged else 'FAIL'}] {line}")
    steps.record("commit 50/50 seen in traffic", ok and report.converged, t0)
    return loop


def _drift_by_hand(lab, sidecar: bool = False) -> None:
    _say("\n== drift: changing devices by hand")
    for node, argv, what in DRIFT:
        if "/etc/netintent/xds" in " ".join(argv) and not sidecar:
            continue
        lab.exec(node, argv)
        _say(f"  {what}")
    if sidecar:
        from reconciler.lab import demo_grpc
        _say(f"  {demo_grpc.sidecar_drift(lab)}")


def _detect_drift(loop: _Loop, steps: _Steps) -> None:
    """A dry run must show both changes made by hand, each under its application."""
    from reconciler.plan import render_text

    t0 = time.monotonic()
    seen = loop.run("demo-diff", dry_run=True)
    _say(render_text(seen.initial))
    found = {str(c.key) for c in seen.initial.drift}
    layers = {layer.value for layer in loop.engine.drivers}
    want = [k for k in DRIFT_KEYS if k.split("/", 1)[0] in layers]
    missing = [k for k in want if k not in found]
    for k in missing:
        _say(f"  [FAIL] drift not seen: {k}")
    steps.record(f"drift detected per application ({len(want) - len(missing)}/{len(want)})", not missing, t0)


def _repair_and_prove(lab, loop: _Loop, steps: _Steps) -> None:
    """Repair the drift, prove the flows again, then show that a converged run writes nothing."""
    _converge_and_prove(lab, loop, steps, "demo-repair", "drift repaired", ("flows after repair", "TCP after repair"))
    if Layer.SIDECAR in loop.engine.drivers:
        from reconciler.lab import demo_grpc
        t0 = time.monotonic()
        ok, line = demo_grpc.split_after_repair(lab, 50)
        _say(f"  [{'ok' if ok else 'FAIL'}] gRPC after repair: {line}")
        steps.record("gRPC split 50/50 after repair", ok, t0)
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
    p.add_argument("--layers", action="append", choices=["switch", "hypervisor", "host", "sidecar"],
                   help="only these layers (default: all four)")
    p.set_defaults(func=run_demo)


if __name__ == "__main__":
    sys.exit(run_demo(argparse.Namespace(lab=str(LAB_FILE), repo=str(INTENTS), keep=False, layers=None)))
