"""Benchmark: compile + plan at scale, full and incremental. Prints figures.

    python bench/plan.py [--apps 10000] [--targets 1000]

Generates N applications spread over M targets (hosts; hypervisors and leaves scale with
them: 10 hosts per hypervisor, 10 hypervisors per leaf), each app with two services and a
policy flow; every 50th app calls an exported service of the next one. Validation is not
part of the timing (it has its own cost); the figures are:
  full compile, full plan vs empty observed, no-op plan vs observed == desired,
  peak RSS of the process, and incremental compile + re-plan after k apps change.
"""
from __future__ import annotations

import argparse
import gc
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from reconciler.compile import Compiler  # noqa: E402
from reconciler.intents.models import Application, IntentRepo, Inventory, InventoryHost, RepoConfig  # noqa: E402
from reconciler.model import State  # noqa: E402
from reconciler.plan import make_plan  # noqa: E402


def make_inventory(n_hosts: int) -> Inventory:
    hosts: dict[str, InventoryHost] = {}
    n_hv = max(1, n_hosts // 10)
    n_leaf = max(1, n_hv // 10)
    for i in range(n_leaf):
        hosts[f"leaf{i}"] = InventoryHost(name=f"leaf{i}", groups=("switches",), vars={
            "netintent_vtep": f"10.255.{i // 250}.{i % 250 + 1}", "netintent_asn": 65000 + i,
            "netintent_fabric_ports": ["eth100"]})
    for i in range(n_hv):
        hosts[f"hv{i}"] = InventoryHost(name=f"hv{i}", groups=("hypervisors",), vars={
            "netintent_leaf": f"leaf{i // 10}", "netintent_leaf_port": f"eth{i % 10 + 1}",
            "netintent_uplink": "eth1"})
    for i in range(n_hosts):
        # one interface per application segment on the host, each with its hypervisor port
        hosts[f"h{i}"] = InventoryHost(name=f"h{i}", groups=("hosts", "sidecars"), vars={
            "netintent_hypervisor": f"hv{i // 10}", "netintent_hypervisor_port": f"h{i}-eth1",
            "netintent_hypervisor_ports": {f"eth{k}": f"h{i}-eth{k}" for k in range(1, IFACES + 1)}})
    return Inventory(hosts=hosts)


IFACES = 32


def make_app(i: int, n_hosts: int, n_apps: int, rev: int = 0) -> Application:
    subnet = f"10.{(i >> 8) & 255}.{i & 255}.0/24"
    # A VLAN is significant per leaf (validate checks uniqueness among apps on a leaf), so
    # apps sharing a VLAN (same j) are placed under different leaves (shift by k * 100 hosts).
    # Hosts carry one interface per application segment.
    k, j = divmod(i, 1000)
    h1 = (2 * j + 100 * k) % n_hosts
    host1, host2 = f"h{h1}", f"h{h1 + 1}"
    if1 = if2 = f"eth{2 * k + j // 500 + 1}"
    vlan = j + 2
    net = subnet.rsplit(".", 1)[0]
    allow = [{"from": "web", "to": "api", "ports": ["grpc"]}]
    if i % 50 == 0 and i + 1 < n_apps:
        allow.append({"from": "web", "to": f"app{i + 1}/api", "ports": ["grpc"]})
    return Application.model_validate({
        "apiVersion": "netintent/v1", "kind": "Application",
        "metadata": {"name": f"app{i}"},
        "spec": {
            "segment": {"vni": 10000 + i, "vlan": vlan, "subnet": subnet},
            "services": {
                "web": {"instances": [{"host": host1, "address": f"{net}.10", "interface": if1}],
                        "ports": [{"name": "http", "port": 8000 + rev}]},
                "api": {"instances": [{"host": host2, "address": f"{net}.20", "interface": if2}],
                        "ports": [{"name": "grpc", "port": 9000}]},
            },
            "exports": ["api"],
            "policy": {"allow": allow},
            "traffic": {"api": {"timeout_ms": 1000}},
        }})


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--apps", type=int, default=10000)
    ap.add_argument("--targets", type=int, default=1000, help="workload hosts (a multiple of 1000)")
    args = ap.parse_args()

    t = time.perf_counter()
    inv = make_inventory(args.targets)
    apps = {f"app{i}": make_app(i, args.targets, args.apps) for i in range(args.apps)}
    repo = IntentRepo(config=RepoConfig(), inventory=inv, apps=apps)
    print(f"generate {args.apps} apps x {args.targets} hosts: {time.perf_counter() - t:.2f} s (not part of the budget)")

    gc.collect()
    compiler = Compiler()
    t0 = time.perf_counter()
    desired = compiler.compile(repo)
    t1 = time.perf_counter()
    plan = make_plan(desired, State())
    t2 = time.perf_counter()
    noop = make_plan(desired, desired)
    t3 = time.perf_counter()
    assert len(plan.changes) == len(desired) and noop.empty
    print(f"resources: {len(desired)}  targets: {len(desired.targets())}")
    print(f"full compile:              {t1 - t0:6.2f} s")
    print(f"full plan (all creates):   {t2 - t1:6.2f} s")
    print(f"compile + plan:            {t2 - t0:6.2f} s   (target <= 10 s)")
    print(f"no-op plan (in sync):      {t3 - t2:6.2f} s")
    print(f"peak RSS:                  {rss_mb():6.0f} MB  (target <= 1024 MB)")

    observed = desired
    rev = 1
    for k in (1, 10, 100, 1000):
        if k > args.apps:
            break
        changed = {}
        for i in range(0, k):
            idx = (i * 7919) % args.apps
            changed[f"app{idx}"] = make_app(idx, args.targets, args.apps, rev=rev)
        rev += 1
        repo2 = IntentRepo(config=repo.config, inventory=inv, apps={**repo.apps, **changed})
        t0 = time.perf_counter()
        desired2 = compiler.compile(repo2)
        t1 = time.perf_counter()
        plan2 = make_plan(desired2, observed, apps=compiler.last_compiled)
        t2 = time.perf_counter()
        print(f"incremental {k:>5} app(s): compiled {len(compiler.last_compiled):>5} apps in {(t1 - t0) * 1000:7.1f} ms,"
              f" re-plan {(t2 - t1) * 1000:7.1f} ms, total {(t2 - t0) * 1000:7.1f} ms, {len(plan2.changes)} change(s)")
        repo = repo2
        observed = desired2


if __name__ == "__main__":
    main()
