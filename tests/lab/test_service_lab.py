"""End to end on a netns lab: git push -> hooks -> daemon converges the real network ->
history shows it; a manual change on a host is repaired by self-heal within one drift interval.

Real parts: sshd + nftables hosts, OVS hypervisors (mini lab), ansible-runner host and
hypervisor drivers, a bare git repo with the hooks, `git push`, `reconciler serve` as a
process. Reachability is checked with TCP from inside the netns. Marked `lab`.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml
from hd_setup import MINI, MINI_APPS, write_repo
from minilab import MiniLab

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
from svc_helpers import IntentsRepo, stop  # noqa: E402

pytestmark = pytest.mark.lab

DRIFT_S = 8.0
ENV = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.invalid",
       "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.invalid"}


def git(cwd: Path, *a: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *a], cwd=cwd, env=ENV, capture_output=True, text=True, timeout=120, check=check)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(pred, timeout: float, what: str, interval: float = 0.2):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = pred()
        if v:
            return v
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s: {what}")


@pytest.fixture
def svc_lab(tmp_path):
    if os.geteuid() != 0 or not shutil.which("ovs-vswitchd") or not shutil.which("nft"):
        pytest.skip("needs root, Open vSwitch and nftables")
    lab = MiniLab("ni-svc-")
    procs: list[subprocess.Popen] = []
    try:
        lab.up(MINI)
        yield lab, tmp_path, procs
    finally:
        for p in procs:
            stop(p, 30)
        lab.down()


def _health(port: int) -> dict:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=3) as r:
            return json.loads(r.read())
    except Exception:
        return {}


def _cli(*args: str) -> str:
    return subprocess.run([sys.executable, "-m", "reconciler.cli", *args], capture_output=True, text=True,
                          timeout=60).stdout


def test_push_converges_the_lab_and_self_heal_repairs_manual_drift(svc_lab):
    lab, tmp, procs = svc_lab
    repo = IntentsRepo(tmp, fill=lambda w: write_repo(w, MINI_APPS, lab.inventory_path),
                       sync={"self_heal": True, "drift_interval_s": int(DRIFT_S)})
    bare, work, first = repo.bare, repo.work, repo.first

    port = free_port()
    secret = tmp / "secret"
    secret.write_text("lab-webhook-secret-0123456789abcdef")
    store = str(tmp / "db.sqlite")
    assert subprocess.run([sys.executable, "-m", "reconciler.cli", "hooks", "install", str(bare), "--webhook",
                           f"http://127.0.0.1:{port}/hooks/git", "--webhook-secret-file", str(secret),
                           "--inventory", str(lab.inventory_path), "--branch", "main"],
                          capture_output=True, timeout=60).returncode == 0
    procs.append(subprocess.Popen(
        [sys.executable, "-m", "reconciler.cli", "serve", "--repo", str(bare), "--store", store,
         "--state-dir", str(tmp / "state"), "--inventory", str(lab.inventory_path), "--layer", "host",
         "--layer", "hypervisor", "--listen", f"127.0.0.1:{port}", "--webhook-secret-file", str(secret),
         "--interval", "3600", "--log-file", str(tmp / "serve.log")],
        stdout=subprocess.DEVNULL, stderr=open(tmp / "serve.err", "w"), start_new_session=True))

    def converged(sha: str) -> bool:
        h = _health(port)
        if h.get("revision") != sha:
            return False
        runs = json.loads(_cli("history", "--store", store, "--json", "--limit", "20") or "[]")
        return any(r["revision"] == sha and not r["dry_run"] and r["phase"] == "succeeded" for r in runs)

    wait_until(lambda: converged(first), 180, "initial convergence of the lab")
    lab.listen("h2", 8080)
    lab.listen("h2", 9100)
    assert lab.tcp_connects("h1", "10.61.1.21", 8080), "allowed flow connects"
    assert not lab.tcp_connects("h1", "10.61.1.21", 9100), "port 9100 not allowed yet"

    # a bad push never reaches the network
    app = work / "apps" / "shop.yaml"
    good_text = app.read_text()
    doc = yaml.safe_load(good_text)
    doc["spec"]["services"]["api"]["ports"].append({"name": "metrics", "port": 99999})
    app.write_text(yaml.safe_dump(doc))
    git(work, "commit", "-qam", "bad port")
    res = git(work, "push", "origin", "HEAD:main", check=False)
    assert res.returncode != 0 and "apps/shop.yaml:" in res.stderr
    git(work, "reset", "-q", "--hard", first)

    # a good push converges the lab through the webhook
    doc = yaml.safe_load(good_text)
    doc["spec"]["services"]["api"]["ports"].append({"name": "metrics", "port": 9100})
    doc["spec"]["policy"]["allow"][0]["ports"] = ["grpc", "metrics"]
    app.write_text(yaml.safe_dump(doc))
    git(work, "commit", "-qam", "shop: allow metrics")
    sha = git(work, "rev-parse", "HEAD").stdout.strip()
    t0 = time.monotonic()
    res = git(work, "push", "origin", "HEAD:main")
    assert "daemon notified (202)" in res.stderr
    wait_until(lambda: converged(sha), 120, "push converged")
    push_to_converged = time.monotonic() - t0
    assert lab.tcp_connects("h1", "10.61.1.21", 9100), "the pushed change is live"
    hist = _cli("history", "--store", store, "--app", "shop")
    assert sha[:12] in hist and "webhook" in hist

    # manual change on a host: delete the accept rule of the allowed flow on h2
    node = lab.nodes["h2"]
    table = next(t for t in re.findall(r"table inet (\S+)", node.run("nft", "list", "tables").stdout)
                 if t.startswith("netintent"))
    listing = node.run("nft", "-a", "list", "chain", "inet", table, "input").stdout
    handles = [m.group(1) for line in listing.splitlines() if "dport" in line
               for m in [re.search(r"# handle (\d+)", line)] if m]
    assert handles, listing
    for h in handles:
        node.run("nft", "delete", "rule", "inet", table, "input", "handle", h)
    t_drift = time.time()
    assert not lab.tcp_connects("h1", "10.61.1.21", 8080), "the manual change broke the flow"
    wait_until(lambda: lab.tcp_connects("h1", "10.61.1.21", 8080), DRIFT_S + 60, "self-heal")

    def healed():
        runs = json.loads(_cli("history", "--store", store, "--json", "--limit", "50"))
        ok = [r for r in runs if r["trigger"] == "self-heal" and r["started"] >= t_drift and r["phase"] == "succeeded"]
        return (runs, ok) if ok else None
    runs, heal = wait_until(healed, 60, "self-heal run recorded as succeeded")
    # The scan that finds the change may have started just before it (a scan already in flight
    # observes after the edit), so look one interval back.
    scans = sorted(r["started"] for r in runs if r["trigger"] == "drift-scan" and r["started"] >= t_drift - DRIFT_S)
    assert scans and scans[0] - t_drift <= DRIFT_S + 1, "a scan within one drift interval found it"
    assert min(r["started"] for r in heal) - t_drift <= DRIFT_S + 30, "repaired by the first scan's self-heal"
    status = _cli("status", "--store", store)
    assert re.search(r"shop\s+Synced\s+Healthy", status), status
    print(f"push-to-converged (lab, host+hypervisor drivers): {push_to_converged:.2f}s; "
          f"self-heal started {min(r['started'] for r in heal) - t_drift:.2f}s after the manual change")
