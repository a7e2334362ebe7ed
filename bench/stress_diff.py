"""Stress bench: N consecutive `reconciler diff` runs on the reference lab, counting failures.

Contract: brings up a private copy of the reference lab (labs/app-fabric.clab.yml, name
`ni-stress`, its own mgmt subnet), copies examples/intents, and runs `reconciler diff --json`
`--runs` times (default 200) in a fresh process each, with ALL inventory groups (switches,
hypervisors, hosts, sidecars) unless `--no-sidecars`. The sidecar layer makes the diff process
run gRPC (its ADS server, on a free loopback port, and CSDS channels) while Ansible runs: the
case where a fork in that process broke Ansible runs (`ansible run failed (rc=None)`).
By default (not with `--no-workloads`) one lab workload (labs/workloads/agent.py, CSDS only) runs in each
sidecar host's namespace on <mgmt ip>:18000, so every target can be observed and a run is
expected to end with exit 1 (drift: nothing was applied). A run FAILS when it exits 2 or any
target is not ok; the bench prints the count, the errors by layer and message, and run times.
Root only:  flock /tmp/ni-suite.lock python3 bench/stress_diff.py --runs 200
Everything it starts (lab, workloads) is stopped at the end, also on Ctrl-C.
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
# bench/validate.py would shadow the `validate` package the envoy protos import
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
sys.path.insert(0, str(ROOT))

from reconciler.lab import Lab  # noqa: E402

LAB_NAME, MGMT_SUBNET = "ni-stress", "172.31.73.0/24"
CSDS_PORT = 18000
ANSIBLE_LAYERS = ("hypervisor", "host")
GRPC_LOG = re.compile(r"^[IWEF]\d{4} \d\d:\d\d:\d\d\.\d+ +\d+ \S+:\d+\] ")
DIFF = "import sys; from reconciler.cli import main; sys.exit(main())"


def free_loopback_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def inventory_without_sidecars(src: Path, dst: Path) -> Path:
    inv = yaml.safe_load(src.read_text())
    inv["all"]["children"].pop("sidecars", None)
    dst.write_text(yaml.safe_dump(inv, sort_keys=False))
    return dst


def start_workloads(lab: Lab, inventory: Path, work: Path) -> list:
    """One CSDS-only workload per sidecar host, in the host's namespace, on its mgmt address.
    Their ADS server is never reached (nothing is applied): CSDS then reports no resources."""
    from reconciler.xds.bootstrap import write_workload_files
    from reconciler.xds.ca import CA
    from reconciler.xds.workload import Workload
    inv = yaml.safe_load(inventory.read_text())
    nodes = sorted((inv["all"]["children"].get("sidecars") or {}).get("hosts") or {})
    ca = CA.create("corp.example")
    started = []
    try:
        for node in nodes:
            boot = write_workload_files(work / "wl" / node, node, "127.0.0.1:9", ca, {})
            w = Workload(node, work / "wl" / node, boot, admin=f"{lab.mgmt_ip(node)}:{CSDS_PORT}",
                         netns=lab.netns(node))
            started.append(w)
            w.start(timeout=30)
    except BaseException:
        for w in started:
            w.stop()
        raise
    return started


def diff_once(repo: Path, inventory: Path, env: dict, timeout_s: float) -> tuple[int, list, float]:
    """One `reconciler diff --json` in a fresh process: exit code, problems [(layer, target, error)], seconds."""
    t0 = time.monotonic()
    try:
        p = subprocess.run([sys.executable, "-c", DIFF, "diff", str(repo), "--inventory", str(inventory), "--json"],
                           cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return -1, [("-", "-", f"diff did not end within {timeout_s:.0f}s")], time.monotonic() - t0
    dt = time.monotonic() - t0
    try:
        report = json.loads(p.stdout)
    except ValueError:
        return p.returncode, [("-", "-", f"no JSON report: {_last_words(p.stderr)}")], dt
    problems = [(t["layer"], t["target"], t["error"]) for t in report.get("targets", [])
                if t["outcome"] not in ("noop", "applied", "dry-run", "skipped")]
    return p.returncode, problems, dt


def _last_words(stderr: str) -> str:
    """The last lines of stderr without gRPC's own log lines (`I1201 14:05:54.85 ... file.cc:71] ...`)."""
    lines = [ln for ln in stderr.splitlines() if ln.strip() and not GRPC_LOG.match(ln)]
    return " | ".join(lines[-3:])[-400:]


def summarise(results: list[tuple[int, list, float]], label: str) -> None:
    failed = [r for r in results if r[0] == 2 or r[0] < 0 or r[1]]
    times = sorted(r[2] for r in results)
    print(f"{label}: {len(failed)} of {len(results)} runs failed "
          f"({100.0 * len(failed) / max(1, len(results)):.1f} %)")
    ansible = [r for r in results if any(layer in ANSIBLE_LAYERS for layer, _, _ in r[1])]
    print(f"runs with an Ansible layer ({'/'.join(ANSIBLE_LAYERS)}) target failed: {len(ansible)}")
    print(f"exit codes: {dict(sorted(collections.Counter(r[0] for r in results).items()))}")
    if times:
        print(f"run time s: min {times[0]:.2f}  median {statistics.median(times):.2f}  "
              f"p95 {times[int(0.95 * (len(times) - 1))]:.2f}  max {times[-1]:.2f}")
    by_error = collections.Counter((layer, " ".join(err.split())[:110]) for _, probs, _ in results
                                   for layer, _, err in probs)
    for (layer, err), n in by_error.most_common(12):
        print(f"  {n:4d}x {layer:<10} {err}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--no-sidecars", action="store_true", help="inventory without the sidecars group")
    ap.add_argument("--no-workloads", dest="workloads", action="store_false",
                    help="no CSDS workloads: every sidecar target is unreachable (the run then counts "
                         "only non-sidecar problems)")
    ap.add_argument("--timeout", type=float, default=180.0, help="bound on one diff run (s)")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("root only (the lab uses network namespaces)", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="ni-bench-stress-"))
    lab = Lab.from_file(ROOT / "labs" / "app-fabric.clab.yml", LAB_NAME, work, MGMT_SUBNET, log=lambda m: None)
    workloads: list = []
    lab.up()
    try:
        repo = work / "repo"
        shutil.copytree(ROOT / "examples" / "intents", repo)
        inventory = lab.inventory_path
        if args.no_sidecars:
            inventory = inventory_without_sidecars(inventory, work / "inventory-no-sidecars.yml")
        elif args.workloads:
            workloads = start_workloads(lab, inventory, work)
        env = dict(os.environ, PYTHONPATH=str(ROOT), NO_COLOR="1",
                   RECONCILER_XDS_ADDRESS=f"127.0.0.1:{free_loopback_port()}")
        results = []
        for i in range(args.runs):
            rc, problems, dt = diff_once(repo, inventory, env, args.timeout)
            if not args.no_sidecars and not args.workloads:
                problems = [p for p in problems if p[0] != "sidecar"]
                rc = 1 if rc == 2 and not problems else rc
            results.append((rc, problems, dt))
            if problems or rc not in (0, 1):
                print(f"run {i + 1}: exit {rc}: " + "; ".join(f"{l}/{t}: {e[:160]}" for l, t, e in problems),
                      file=sys.stderr)
    finally:
        for w in workloads:
            w.stop()
        lab.down(quiet=True)
        shutil.rmtree(work, ignore_errors=True)
    groups = "switches,hypervisors,hosts" + ("" if args.no_sidecars else ",sidecars")
    summarise(results, f"reconciler diff x{args.runs} on the reference lab, groups {groups}"
                       f"{' (CSDS workloads running)' if args.workloads and not args.no_sidecars else ''}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
