"""Bench: the four layers on a private copy of the reference lab, driven by `reconciler serve`.

Prints:
  lab up with workloads : `Lab.up()` of labs/app-fabric.clab.yml (netns, sshd, OVS, FRR, the six
                          gRPC workloads and the lab's ADS server) (target <= 5 s)
  push -> split seen    : `git push` of a commit changing shop/api's split (90/10 <-> 50/50) until
                          shop/web's gRPC calls (200 per probe, from h1) show the new split within
                          7 points (target p50 <= 2 s)
  push -> converged     : `git push` of a commit touching every layer (shop's VNI/VLAN: leaves and
                          hypervisors; api may call web: host nftables sets, sidecar RBAC and client
                          config) until the daemon's run for it succeeded (target p50 <= 5 s)
Root only: `python bench/four_layers.py [--iterations N]`. Uses bench/push_to_converged.py's repo,
hook and daemon set-up.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from reconciler.lab import Lab, grpc_checks  # noqa: E402


def _ptc():
    """bench/push_to_converged.py's helpers (bench/ is not a package; bench/validate.py would
    shadow the `validate` protos package if bench/ went on sys.path)."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("push_to_converged", ROOT / "bench" / "push_to_converged.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


_P = _ptc()
free_port, git, pct = _P.free_port, _P.git, _P.pct

API = "xds:///api.shop:8080"


def _stats(name: str, xs: list[float]) -> str:
    return (f"  {name:<22} p50 {statistics.median(xs):.2f}s  p90 {pct(xs, 90):.2f}s  p95 {pct(xs, 95):.2f}s  "
            f"max {max(xs):.2f}s  (n={len(xs)})")


def _daemon(tmp: Path, bare: Path, inventory: str, port: int, secret: Path, verbose: bool) -> subprocess.Popen:
    # --verbose is a global option: it goes before the sub-command
    cmd = [sys.executable, "-m", "reconciler.cli", *(["--verbose"] if verbose else []),
           "serve", "--repo", str(bare), "--store", str(tmp / "db.sqlite"),
           "--state-dir", str(tmp / "state"), "--listen", f"127.0.0.1:{port}", "--webhook-secret-file", str(secret),
           "--interval", "3600", "--drift-interval", "3600", "--log-file", str(tmp / "serve.log"),
           "--inventory", inventory]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                            env=dict(os.environ, RECONCILER_CA_DIR=str(tmp / "ca")))


def _converged(tmp: Path, port: int, sha: str) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
            if json.loads(r.read()).get("revision") != sha:
                return False
        with sqlite3.connect(tmp / "db.sqlite", timeout=5) as c:
            row = c.execute("SELECT phase FROM runs WHERE revision = ? AND dry_run = 0 ORDER BY started DESC LIMIT 1",
                            (sha,)).fetchone()
        return bool(row and row[0] == "succeeded")
    except Exception:
        return False


def _wait(pred, timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > end:
            raise SystemExit(f"{what}: not within {timeout:g}s")
        time.sleep(0.01)


def _push(work: Path, edit, msg: str) -> tuple[str, float]:
    app = work / "apps" / "shop.yaml"
    data = yaml.safe_load(app.read_text())
    edit(data)
    app.write_text(yaml.safe_dump(data, sort_keys=False))
    git(work, "commit", "-qam", msg)
    sha = git(work, "rev-parse", "HEAD").strip()
    t0 = time.monotonic()
    git(work, "push", "-q", "origin", "HEAD:main")
    return sha, t0


def run(lab: Lab, iterations: int, tmp: Path, verbose: bool = False) -> None:
    port, secret = free_port(), tmp / "secret"
    secret.write_text("bench-webhook-secret-0123456789")
    bare, work = tmp / "origin.git", tmp / "work"
    git(tmp, "init", "-q", "--bare", "-b", "main", str(bare))
    git(tmp, "clone", "-q", str(bare), str(work))
    git(work, "checkout", "-q", "-B", "main")
    shutil.copytree(ROOT / "examples" / "intents", work, dirs_exist_ok=True)
    git(work, "add", "-A")
    git(work, "commit", "-qm", "seed")
    git(work, "push", "-q", "origin", "HEAD:main")
    subprocess.run([sys.executable, "-m", "reconciler.cli", "hooks", "install", str(bare), "--webhook",
                    f"http://127.0.0.1:{port}/hooks/git", "--webhook-secret-file", str(secret), "--branch", "main",
                    "--inventory", str(lab.inventory_path)], check=True, capture_output=True)
    daemon = _daemon(tmp, bare, str(lab.inventory_path), port, secret, verbose)
    try:
        seed = git(work, "rev-parse", "HEAD").strip()
        _wait(lambda: _converged(tmp, port, seed), 180, "seed revision converged")
        split_s, conv_s = [], []
        for i in range(iterations):
            v1 = 50 if i % 2 == 0 else 90

            def set_split(d, v1=v1):
                d["spec"]["traffic"]["api"]["split"] = {"v1": v1, "v2": 100 - v1}
            _, t0 = _push(work, set_split, f"split {v1}")
            _wait(lambda: abs(grpc_checks.share(grpc_checks.calls(lab, "h1", API, n=200), ["api-v1-h3"]) - v1) <= 7,
                  60, f"split {v1} seen")
            split_s.append(time.monotonic() - t0)

            def every_layer(d, moved=(i % 2 == 0)):
                # shop's segment moves (VNI/VLAN: leaves, hypervisors), api may call web (host
                # nftables sets, sidecar RBAC and client config), and the split changes (routes)
                seg = d["spec"]["segment"]
                seg["vni"], seg["vlan"] = (5011, 111) if moved else (5001, 101)
                allow = [a for a in d["spec"]["policy"]["allow"] if a["from"] != "api"]
                if moved:
                    allow.append({"from": "api", "to": "web", "ports": ["http"]})
                d["spec"]["policy"]["allow"] = allow
            sha, t0 = _push(work, every_layer, f"every layer {i}")
            _wait(lambda: _converged(tmp, port, sha), 120, f"push {i} converged")
            conv_s.append(time.monotonic() - t0)
        print(_stats("push -> split seen", split_s))
        print(_stats("push -> converged", conv_s))
    finally:
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(20)
        except subprocess.TimeoutExpired:
            daemon.kill()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--iterations", type=int, default=6)
    ap.add_argument("--keep-log", type=Path, default=None, help="copy the daemon's JSON log here (for profiling)")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="ni-4l-bench-"))
    lab = Lab.from_file(ROOT / "labs" / "app-fabric.clab.yml", "ni-4l-b", tmp / "inventory", "172.31.93.0/24")
    try:
        t0 = time.monotonic()
        lab.up()
        print(f"four layers on the reference lab (load {os.getloadavg()[0]:.1f}):")
        print(f"  lab up with workloads  {time.monotonic() - t0:.2f}s")
        run(lab, args.iterations, tmp, verbose=args.keep_log is not None)
        return 0
    finally:
        lab.down()
        if args.keep_log and (tmp / "serve.log").exists():
            shutil.copy(tmp / "serve.log", args.keep_log)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
