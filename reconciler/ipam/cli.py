"""`reconciler ipam show [--app NAME] [--json] [--store URL] [--repo DIR]`, and the plan's IPAM lines.

Contract: `ipam show` reads the store (never writes it) and lists every allocation with its
owner (`app/service/instance` for addresses, the application for VNIs and VLANs), then the
pool usage: per kind, and, with `--repo`, per application subnet and per reconciler.yaml pool
(used of usable). `--json` prints one object {generation, allocations, usage}. Exit 0, or 2
when the store cannot be read. `reconciler.ipam.model.preview_lines(result)` are the lines `plan` prints for the
allocations a load would make or release (the pull-request preview).
"""
from __future__ import annotations

import argparse
import ipaddress
import json
import sys
from typing import Any

from reconciler.ipam.model import Allocations, Kind


def add_cli(sub: Any) -> None:
    p = sub.add_parser("ipam", help="IP address management: allocations and pool usage")
    isub = p.add_subparsers(dest="ipam_command", required=True)
    s = isub.add_parser("show", help="list allocations with their owners and the pool usage")
    s.add_argument("--app", metavar="NAME", help="only this application")
    s.add_argument("--json", action="store_true", help="one JSON object")
    s.add_argument("--store", help="database URL or SQLite file (env RECONCILER_STORE; default .reconciler/state.db)")
    s.add_argument("--repo", metavar="DIR", help="intents repo: also show usage per subnet and pool")
    s.set_defaults(func=cmd_show)


def _usage(allocs: Allocations, repo: Any) -> list[dict[str, Any]]:
    rows = list(allocs.rows())
    out: list[dict[str, Any]] = [{"pool": k.value, "used": sum(1 for r in rows if r.kind is k)} for k in Kind]
    if repo is None:
        return out
    ipam = repo.config.ipam
    for kind, pool in ((Kind.VNI, ipam.vni), (Kind.VLAN, ipam.vlan)):
        if pool is not None:
            out.append({"pool": f"ipam.{kind.value} {pool.start}..{pool.end}", "size": pool.end - pool.start + 1,
                        "used": sum(1 for r in rows if r.kind is kind)})
    for name in sorted(allocs.apps):
        app = repo.apps.get(name)
        if app is None or not allocs.apps[name].addresses:
            continue
        net = ipaddress.IPv4Network(app.spec.segment.subnet)
        insts = [i for s in app.spec.services.values() for i in s.instances]
        out.append({"pool": f"{name} {net}", "size": net.num_addresses - 3, "allocated":
                    len(allocs.apps[name].addresses), "used": len(insts)})
    return out


def cmd_show(args: argparse.Namespace) -> int:
    from reconciler.ipam import persist
    from reconciler.ipam.binding import default_store_url
    url = default_store_url(args.store)
    allocs = persist.read(persist.engine_for(url), args.app) if persist.exists(url) else Allocations()
    repo = None
    if args.repo:
        from reconciler.intents.validate import load_repo
        from reconciler.ipam.binding import StoreBinding, load_with_ipam
        # the repo as `apply` loads it, with the stored allocations, recording nothing
        repo = load_with_ipam(lambda previous: load_repo(args.repo, previous=previous), StoreBinding(url), "")
    usage = _usage(allocs, repo)
    rows = list(allocs.rows())
    if args.json:
        print(json.dumps({"generation": allocs.generation, "usage": usage,
                          "allocations": [{"app": r.app, "kind": r.kind.value, "owner": r.owner, "value": r.value}
                                          for r in rows]}, indent=2, sort_keys=True))
        return 0
    w = sys.stdout.write
    w(f"{'KIND':<8} {'VALUE':<16} OWNER\n")
    for r in rows:
        w(f"{r.kind.value:<8} {r.value:<16} {r.label()}\n")
    w(f"\n{'POOL':<32} USAGE\n")
    for u in usage:
        size = f" of {u['size']}" if "size" in u else ""
        w(f"{u['pool']:<32} {u['used']}{size}\n")
    return 0
