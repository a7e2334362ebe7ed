"""Push-to-converged time of the GitOps service, with the webhook (no polling).

Sets up a bare intents repo with the hooks installed (pre-receive validation, post-receive
webhook), starts `reconciler serve` as a process, then N times: commit a change, `git push`,
and wait until the daemon reports the pushed revision applied and converged (its run
succeeded in the store). Prints p50/p95/max of push start -> converged, and of the push
itself (which includes the pre-receive validation).

  python bench/push_to_converged.py             # offline snapshot drivers (example intents)
  python bench/push_to_converged.py --minilab   # real host + hypervisor drivers on a netns mini
                                                # lab this script brings up and down (root)
  python bench/push_to_converged.py --reference-lab  # switch + hypervisor + host drivers on a
                                                # private copy of labs/app-fabric.clab.yml
`--change port` (default): each push changes the shop api's grpc port, which the policy
allows: every push changes nftables rules on the api hosts (and the desired state of every layer
that names the port). `--change instance`: each push adds one shop web instance on the host of
the first one: a new OVS port and flows on its hypervisor, an address, route and set elements on
hosts, and /32 routes on the leaves of the reference lab: every layer changes.
"""
from __future__ import annotations

import argparse
import ipaddress
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "intents"
ENV = {**os.environ, "GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "b@example.invalid",
       "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "b@example.invalid"}


def git(cwd: Path, *a: str) -> str:
    return subprocess.run(["git", *a], cwd=cwd, env=ENV, check=True, capture_output=True, text=True, timeout=120).stdout


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, int(round(p / 100 * len(xs) + 0.5)) - 1))]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--iterations", type=int, default=20)
    ap.add_argument("--intents", default=str(EXAMPLE), help="intents repo to seed from")
    ap.add_argument("--inventory", help="real lab inventory (default: offline snapshot drivers)")
    ap.add_argument("--layer", action="append", help="only these layers (passed to serve)")
    ap.add_argument("--minilab", action="store_true", help="bring up the netns mini lab (host+hypervisor)")
    ap.add_argument("--reference-lab", action="store_true",
                    help="bring up a private copy of the reference lab (switch+hypervisor+host)")
    ap.add_argument("--timeout", type=float, default=120.0, help="per push")
    ap.add_argument("--change", choices=("port", "instance"), default="port", help="what each push changes")
    args = ap.parse_args()
    lab, inv_dir = None, None
    if args.minilab:
        sys.path.insert(0, str(ROOT / "tests" / "lab"))
        from hd_setup import MINI, MINI_APPS, write_repo
        from minilab import MiniLab
        lab = MiniLab("ni-svc-b")
        lab.up(MINI)
        args.intents = str(write_repo(lab.dir / "repo", MINI_APPS, lab.inventory_path))
        args.inventory = str(lab.inventory_path)
        args.layer = args.layer or ["host", "hypervisor"]
    if args.reference_lab:
        from reconciler.lab import Lab
        inv_dir = Path(tempfile.mkdtemp(prefix="ni-svc-bref-"))
        lab = Lab.from_file(ROOT / "labs" / "app-fabric.clab.yml", "ni-svc-bref", inv_dir, "172.31.68.0/24")
        lab.up()
        args.inventory = str(lab.inventory_path)
        args.layer = args.layer or ["switch", "hypervisor", "host"]
    try:
        return run(args)
    finally:
        if lab is not None:
            lab.down()
        if args.reference_lab:
            shutil.rmtree(inv_dir, ignore_errors=True)


def run(args: argparse.Namespace) -> int:
    tmp = Path(tempfile.mkdtemp(prefix="ni-svc-bench-"))
    port = free_port()
    secret = tmp / "secret"
    secret.write_text("bench-webhook-secret-0123456789")
    bare, work = tmp / "origin.git", tmp / "work"
    git(tmp, "init", "-q", "--bare", "-b", "main", str(bare))
    git(tmp, "clone", "-q", str(bare), str(work))
    git(work, "checkout", "-q", "-B", "main")
    shutil.copytree(args.intents, work, dirs_exist_ok=True, ignore=shutil.ignore_patterns(".git"))
    git(work, "add", "-A")
    git(work, "commit", "-qm", "seed")
    git(work, "push", "-q", "origin", "HEAD:main")
    hook_args = ["hooks", "install", str(bare), "--webhook", f"http://127.0.0.1:{port}/hooks/git",
                 "--webhook-secret-file", str(secret), "--branch", "main"]
    if args.inventory:
        hook_args += ["--inventory", args.inventory]
    subprocess.run([sys.executable, "-m", "reconciler.cli", *hook_args], check=True, capture_output=True)
    cmd = [sys.executable, "-m", "reconciler.cli", "serve", "--repo", str(bare), "--store", str(tmp / "db.sqlite"),
           "--state-dir", str(tmp / "state"), "--listen", f"127.0.0.1:{port}", "--webhook-secret-file", str(secret),
           "--interval", "3600", "--drift-interval", "3600", "--log-file", str(tmp / "serve.log")]
    for layer in args.layer or ():
        cmd += ["--layer", layer]
    if args.inventory:
        cmd += ["--inventory", args.inventory]
        mode = f"real drivers: {', '.join(args.layer or ['all layers'])}"
    else:
        snap = tmp / "snap.json"
        snap.write_text('{"resources": []}')
        cmd += ["--observed", str(snap)]
        mode = "offline snapshot drivers"
    daemon = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        import sqlite3

        def converged(sha: str) -> bool:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                    if json.loads(r.read()).get("revision") != sha:
                        return False
                with sqlite3.connect(tmp / "db.sqlite", timeout=5) as c:
                    row = c.execute("SELECT phase FROM runs WHERE revision = ? AND dry_run = 0 ORDER BY started DESC "
                                    "LIMIT 1", (sha,)).fetchone()
                return bool(row and row[0] == "succeeded")
            except Exception:
                return False

        first = git(work, "rev-parse", "HEAD").strip()
        end = time.monotonic() + args.timeout
        while not converged(first):
            if time.monotonic() > end or daemon.poll() is not None:
                print("daemon did not converge the seed revision", file=sys.stderr)
                return 1
            time.sleep(0.05)
        totals, pushes = [], []
        for i in range(args.iterations):
            app = work / "apps" / "shop.yaml"
            data = yaml.safe_load(app.read_text())
            if args.change == "port":
                data["spec"]["services"]["api"]["ports"][0]["port"] = 8100 + i
            else:
                web = data["spec"]["services"]["web"]["instances"]
                net = ipaddress.IPv4Network(data["spec"]["segment"]["subnet"])
                web.append({"host": web[0]["host"], "address": str(net.network_address + 100 + i)})
            app.write_text(yaml.safe_dump(data, sort_keys=False))
            git(work, "commit", "-qam", f"bench {i}")
            sha = git(work, "rev-parse", "HEAD").strip()
            t0 = time.monotonic()
            git(work, "push", "-q", "origin", "HEAD:main")
            t_push = time.monotonic() - t0
            end = t0 + args.timeout
            while not converged(sha):
                if time.monotonic() > end:
                    print(f"iteration {i}: not converged within {args.timeout}s", file=sys.stderr)
                    return 1
                time.sleep(0.01)
            totals.append(time.monotonic() - t0)
            pushes.append(t_push)
        print(f"push-to-converged with webhook ({mode}), {args.iterations} pushes, change: {args.change}:")
        print(f"  total  p50 {statistics.median(totals):.2f}s  p95 {pct(totals, 95):.2f}s  max {max(totals):.2f}s")
        print(f"  push   p50 {statistics.median(pushes):.2f}s  p95 {pct(pushes, 95):.2f}s  "
              "(git push incl. pre-receive validation + post-receive webhook)")
        return 0
    finally:
        if daemon.poll() is None:
            daemon.send_signal(signal.SIGTERM)
            try:
                daemon.wait(20)
            except subprocess.TimeoutExpired:
                daemon.kill()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
