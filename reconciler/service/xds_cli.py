"""`reconciler serve-xds`: run the ADS server for the sidecar layer of an intents repo.

Contract: `add_cli(subparsers)` registers the subcommand; `serve(...)` is the function
behind it, usable by `reconciler serve`. It loads and validates the repo, compiles the
sidecar layer, pushes every node's snapshot through the sidecar driver and keeps serving.
With `--watch S` it re-reads the repo every S seconds and pushes what changed (only nodes
whose resources changed get a push). `--workload-dir DIR` writes, for every sidecar node,
DIR/<node>/bootstrap.json and certificates issued by the lab CA kept in DIR/ca (private
keys 0600, never printed). TLS for the ADS connection: `--tls-cert/--tls-key`
(+ `--tls-client-ca` to require client certificates). When an ADS relay (reconciler/xds/relay.py,
e.g. the lab's) already serves `--listen`, the snapshots are handed to it over its control
socket instead of binding the port. Exit codes: 0 after a clean stop
(SIGINT/SIGTERM or `--duration`), 2 on a bad repo or a port that cannot be bound.
"""
from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

DEFAULT_LISTEN = "127.0.0.1:18001"


def add_cli(subparsers: Any) -> None:
    p = subparsers.add_parser("serve-xds", help="serve the sidecar layer over ADS (xDS) to gRPC workloads")
    p.add_argument("repo", help="intents repo directory")
    p.add_argument("--inventory", help="inventory file (default: the one named in reconciler.yaml)")
    p.add_argument("--listen", default=DEFAULT_LISTEN, help=f"ADS address (default {DEFAULT_LISTEN})")
    p.add_argument("--tls-cert", help="server certificate (PEM) for TLS on the ADS port")
    p.add_argument("--tls-key", help="server private key (PEM)")
    p.add_argument("--tls-client-ca", help="require client certificates signed by this CA")
    p.add_argument("--workload-dir", help="write lab bootstraps and certificates per node here")
    p.add_argument("--ads-uri", help="ADS address written into bootstraps (default: --listen)")
    p.add_argument("--watch", type=float, default=0.0, metavar="S", help="re-read the repo every S s")
    p.add_argument("--ack-timeout", type=float, default=5.0, help="seconds to wait for ACK/NACK")
    p.add_argument("--duration", type=float, default=0.0, help="stop after S s (0: until signalled)")
    p.add_argument("--json", action="store_true", help="print results as JSON lines")
    p.set_defaults(func=cmd_serve_xds)


def cmd_serve_xds(args: argparse.Namespace) -> int:
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        return serve(args.repo, listen=args.listen, inventory=args.inventory,
                     tls=(args.tls_cert, args.tls_key, args.tls_client_ca),
                     workload_dir=args.workload_dir, ads_uri=args.ads_uri, watch_s=args.watch,
                     ack_timeout=args.ack_timeout, duration_s=args.duration, stop=stop,
                     out=_printer(args.json))
    except _Fatal as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


class _Fatal(Exception):
    pass


def _printer(as_json: bool) -> Callable[[dict], None]:
    def out(rec: dict) -> None:
        if as_json:
            print(json.dumps(rec, sort_keys=True), flush=True)
        elif rec.get("event") == "applied":
            line = f"{rec['node']}: {rec['outcome']}"
            if rec.get("error"):
                line += f" - {rec['error']}"
            print(line, flush=True)
        else:
            print(" ".join(f"{k}={v}" for k, v in rec.items()), flush=True)
    return out


def _load(repo_dir: str, inventory: str | None):
    from reconciler.compile import compile_repo
    from reconciler.compile.context import CompileContext
    from reconciler.intents.validate import RepoInvalid, load_repo
    from reconciler.model import Layer
    try:
        repo = load_repo(repo_dir, inventory)
    except RepoInvalid as e:
        raise _Fatal(f"{repo_dir}: invalid intents: {e}") from None
    desired = compile_repo(repo)
    nodes: dict[str, list] = {}
    for r in desired:
        if r.key.layer is Layer.SIDECAR:
            nodes.setdefault(r.key.target, []).append(r)
    return repo, CompileContext.of(repo), nodes


def _targets(repo, ctx, nodes) -> dict:
    from reconciler.compile.sidecar import node_of
    from reconciler.drivers.base import Target
    from reconciler.model import Layer
    out = {}
    for h in repo.inventory.group("sidecars"):
        node = node_of(ctx, h.name)
        if node:
            out[node] = Target(node, Layer.SIDECAR, dict(h.vars))
    for node in nodes:
        out.setdefault(node, Target(node, Layer.SIDECAR, {}))
    return out


def write_workload_files(workload_dir: str | Path, repo, ctx, ads_uri: str,
                         ads_tls: dict | None = None) -> dict[str, Path]:
    """Bootstrap + certificates for every sidecar node of the repo; returns node -> path."""
    from reconciler.compile.context import ServiceRef
    from reconciler.compile.sidecar import node_of, provider_name
    from reconciler.xds.bootstrap import write_workload_files as write_one
    from reconciler.xds.ca import CA
    d = Path(workload_dir)
    ca = CA.load_or_create(d / "ca", repo.config.trust_domain)
    idents: dict[str, dict[str, str]] = {}
    for h in repo.inventory.group("sidecars"):
        node = node_of(ctx, h.name)
        if node:
            idents.setdefault(node, {})
    for app in repo.apps.values():
        for sname, svc in app.spec.services.items():
            for inst in svc.instances:
                node = node_of(ctx, inst.host)
                if node:
                    idents.setdefault(node, {})[provider_name(app.name, sname)] = \
                        ctx.identity(ServiceRef(app.name, sname))
    return {node: write_one(d / node, node, ads_uri, ca, ids, ads_tls) for node, ids in sorted(idents.items())}


def _relay(listen: str):
    """The RemoteCache of an ADS relay already serving `listen` (e.g. the lab's), else None."""
    from reconciler.xds.relay import RemoteCache, control_path
    path = control_path(listen)
    if not path.exists():
        return None
    remote = RemoteCache(path)
    if remote.reachable():
        return remote
    remote.close()
    return None


def _ads(listen: str, creds):
    """(the ADS server started here, None) or (an unstarted one, the relay already serving `listen`)."""
    from reconciler.xds.server import XdsServer
    remote = _relay(listen)
    server = XdsServer(listen, credentials=creds)
    if remote is None:
        try:
            server.start()
        except RuntimeError as e:
            raise _Fatal(str(e)) from None
    return server, remote


def serve(repo_dir: str, listen: str = DEFAULT_LISTEN, inventory: str | None = None,
          tls: tuple[str | None, str | None, str | None] = (None, None, None),
          workload_dir: str | None = None, ads_uri: str | None = None, watch_s: float = 0.0,
          ack_timeout: float = 5.0, duration_s: float = 0.0, stop: threading.Event | None = None,
          out: Callable[[dict], None] = lambda rec: None) -> int:
    from reconciler.drivers.base import TargetPlan
    from reconciler.drivers.sidecar import SidecarDriver
    from reconciler.xds.server import tls_credentials

    stop = stop or threading.Event()
    cert, key, client_ca = tls
    if bool(cert) != bool(key):
        raise _Fatal("--tls-cert and --tls-key go together")
    creds = tls_credentials(cert, key, client_ca) if cert and key else None
    repo, ctx, nodes = _load(repo_dir, inventory)
    server, remote = _ads(listen, creds)
    target = listen if remote is not None else server.target
    out({"event": "listening", "address": target, "tls": bool(creds), "relay": remote is not None})
    try:
        if workload_dir:
            ads_tls = {"ca": cert} if cert else None
            paths = write_workload_files(workload_dir, repo, ctx, ads_uri or target, ads_tls)
            out({"event": "workload-files", "dir": str(workload_dir), "nodes": len(paths)})
        driver = SidecarDriver(server, ack_timeout=ack_timeout) if remote is None else \
            SidecarDriver(cache=remote, ack_timeout=ack_timeout)
        last: dict = {}
        deadline = time.monotonic() + duration_s if duration_s > 0 else None
        while True:
            digest = {n: tuple(sorted((str(r.key), r.spec) for r in rs)) for n, rs in nodes.items()}
            if digest != last:
                targets = _targets(repo, ctx, nodes)
                plans = [TargetPlan(targets[n], (), tuple(nodes.get(n, ())), (), True)
                         for n in sorted(targets)]
                for node, res in sorted(driver.apply(plans).items()):
                    rec: dict[str, object] = {"event": "applied", "node": node, "outcome": res.outcome.value}
                    if res.error:
                        rec["error"] = res.error
                    if res.failed_keys:
                        rec["failed_keys"] = list(res.failed_keys)
                    out(rec)
                last = digest
            wait = watch_s if watch_s > 0 else 3600.0
            if deadline is not None:
                wait = min(wait, max(0.0, deadline - time.monotonic()))
            if stop.wait(wait) or (deadline is not None and time.monotonic() >= deadline):
                break
            if watch_s > 0:
                try:
                    repo, ctx, nodes = _load(repo_dir, inventory)
                except _Fatal as e:  # keep serving the last good state
                    out({"event": "invalid", "error": str(e)})
    finally:
        server.stop()
        out({"event": "stopped"})
    return 0
