"""Benchmark: validate a generated intents repo of N applications (default 10,000).

Prints figures: files/bytes generated, wall time of `check_repo` (read + YAML + schema +
semantics + typed models), and peak RSS. Usage: python bench/validate.py [N ...]
Layout of the generated repo: N/10 hosts with 10 interfaces each, N/100 hypervisors, N/1000
leaves; each app has 2 services on one host interface, a local policy, every 10th app exports
its api and the next app calls it.
"""
from __future__ import annotations

import os
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from reconciler.intents.validate import check_repo  # noqa: E402

SLOTS_PER_LEAF = 1000


def generate(root: Path, n: int) -> int:
    (root / "apps").mkdir(parents=True)
    (root / "reconciler.yaml").write_text("apiVersion: netintent/v1\nkind: ReconcilerConfig\n"
                                          "trust_domain: bench.example\n")
    leaves = max(1, -(-n // SLOTS_PER_LEAF))
    inv = ["all:", "  children:", "    switches:", "      hosts:"]
    for L in range(leaves):
        inv.append(f"        leaf{L}: {{netintent_vtep: 10.255.{L // 256}.{L % 256}, netintent_asn: {65000 + L}}}")
    inv += ["    hypervisors:", "      hosts:"]
    for L in range(leaves):
        for k in range(10):
            inv.append(f"        hv{L}-{k}: {{netintent_leaf: leaf{L}, netintent_leaf_port: eth{k + 1}}}")
    inv += ["    hosts:", "      hosts:"]
    for L in range(leaves):
        for j in range(100):
            # one hypervisor port per host interface: an access port carries one app's VLAN
            ports = ", ".join(f"eth{k}: h{j}i{k}" for k in range(1, 11))
            inv.append(f"        h{L}-{j}: {{netintent_hypervisor: hv{L}-{j // 10}, "
                       f"netintent_hypervisor_port: eth{j % 10 + 2}, netintent_hypervisor_ports: {{{ports}}}}}")
    (root / "inventory.yml").write_text("\n".join(inv) + "\n")
    total = 0
    for i in range(n):
        L, s = divmod(i, SLOTS_PER_LEAF)
        host, iface = f"h{L}-{s // 10}", f"eth{s % 10 + 1}"
        net = f"10.{i // 256 % 256}.{i % 256}"
        calls = f"\n      - {{from: web, to: app{i - 1}/api, ports: [grpc]}}" if i % 10 == 1 and s != 0 else ""
        exports = "\n  exports: [api]" if i % 10 == 0 else ""
        text = f"""apiVersion: netintent/v1
kind: Application
metadata: {{name: app{i}, labels: {{team: t{i % 7}}}}}
spec:
  segment: {{vni: {10000 + i}, vlan: {s + 1}, subnet: {net}.0/24}}
  services:
    web:
      instances:
        - {{host: {host}, address: {net}.11, interface: {iface}}}
      ports:
        - {{name: http, port: 80}}
    api:
      identity: spiffe://bench.example/app{i}/api
      instances:
        - {{host: {host}, address: {net}.21, version: v1, interface: {iface}}}
        - {{host: {host}, address: {net}.22, version: v2, interface: {iface}}}
      ports:
        - {{name: grpc, port: 8080}}{exports}
  policy:
    allow:
      - {{from: web, to: api, ports: [grpc]}}{calls}
  traffic:
    api: {{split: {{v1: 90, v2: 10}}, mtls: strict, timeout_ms: 2000}}
"""
        (root / "apps" / f"app{i}.yaml").write_text(text)
        total += len(text)
    return total


def main(argv: list[str]) -> None:
    sizes = [int(a) for a in argv] or [10_000]
    for n in sizes:
        with tempfile.TemporaryDirectory(prefix="ni-bench-validate-") as tmp:
            root = Path(tmp)
            nbytes = generate(root, n)
            t0, c0 = time.perf_counter(), time.process_time()
            repo, errors = check_repo(root)
            dt, cpu = time.perf_counter() - t0, time.process_time() - c0
            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            status = "valid" if repo is not None else f"{len(errors)} errors, first: {errors[0]}"
            print(f"validate apps={n} bytes={nbytes} hosts={len(repo.inventory.hosts) if repo else '?'}: "
                  f"cold {dt:.2f} s wall, {cpu:.2f} s CPU ({cpu / n * 1e6:.0f} us/app), "
                  f"peak RSS {rss:.0f} MiB, {status}")
            # Warm: the same repo again (file cache by content digest), then one app changed.
            t0, c0 = time.perf_counter(), time.process_time()
            check_repo(root)
            warm, warm_cpu = time.perf_counter() - t0, time.process_time() - c0
            app0 = root / "apps" / "app0.yaml"
            app0.write_text(app0.read_text().replace("team: t0", "team: changed"))
            t0, c0 = time.perf_counter(), time.process_time()
            repo, errors = check_repo(root)
            one, one_cpu = time.perf_counter() - t0, time.process_time() - c0
            assert repo is not None and repo.apps["app0"].metadata.labels["team"] == "changed"
            print(f"validate apps={n}: warm (unchanged) {warm:.2f} s wall, {warm_cpu:.2f} s CPU; "
                  f"one app changed {one:.2f} s wall, {one_cpu:.2f} s CPU")
            print(f"load average while measuring: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs "
                  "(wall time includes waiting for a CPU)")


if __name__ == "__main__":
    main(sys.argv[1:])
