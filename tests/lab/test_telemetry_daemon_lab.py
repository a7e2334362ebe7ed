"""The daemon collects telemetry on its own schedule (`sync.telemetry_interval_s` of the repo's
reconciler.yaml) and serves it on /metrics: after it converged the reference lab (shared
fixture), N allowed TCP connections billing/invoicer (h2) -> shop/api (h3) and M refused ones
from billing/ledger (h6) appear in the scraped series of shop, at the host layer. Marked `lab`."""
from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))   # svc_helpers
from minilab import listen  # noqa: E402
from svc_helpers import IntentsRepo, stop  # noqa: E402
from test_service_lab import _cli, _health, free_port, wait_until  # noqa: E402
from test_telemetry_lab import connects  # noqa: E402

pytestmark = pytest.mark.lab
N, M = 7, 3
ACC = ('netintent_app_packets_total{app="shop",layer="host",port="grpc",service="api",target="h3",'
       'verdict="accept"}')
REFUSED = ('netintent_app_policy_drops_total{app="shop",layer="host",port="grpc",service="api",'
           'source_app="billing",target="h3"}')


def scrape(port: int) -> dict[str, float]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=3) as r:
            text = r.read().decode()
    except OSError:
        return {}
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
            if line.startswith("netintent_")}


def test_daemon_serves_per_app_counters(app_fabric_lab, tmp_path):
    lab = app_fabric_lab
    repo = IntentsRepo(tmp_path, sync={"telemetry_interval_s": 1})   # examples/intents
    port = free_port()
    store = str(tmp_path / "db.sqlite")
    daemon = subprocess.Popen(
        [sys.executable, "-m", "reconciler.cli", "serve", "--repo", str(repo.bare), "--store", store, "--state-dir",
         str(tmp_path / "state"), "--inventory", str(lab.inventory_path), "--layer", "switch", "--layer",
         "hypervisor", "--layer", "host", "--listen", f"127.0.0.1:{port}", "--interval", "3600",
         "--log-file", str(tmp_path / "serve.log")],
        stdout=subprocess.DEVNULL, stderr=open(tmp_path / "serve.err", "w"), start_new_session=True)
    api = listen(lab.netns("h3"), 8080)
    try:
        def converged() -> bool:
            if _health(port).get("revision") != repo.first:
                return False
            runs = json.loads(_cli("history", "--store", store, "--json", "--limit", "20") or "[]")
            return any(r["revision"] == repo.first and not r["dry_run"] and r["phase"] == "succeeded" for r in runs)
        wait_until(converged, 600, "the daemon converged the reference lab")
        # a round after convergence: every target up, shop's counters present
        before = wait_until(lambda: (s := scrape(port)).get(ACC) is not None and s, 60, "telemetry on /metrics")
        assert all(v == 1.0 for k, v in before.items() if k.startswith("netintent_telemetry_target_up")), before
        assert connects(lab.netns("h2"), "10.50.1.21", 8080, N, 3.0) == N
        assert connects(lab.netns("h6"), "10.50.1.21", 8080, M, 0.6) == 0
        after = wait_until(lambda: (s := scrape(port)).get(ACC, 0) >= before[ACC] + N and s, 60,
                           "the connections counted on /metrics")
        assert after[ACC] == before[ACC] + N
        wait_until(lambda: scrape(port).get(REFUSED, 0) >= before.get(REFUSED, 0) + M, 60, "the refused counted")
        assert scrape(port)[REFUSED] == before.get(REFUSED, 0) + M
    finally:
        api.kill()
        api.wait(timeout=5)
        stop(daemon)
