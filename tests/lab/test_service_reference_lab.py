"""The GitOps service on the reference lab (labs/app-fabric.clab.yml: 2 leaves with FRR and
VXLAN, 3 hypervisors with OVS, 6 hosts) with the switch, hypervisor and host drivers:
push -> hooks -> daemon converges -> TCP flows as the intents say -> history; manual drift on
a host and on a hypervisor repaired by self-heal. Marked `lab` (root, OVS, FRR, sshd)."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from svc_helpers import IntentsRepo, stop  # noqa: E402
from test_service_lab import _cli, _health, free_port, git, wait_until  # also puts svc_helpers on the path

from reconciler.lab.probe import Flow, probe_tcp

pytestmark = pytest.mark.lab
REPO = Path(__file__).resolve().parents[2]
REFERENCE = REPO / "labs" / "app-fabric.clab.yml"
DRIFT_S = 10

WEB_TO_API = Flow("h1", "10.50.1.11", "h3", "10.50.1.21", 8080, "shop/web -> shop/api v1")
WEB_TO_API_9100 = Flow("h1", "10.50.1.11", "h3", "10.50.1.21", 9100, "shop/web -> shop/api metrics")
DASH_TO_API = Flow("h4", "10.50.3.12", "h3", "10.50.1.21", 8080, "analytics/dash -> shop/api (no allow)")


def connects(lab, flow: Flow) -> bool:
    return probe_tcp(lab, [flow])[0].connected


def test_service_on_the_reference_lab(lab_factory, tmp_path):
    lab = lab_factory(REFERENCE, name="ni-svc-ref", mgmt_subnet="172.31.67.0/24",
                      features=("base", "ssh", "ovs", "frr"))
    inv = str(lab.inventory_path)
    repo = IntentsRepo(tmp_path, sync={"self_heal": True, "drift_interval_s": DRIFT_S})  # examples/intents
    bare, work, first = repo.bare, repo.work, repo.first
    port = free_port()
    secret = tmp_path / "secret"
    secret.write_text("ref-lab-webhook-secret-0123456789")
    store = str(tmp_path / "db.sqlite")
    subprocess.run([sys.executable, "-m", "reconciler.cli", "hooks", "install", str(bare), "--webhook",
                    f"http://127.0.0.1:{port}/hooks/git", "--webhook-secret-file", str(secret), "--inventory", inv],
                   check=True, capture_output=True, timeout=60)
    daemon = subprocess.Popen(
        [sys.executable, "-m", "reconciler.cli", "serve", "--repo", str(bare), "--store", store, "--state-dir",
         str(tmp_path / "state"), "--inventory", inv, "--layer", "switch", "--layer", "hypervisor", "--layer", "host",
         "--listen", f"127.0.0.1:{port}", "--webhook-secret-file", str(secret), "--interval", "3600",
         "--log-file", str(tmp_path / "serve.log")],
        stdout=subprocess.DEVNULL, stderr=open(tmp_path / "serve.err", "w"), start_new_session=True)
    try:
        def converged(sha: str) -> bool:
            if _health(port).get("revision") != sha:
                return False
            runs = json.loads(_cli("history", "--store", store, "--json", "--limit", "20") or "[]")
            return any(r["revision"] == sha and not r["dry_run"] and r["phase"] == "succeeded" for r in runs)

        wait_until(lambda: converged(first), 600, "initial convergence of the reference lab")
        assert connects(lab, WEB_TO_API) and not connects(lab, DASH_TO_API)
        assert not connects(lab, WEB_TO_API_9100)

        app = work / "apps" / "shop.yaml"
        doc = yaml.safe_load(app.read_text())
        doc["spec"]["services"]["api"]["ports"].append({"name": "metrics", "port": 9100})
        doc["spec"]["policy"]["allow"][0]["ports"] = ["grpc", "metrics"]
        app.write_text(yaml.safe_dump(doc, sort_keys=False))
        git(work, "commit", "-qam", "shop: allow metrics")
        sha = git(work, "rev-parse", "HEAD").stdout.strip()
        t0 = time.monotonic()
        assert "daemon notified (202)" in git(work, "push", "origin", "HEAD:main").stderr
        wait_until(lambda: converged(sha), 300, "push converged")
        took = time.monotonic() - t0
        assert connects(lab, WEB_TO_API_9100) and connects(lab, WEB_TO_API) and not connects(lab, DASH_TO_API)
        assert sha[:12] in _cli("history", "--store", store, "--app", "shop")

        # manual drift on a host (nft set flushed) and a hypervisor (anti-spoofing flow deleted)
        lab.exec("h3", ["nft", "flush", "set", "inet", "netintent_shop", "allow_api_grpc"])
        lab.exec("hv1", ["ovs-ofctl", "--strict", "del-flows", "br0", "priority=200,ip,in_port=eth2,nw_src=10.50.1.11"])
        t_drift = time.time()
        assert not connects(lab, WEB_TO_API)
        wait_until(lambda: connects(lab, WEB_TO_API), DRIFT_S + 240, "self-heal", interval=2.0)
        runs = json.loads(_cli("history", "--store", store, "--json", "--limit", "50"))
        heals = [r for r in runs if r["trigger"] == "self-heal" and r["started"] >= t_drift]
        assert heals, runs[:5]
        scans = sorted(r["started"] for r in runs if r["trigger"] == "drift-scan" and r["started"] >= t_drift)
        print(f"reference lab: push-to-converged {took:.1f}s; first scan {scans[0] - t_drift:.1f}s and self-heal "
              f"{min(r['started'] for r in heals) - t_drift:.1f}s after the manual change")
    finally:
        stop(daemon, 60)
