"""The demo's sidecar steps: real gRPC traffic between the lab's workloads (reconciler demo).

Contract: each function runs one step against a lab whose four layers were applied and
returns (held, one line saying what was seen); reconciler/demo.py records them.
- `split_step`: >= N answered calls shop/web (h1) -> xds:///api.shop:8080 (at most 1 % failed),
  v1 share within TOLERANCE points of `want_v1`.
- `rbac_step`: a caller on h1 presenting spiffe://<td>/shop/intruder (same CA, same node id,
  so the host's nftables lets it through): every call refused by the server's RBAC.
- `plaintext_step`: shop/web (h1) dialling shop/api's address without TLS: refused
  (mtls: strict), not one call answered.
- `commit_split(repo_dir, weights)`: a git commit in a scratch clone of the intents that
  changes shop/api's split; returns the repo dir to load.
- `sidecar_drift(lab)`: the route of h1 to shop/api served with other weights by hand.
"""
from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from reconciler.lab import grpc_checks

API = "xds:///api.shop:8080"
V1, V2 = ("api-v1-h3",), ("api-v2-h5",)
TOLERANCE = 5.0
SHOP_ROUTE = "api.shop:8080"


def split_step(lab: Any, want_v1: float, n: int = 1000) -> tuple[bool, str]:
    """At least `n` answered calls (topped up to 10 % more when some fail: on a loaded machine
    grpcio may cut a deadline short), at most 1 % failed, v1's share within TOLERANCE."""
    servers: dict[str, int] = {}
    errors: dict[str, int] = {}
    first = ""
    attempts = 0
    while sum(servers.values()) < n and attempts < n * 1.1:
        batch = min(n - sum(servers.values()), int(n * 1.1) - attempts)
        tally = grpc_checks.calls(lab, "h1", API, n=batch)
        attempts += batch
        for k, v in tally["servers"].items():
            servers[k] = servers.get(k, 0) + v
        for k, v in tally["errors"].items():
            errors[k] = errors.get(k, 0) + v
        first = first or tally["first_error"]
    answered = sum(servers.values())
    v1 = grpc_checks.share({"servers": servers}, V1)
    failed = sum(errors.values())
    ok = answered >= n and failed <= n // 100 and abs(v1 - want_v1) <= TOLERANCE
    return ok, (f"{answered} calls answered, v1 {v1:.1f}% / v2 {100 - v1:.1f}% (intent {want_v1:g}/"
                f"{100 - want_v1:g}){f'; {failed} failed: {first}' if failed else ''}")


def split_after_repair(lab: Any, want_v1: float, settle_s: float = 20.0) -> tuple[bool, str]:
    """The split once calls succeed again: a repaired key is read by the workload's file
    watcher within its refresh interval (bootstrap: 5 s), so wait (bounded) for clean calls."""
    import time
    deadline = time.monotonic() + settle_s
    while time.monotonic() < deadline:
        tally = grpc_checks.calls(lab, "h1", API, n=40)
        if not tally["errors"]:
            break
        time.sleep(0.5)
    return split_step(lab, want_v1)


def rbac_step(lab: Any, trust_domain: str, n: int = 20) -> tuple[bool, str]:
    intruder = f"spiffe://{trust_domain}/shop/intruder"
    with tempfile.TemporaryDirectory(prefix="ni-intruder-") as d:
        tally = grpc_checks.intruder_calls(lab, "h1", ["web.shop"], intruder, API, n, Path(d))
    denied = tally["errors"].get("PERMISSION_DENIED", 0)
    return denied == n, f"{intruder}: {denied}/{n} refused by RBAC ({tally['first_error'] or 'no error'})"


def plaintext_step(lab: Any, n: int = 10) -> tuple[bool, str]:
    tally = grpc_checks.calls(lab, "h1", "10.50.1.21:8080", n=n, timeout_s=1.0)
    answered = sum(tally["servers"].values())
    return answered == 0, f"plaintext to 10.50.1.21:8080: {answered}/{n} answered ({tally['first_error']})"


def commit_split(repo_dir: Path, v1: int, v2: int, workdir: Path) -> Path:
    """A scratch git repo holding the intents, and a commit changing shop/api's split."""
    dst = workdir / "intents"
    if not dst.exists():
        shutil.copytree(repo_dir, dst)
        _git(dst, "init", "-q")
        _git(dst, "add", "-A")
        _git(dst, "commit", "-q", "-m", "intents as in examples/")
    shop = dst / "apps" / "shop.yaml"
    text, k = re.subn(r"split: \{v1: \d+, v2: \d+\}", f"split: {{v1: {v1}, v2: {v2}}}", shop.read_text())
    if k != 1:
        raise RuntimeError(f"{shop}: no `split: {{v1: .., v2: ..}}` to change")
    shop.write_text(text)
    _git(dst, "commit", "-q", "-am", f"shop/api: split v1 {v1} / v2 {v2}")
    return dst


def _git(d: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.name=demo", "-c", "user.email=demo@example.invalid", *args],
                   cwd=d, check=True, capture_output=True, timeout=30)


def sidecar_drift(lab: Any) -> str:
    grpc_checks.hand_edit_route(lab, "h1", SHOP_ROUTE, [0, 100])
    return "sidecar h1: route api.shop:8080 served by hand with weights 0/100 (an old version)"
