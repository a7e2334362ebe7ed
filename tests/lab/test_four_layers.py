"""Four layers on the reference lab: `reconciler apply` with the lab's own inventory converges
switches, hypervisors, hosts (with the workloads' xDS bootstrap and SPIFFE files) and sidecars
(through the lab's ADS server); drift in the host files and the sidecar layer is named per
application and repaired; a crashed workload is UNREACHABLE for its node only.

A private copy of labs/app-fabric.clab.yml (own name and management subnet), one per module.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from reconciler.lab import Lab, grpc_checks, workloads
from reconciler.lab.shared import skip_reason
from reconciler.lab.system import alive

pytestmark = pytest.mark.lab
REPO = Path(__file__).resolve().parents[2]
API = "xds:///api.shop:8080"


@pytest.fixture(scope="module")
def lab4(tmp_path_factory):
    reason = skip_reason()
    if reason:
        pytest.skip(reason)
    tmp = tmp_path_factory.mktemp("four-layers")
    lab = Lab.from_file(REPO / "labs/app-fabric.clab.yml", "ni-4l", tmp / "inventory", "172.31.92.0/24")
    lab.up()
    env = dict(os.environ, RECONCILER_CA_DIR=str(tmp / "ca"))
    try:
        yield lab, env
    finally:
        problems = lab.down()
        assert not problems, problems
        assert not (Path("/run/netintent/ads") / "172.31.92.1_18001.sock").exists()
        left = subprocess.run(["pgrep", "-f", "ni-4l"], capture_output=True, text=True).stdout
        assert not left.strip(), left


def cli(lab, env, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "reconciler.cli", *args, str(REPO / "examples/intents"),
                           "--inventory", str(lab.inventory_path)], capture_output=True, text=True,
                          timeout=300, env=env, cwd=REPO)


def test_apply_converges_all_four_layers_and_a_second_apply_writes_nothing(lab4):
    lab, env = lab4
    first = cli(lab, env, "apply")
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-1000:]
    for node in ("h1", "h2", "h3", "h5", "h6"):
        assert f"sidecar    {node}" in first.stdout
    # h1's warm-up calls failed while the fresh lab had no instance addresses yet, so grpc's
    # subchannels to api are in reconnect backoff (1 s, x1.6, +-20 %): a call made before their
    # next attempt fails fast. Calls then work with no further write (bounded wait for that).
    tally = _first_clean_calls(lab, "h1", API, n=200, within_s=10)
    assert not tally["errors"] and set(tally["servers"]) == {"api-v1-h3", "api-v2-h5"}, tally
    second = cli(lab, env, "apply")
    assert second.returncode == 0 and ", 0 write(s)" in second.stdout, second.stdout[-2000:]
    key = lab.layout.node_dir("h3") / "xds" / "certs" / "api.shop.key"
    assert key.stat().st_mode & 0o777 == 0o600
    boot = json.loads((lab.layout.node_dir("h3") / "xds" / "bootstrap.json").read_text())
    assert boot["xds_servers"][0]["server_uri"] == lab.ads_address and boot["node"]["id"] == "h3"
    assert "BEGIN" not in first.stdout + first.stderr + second.stdout   # no key material printed


def _first_clean_calls(lab, node: str, target: str, n: int, within_s: float) -> dict:
    """The first batch of `n` calls without an error, or the last batch after `within_s`."""
    deadline = time.monotonic() + within_s
    while True:
        tally = grpc_checks.calls(lab, node, target, n=n)
        if not tally["errors"] or time.monotonic() > deadline:
            return tally
        time.sleep(0.2)


def test_host_file_drift_is_named_per_app_and_repaired(lab4):
    lab, env = lab4
    certs = lab.layout.node_dir("h3") / "xds" / "certs"
    os.chmod(certs / "api.shop.key", 0o644)
    (certs / "ca.pem").write_text("not a certificate\n")
    diff = cli(lab, env, "diff")
    assert diff.returncode == 1, diff.stdout[-2000:]
    shop = diff.stdout[diff.stdout.index("application shop"):]
    assert "~ workload-cert api.shop" in shop and 'key_mode: "0644"' in shop, shop[:2000]
    assert "~ trust-bundle ca.pem" in diff.stdout
    assert cli(lab, env, "apply").returncode == 0
    assert (certs / "api.shop.key").stat().st_mode & 0o777 == 0o600
    assert cli(lab, env, "diff").returncode == 0


def test_certificate_near_expiry_is_reported_and_rotated(lab4):
    from reconciler.xds.ca import CA
    lab, env = lab4
    ca = CA.load(env["RECONCILER_CA_DIR"])
    cert, key = ca.issue("spiffe://corp.example/shop/api", days=2)
    certs = lab.layout.node_dir("h5") / "xds" / "certs"
    fd = os.open(certs / "api.shop.key", os.O_WRONLY | os.O_TRUNC)
    os.write(fd, key)
    os.close(fd)
    (certs / "api.shop.pem").write_bytes(cert)
    diff = cli(lab, env, "diff")
    assert diff.returncode == 1 and 'expiry: "renew: expires' in diff.stdout, diff.stdout[-2000:]
    assert cli(lab, env, "apply").returncode == 0
    assert cli(lab, env, "diff").returncode == 0


def test_sidecar_drift_an_old_version_is_named_per_app_and_repaired(lab4):
    lab, env = lab4
    grpc_checks.hand_edit_route(lab, "h1", "api.shop:8080", [0, 100])
    assert grpc_checks.calls(lab, "h1", API, n=50)["servers"] == {"api-v2-h5": 50}
    diff = cli(lab, env, "diff")
    assert diff.returncode == 1
    shop = diff.stdout[diff.stdout.index("application shop"):]
    assert "@@ sidecar h1 @@" in shop and "~ route api.shop:8080" in shop, shop[:2000]
    assert cli(lab, env, "apply").returncode == 0
    tally = grpc_checks.calls(lab, "h1", API, n=400)
    assert not tally["errors"] and 80 <= grpc_checks.share(tally, ["api-v1-h3"]) <= 97, tally


def test_a_crashed_workload_is_unreachable_for_its_node_only(lab4):
    lab, env = lab4
    ready = lab.layout.node_dir("h6") / "agent.ready"
    pid = json.loads(ready.read_text())["pid"]
    os.kill(pid, signal.SIGKILL)
    grpc_checks.hand_edit_route(lab, "h1", "api.shop:8080", [0, 100])   # something to apply elsewhere
    out = cli(lab, env, "apply")
    assert out.returncode == 1
    lines = [ln for ln in out.stdout.splitlines() if ln.strip().startswith("sidecar")]
    assert any("h6" in ln and "unreachable" in ln and "18000" in ln for ln in lines), "\n".join(lines)
    assert all("unreachable" not in ln for ln in lines if " h6 " not in ln), "\n".join(lines)
    assert "host       h6" in out.stdout and "unreachable" not in \
        [ln for ln in out.stdout.splitlines() if ln.strip().startswith("host       h6")][0]
    # started again, its node converges too
    n = lab.topo.nodes["h6"]
    workloads.start(lab.layout, n, workloads.specs(lab.topo)["h6"], lab.holder("h6"))
    assert cli(lab, env, "apply").returncode == 0


def test_an_ads_server_restart_keeps_workload_config(lab4):
    from reconciler.lab import adsrelay
    lab, env = lab4
    state = lab._state()
    os.kill(state["ads_relay"], signal.SIGTERM)
    for _ in range(200):   # bounded: the old server releases the ADS port
        if not alive(state["ads_relay"]):
            break
        time.sleep(0.05)
    proc = adsrelay.spawn(lab.layout, lab.ads_address)
    state["ads_relay"] = proc.pid
    lab._save(state)
    adsrelay.wait_ready(proc, lab.layout)
    tally = grpc_checks.calls(lab, "h1", API, n=100)   # the workloads still hold their config
    assert not tally["errors"] and set(tally["servers"]) == {"api-v1-h3", "api-v2-h5"}, tally
    out = cli(lab, env, "apply")   # the new server adopts what the workloads hold: nothing to push
    assert out.returncode == 0 and ", 0 write(s)" in out.stdout, out.stdout[-2000:]


def _restart_workload(lab, node: str) -> None:
    pid = json.loads((lab.layout.node_dir(node) / "agent.ready").read_text())["pid"]
    os.kill(pid, signal.SIGKILL)
    for _ in range(200):   # bounded: the old agent is gone before the new one binds its ports
        if not alive(pid):
            break
        time.sleep(0.05)
    workloads.start(lab.layout, lab.topo.nodes[node], workloads.specs(lab.topo)[node], lab.holder(node))


def test_an_ads_server_unreachable_from_a_host_is_reported_with_its_address_for_that_node_only(lab4):
    lab, env = lab4
    assert cli(lab, env, "apply").returncode == 0
    ads_ip, _, ads_port = lab.ads_address.rpartition(":")
    # not a `netintent_*` table: the host layer neither owns nor prunes it. New connections only:
    # the old workload's stream still closes cleanly (the ADS server must see it go); TCP resets
    # make the new workload's connect fail at once instead of hanging
    block = ("table inet test_block_ads {\n chain out {\n  type filter hook output priority 0;\n"
             f"  ip daddr {ads_ip} tcp dport {ads_port} ct state new reject with tcp reset\n }}\n}}\n")
    lab.exec("h6", ["nft", "-f", "-"], input=block)
    try:
        _restart_workload(lab, "h6")   # a fresh workload on h6: config only through the blocked ADS
        grpc_checks.hand_edit_route(lab, "h1", "api.shop:8080", [0, 100])   # something to apply elsewhere
        out = cli(lab, env, "apply")
        assert out.returncode == 1, out.stdout[-3000:]
        lines = [ln for ln in out.stdout.splitlines() if ln.strip().startswith("sidecar")]
        h6 = [ln for ln in lines if " h6 " in ln]
        assert h6 and "unreachable" in h6[0] and lab.ads_address in h6[0], "\n".join(lines)
        assert all("unreachable" not in ln for ln in lines if " h6 " not in ln), "\n".join(lines)
        others = [ln for ln in out.stdout.splitlines() if ln.strip().startswith(("host", "hypervisor", "switch"))]
        assert others and all("unreachable" not in ln and "failed" not in ln for ln in others), "\n".join(others)
        # a transaction is all or nothing (docs/transactions.md): the apps h6 does not serve converge
        # on their own while h6 still cannot reach the ADS server
        shop = cli(lab, env, "apply", "--app", "shop")
        assert shop.returncode == 0, shop.stdout[-2000:]
        tally = grpc_checks.calls(lab, "h1", API, n=200)
        assert not tally["errors"] and 80 <= grpc_checks.share(tally, ["api-v1-h3"]) <= 97, tally
    finally:
        lab.exec("h6", ["nft", "delete", "table", "inet", "test_block_ads"], check=False)
        _restart_workload(lab, "h6")   # reconnects now (also when an assert failed: the next tests need it)
    assert cli(lab, env, "apply").returncode == 0   # its node converges too


def _git(cwd: Path, *args: str) -> str:
    env = dict(os.environ, GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@example.org", GIT_COMMITTER_NAME="t",
               GIT_COMMITTER_EMAIL="t@example.org")
    return subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True, check=True,
                          timeout=60).stdout.strip()


def _wait_for(what: str, pred, timeout_s: float):
    """Poll `pred` (bounded in time) until it returns something truthy; that is the result."""
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        got = pred()
        if got:
            return got
        time.sleep(0.2)
    raise AssertionError(f"{what}: not within {timeout_s:g}s")


def _rows(db: Path, sql: str, *args) -> list:
    import sqlite3
    try:
        with sqlite3.connect(db, timeout=5) as c:
            return c.execute(sql, args).fetchall()
    except sqlite3.OperationalError:   # not created yet
        return []


def test_the_daemons_drift_scan_repairs_a_workload_holding_an_old_version(lab4, tmp_path):
    import socket
    lab, env = lab4
    assert cli(lab, env, "apply").returncode == 0
    work = tmp_path / "work"
    _git(tmp_path, "init", "-q", "--bare", "-b", "main", "origin.git")
    _git(tmp_path, "clone", "-q", "origin.git", "work")
    _git(work, "checkout", "-q", "-B", "main")
    subprocess.run(["cp", "-r", f"{REPO / 'examples/intents'}/.", str(work)], check=True)
    _git(work, "add", "-A")
    _git(work, "commit", "-qm", "intents")
    _git(work, "push", "-q", "origin", "HEAD:main")
    sha = _git(work, "rev-parse", "HEAD")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    db = tmp_path / "db.sqlite"
    daemon = subprocess.Popen(
        [sys.executable, "-m", "reconciler.cli", "serve", "--repo", str(tmp_path / "origin.git"), "--store", str(db),
         "--state-dir", str(tmp_path / "state"), "--listen", f"127.0.0.1:{port}", "--interval", "3600",
         "--drift-interval", "2", "--log-file", str(tmp_path / "serve.log"), "--inventory", str(lab.inventory_path)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, cwd=REPO)
    route = "sidecar/h1/route/api.shop:8080"
    try:
        _wait_for("the startup sync converged", lambda: _rows(
            db, "SELECT 1 FROM runs WHERE revision = ? AND dry_run = 0 AND phase = 'succeeded'", sha), 180)
        t_edit = time.time()
        grpc_checks.hand_edit_route(lab, "h1", "api.shop:8080", [0, 100])   # h1 now holds an old version
        healed = _wait_for("a self-heal run repaired h1's route", lambda: _rows(
            db, "SELECT r.run_id FROM runs r JOIN resource_results x ON x.run_id = r.run_id "
                "WHERE r.trigger = 'self-heal' AND r.dry_run = 0 AND r.phase = 'succeeded' AND r.started >= ? "
                "AND x.key = ? AND x.app = 'shop' AND x.outcome = 'applied'", t_edit, route), 120)
        assert healed
        drift = _rows(db, "SELECT d.app FROM drift_events d JOIN runs r ON r.run_id = d.run_id "
                          "WHERE r.trigger = 'drift-scan' AND d.key = ? AND d.ts >= ?", route, t_edit)
        assert drift and {a for (a,) in drift} == {"shop"}, drift   # named per application
        tally = grpc_checks.calls(lab, "h1", API, n=400)
        assert not tally["errors"] and 80 <= grpc_checks.share(tally, ["api-v1-h3"]) <= 97, tally
    finally:
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(30)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait(10)
