"""Benchmark: `reconciler validate` on the worst inputs we know of, each under 1 MiB.

Prints, per case: input size, exit code, lines printed, wall time and peak RSS of the
`reconciler validate` process (measured with os.wait4 on that child alone). The budget each
case must meet: a few seconds and under 200 MB. Run it under the shared lock:
    flock /tmp/ni-suite.lock python3 bench/validate_worst.py [CASE ...] [--timeout S]
Cases (each is tests/corpus/base with one file replaced or added):
- app-alias-errors      17-20 KB app: one anchored list of 1000 bad ports, aliased by ~800
                        services -> ~808,000 schema errors before the per-file bound
- app-distinct-errors   ~1 MB app: one service with 24,000 distinct bad ports (no aliases)
- app-semantic-errors   app that passes the schema, 256 services x 256 instances (aliases),
                        every address outside the subnet and used many times (refused by the
                        alias growth bound since; before, 196,000 semantic errors)
- app-dense-instances   ~1 MB app, no aliases: 256 services x 98 instances, all of them wrong
- app-alias-at-limit    ~1 MB app: dense instances plus as many aliases of a 1024-instance
                        list as the alias growth bound lets through
- inventory-ranges      ~30 KB inventory: 1,300 host patterns `gNx[0:9999]`
- inventory-1mb-hosts   ~0.7 MB inventory: 9,500 distinct hosts (under the host limit), each with a bad variable
- inventory-jinja       inventory whose every host var is an aliased Jinja lookup
"""
from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent
BASE = ROOT / "tests" / "corpus" / "base"
APP_HEAD = ["apiVersion: netintent/v1", "kind: Application", "metadata: {name: worst}", "spec:",
            "  segment: {vni: 5999, subnet: 10.59.1.0/24}"]


def app_alias_errors() -> tuple[str, str]:
    lines = APP_HEAD + ["  services:", "    s0: {ports: &p [" + ",".join(["0"] * 1000) + "]}"]
    lines += [f"    s{i}: {{ports: *p}}" for i in range(1, 808)]
    return "apps/worst.yaml", "\n".join(lines) + "\n"


def app_distinct_errors() -> tuple[str, str]:
    lines = APP_HEAD + ["  services:", "    s0:", "      ports:"]
    lines += [f"        - {{name: P{i}!, port: {70000 + i}}}" for i in range(24_000)]
    return "apps/worst.yaml", "\n".join(lines) + "\n"


def app_semantic_errors() -> tuple[str, str]:
    inst = ", ".join("{host: h1, address: 10.60.0.1}" for _ in range(256))
    lines = APP_HEAD + ["  services:", f"    s0: {{instances: &i [{inst}]}}"]
    lines += [f"    s{i}: {{instances: *i}}" for i in range(1, 256)]
    return "apps/worst.yaml", "\n".join(lines) + "\n"


def _instances(first: int, n: int) -> str:
    return ", ".join(f"{{host: h1, address: 10.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}}}"
                     for i in range(first, first + n))


def app_dense_instances() -> tuple[str, str]:
    head = APP_HEAD[:4] + ["  segment: {vni: 5999, subnet: 10.0.0.0/8}", "  services:"]
    lines = head + [f"    s{k}: {{instances: [{_instances(k * 98 + 1, 98)}]}}" for k in range(256)]
    return "apps/worst.yaml", "\n".join(lines) + "\n"


def app_alias_at_limit() -> tuple[str, str]:
    """Dense instances plus as many aliases of a 1024-instance list as bounds.alias_growth lets through."""
    from reconciler.intents.bounds import alias_growth
    from reconciler.intents.loader import parse_yaml
    head = APP_HEAD[:4] + ["  segment: {vni: 5999, subnet: 10.0.0.0/8}", "  services:",
                           f"    s0: {{instances: &i [{_instances(1, 1024)}]}}"]
    for aliases in range(255, -1, -1):  # bounded: 256 tries at most
        dense = [f"    s{k}: {{instances: [{_instances(2000 + k * 98, 98)}]}}" for k in range(1, 256 - aliases)]
        text = "\n".join(head + dense + [f"    s{k}: {{instances: *i}}" for k in range(256 - aliases, 256)]) + "\n"
        raw = text.encode()
        if len(raw) < 1 << 20 and alias_growth(parse_yaml("worst.yaml", raw), raw) is None:
            return "apps/worst.yaml", text
    raise AssertionError("no alias count fits")


def inventory_ranges() -> tuple[str, str]:
    lines = (BASE / "inventory.yml").read_text().splitlines() + ["    extra:", "      hosts:"]
    lines += [f"        g{i}x[0:9999]:" for i in range(1300)]
    return "inventory.yml", "\n".join(lines) + "\n"


def inventory_1mb_hosts() -> tuple[str, str]:
    lines = (BASE / "inventory.yml").read_text().splitlines() + ["    extra:", "      hosts:"]
    lines += [f"        x{i}: {{netintent_asn: bad-{i}, ansible_host: 10.{i // 65536}.{i // 256 % 256}.{i % 256}}}"
              for i in range(9_500)]
    return "inventory.yml", "\n".join(lines) + "\n"


def inventory_jinja() -> tuple[str, str]:
    lines = (BASE / "inventory.yml").read_text().splitlines() + [
        "    extra:", "      vars:", "        netintent_x: &j \"{{ lookup('pipe', 'id') }}\"", "      hosts:"]
    lines += [f"        y{i}: {{ansible_host: *j, ansible_user: *j}}" for i in range(5000)]
    return "inventory.yml", "\n".join(lines) + "\n"


CASES: dict[str, Callable[[], tuple[str, str]]] = {
    "app-alias-errors": app_alias_errors, "app-distinct-errors": app_distinct_errors,
    "app-semantic-errors": app_semantic_errors, "app-dense-instances": app_dense_instances,
    "app-alias-at-limit": app_alias_at_limit, "inventory-ranges": inventory_ranges,
    "inventory-1mb-hosts": inventory_1mb_hosts, "inventory-jinja": inventory_jinja,
}


def _count_lines(path: Path) -> tuple[int, list[str]]:
    """Lines of a (possibly huge) output file and its last line, read in chunks (this process
    stays small: see run_case)."""
    n, tail = 0, b""
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            n += chunk.count(b"\n")
            tail = (tail + chunk)[-4096:]
    return n, tail.decode(errors="replace").splitlines()[-1:] or [""]


def build(name: str, repo: Path) -> None:
    """Write case `name` into `repo` (run in a child: see run_case)."""
    sys.path.insert(0, str(ROOT))
    shutil.copytree(BASE, repo)
    rel, text = CASES[name]()
    (repo / rel).write_text(text)
    (repo / ".case").write_text(rel)


def run_case(name: str, tmp: Path, timeout_s: float) -> str:
    # A child's peak RSS counts what its parent held when it forked: the inputs are built in
    # another child, so this process stays small and the figure is the validator's own.
    repo = tmp / name
    subprocess.run([sys.executable, __file__, "--build", name, str(repo)], check=True)
    size = (repo / (repo / ".case").read_text()).stat().st_size
    out = tmp / f"{name}.out"
    with open(out, "wb") as f:
        t0 = time.perf_counter()
        p = subprocess.Popen([sys.executable, "-m", "reconciler.cli", "validate", str(repo)], stdout=f,
                             stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True)
        deadline, status, usage = t0 + timeout_s, None, None
        while status is None:  # bounded: the deadline kills the child
            pid, st, ru = os.wait4(p.pid, os.WNOHANG)
            if pid:
                status, usage = st, ru
            elif time.perf_counter() > deadline:
                os.killpg(p.pid, signal.SIGKILL)
                _, status, usage = os.wait4(p.pid, 0)
            else:
                time.sleep(0.02)
        wall = time.perf_counter() - t0
        p.returncode = os.waitstatus_to_exitcode(status)
    lines, last = _count_lines(out)
    rc = "killed (timeout)" if p.returncode < 0 else f"rc={p.returncode}"
    return (f"{name:22s} {size / 1024:7.1f} KiB  {rc:17s} {lines:8d} lines  {wall:7.2f} s  "
            f"peak RSS {usage.ru_maxrss / 1024:6.0f} MiB  last: {last[0][:110]}")


def main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("cases", nargs="*", metavar="CASE", help=f"some of: {', '.join(CASES)} (default: all)")
    ap.add_argument("--timeout", type=float, default=300.0, help="kill a case after this many seconds")
    ap.add_argument("--build", nargs=2, metavar=("CASE", "DIR"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.build:
        return build(args.build[0], Path(args.build[1]))
    unknown = sorted(set(args.cases) - set(CASES))
    if unknown:
        ap.error(f"unknown case(s) {', '.join(unknown)}")
    with tempfile.TemporaryDirectory(prefix="ni-bench-worst-") as tmp:
        for name in args.cases or list(CASES):
            print(run_case(name, Path(tmp), args.timeout), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
