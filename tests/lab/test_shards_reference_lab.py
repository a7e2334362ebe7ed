"""Three `reconciler serve --shards` daemons on one PostgreSQL and the reference lab
(labs/app-fabric.clab.yml: 2 leaves with FRR and VXLAN, 3 hypervisors with OVS, 6 hosts), with
the switch, hypervisor and host drivers (host workload files included: xDS bootstrap, trust
bundle, SPIFFE certificates). They split the apps and converge the lab (TCP flows as the
intents say); `kill -9` of the owner of shop; a survivor takes shop over, repairs a manual
drift on it, every app is scanned again by a survivor and stays Synced, and no app was written
by two daemons at once (the store's write-batch records and run records). The members share
one workload CA (RECONCILER_CA_DIR): a deployment's members must. Prints the takeover time and
how often a transaction met a target busy with another member's. Marked `lab` (root, OVS, FRR,
sshd, PostgreSQL)."""
from __future__ import annotations

import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_service_lab import IntentsRepo, _health, free_port, stop, wait_until  # puts tests/integration on the path

from reconciler.lab.probe import Flow, probe_tcp
from reconciler.service.shards import ShardSettings, owner_of, owners_of_slots
from reconciler.service.store import Store
from reconciler.status import Sync
from reconciler.xds.ca import CA

pytestmark = pytest.mark.lab
REPO = Path(__file__).resolve().parents[2]
REFERENCE = REPO / "labs" / "app-fabric.clab.yml"
LEASE = 5.0
DRIFT_S = 10
APPS = ("analytics", "billing", "shop")
WEB_TO_API = Flow("h1", "10.50.1.11", "h3", "10.50.1.21", 8080, "shop/web -> shop/api v1")
DASH_TO_API = Flow("h4", "10.50.3.12", "h3", "10.50.1.21", 8080, "analytics/dash -> shop/api (no allow)")
BUSY = "is held by unfinished transaction"


def connects(lab, flow: Flow) -> bool:
    return probe_tcp(lab, [flow])[0].connected


def _serve(tmp: Path, name: str, bare: Path, url: str, inv: str, port: int) -> subprocess.Popen:
    env = {**os.environ, "RECONCILER_CA_DIR": str(tmp / "ca")}   # one CA for the deployment's members
    return subprocess.Popen(
        [sys.executable, "-m", "reconciler.cli", "serve", "--repo", str(bare), "--store", url, "--state-dir",
         str(tmp / name), "--inventory", inv, "--layer", "switch", "--layer", "hypervisor", "--layer", "host",
         "--listen", f"127.0.0.1:{port}", "--interval", "3600", "--drift-interval", str(DRIFT_S),
         "--instance", f"member-{name}", "--log-file", str(tmp / f"{name}.log"), "--shards", "--lease", str(LEASE)],
        stdout=subprocess.DEVNULL, stderr=open(tmp / f"{name}.err", "w"), start_new_session=True, env=env)


def _states(store: Store) -> dict[str, tuple[Sync, float]]:
    try:
        return {a.app: (a.sync, a.last_scan or 0.0) for a in store.apps()}
    except Exception:   # the store answers again at the next poll
        return {}


def _synced(store: Store, scanned_after: float = 0.0) -> bool:
    st = _states(store)
    return all(a in st and st[a][0] is Sync.SYNCED and st[a][1] > scanned_after for a in APPS)


def _why(tmp: Path, store: Store, tags: list[str]) -> str:
    """What the daemons said when a wait runs out: app states and their last warnings."""
    lines = [f"apps: {[(a.app, a.sync.value, a.message[:200]) for a in store.apps()]}"]
    for n in tags:
        log = tmp / f"{n}.log"
        bad = [ln for ln in (log.read_text(errors="replace").splitlines() if log.exists() else [])
               if '"WARNING"' in ln or '"ERROR"' in ln]
        lines += [f"{n}: {ln[:400]}" for ln in bad[-8:]]
    return "\n".join(lines)


def _wait(pred, timeout: float, what: str, tmp: Path, store: Store, tags: list[str], interval: float = 0.5):
    try:
        return wait_until(pred, timeout, what, interval=interval)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{_why(tmp, store, tags)}") from None


def _batches(url: str) -> list[tuple[str, set[str], float, float]]:
    import psycopg
    with psycopg.connect(url.replace("+psycopg", "")) as c:
        rows = c.execute("SELECT member, apps, started, finished FROM shard_batches WHERE outcome = 'written'").fetchall()
    return [(m, set(json.loads(a)), float(s), float(f)) for m, a, s, f in rows]


def _runs(store: Store, victim: str, killed: float) -> list[tuple[str, set[str], float, float]]:
    """Runs that wrote to devices as (owner, apps, started, end); the killed member's runs end at
    the kill at the latest. (Runs that wrote nothing, e.g. a refused rollback of a dead member's
    transaction, applied nothing.)"""
    out = []
    for r in store.runs(limit=10_000):
        if r.dry_run or not r.owner or not r.writes:
            continue
        end = r.finished if r.finished is not None else float("inf")
        out.append((r.owner, set(json.loads(r.apps or "[]")), r.started, min(end, killed) if r.owner == victim else end))
    return out


def _no_overlap(records: list[tuple[str, set[str], float, float]], what: str) -> None:
    for (m1, a1, s1, f1), (m2, a2, s2, f2) in itertools.combinations(records, 2):
        if m1 != m2 and a1 & a2:
            assert f1 <= s2 or f2 <= s1, f"{what}: {m1} and {m2} wrote {sorted(a1 & a2)} at once"


def _busy(tmp: Path, tags: list[str]) -> int:
    return sum((tmp / f"{n}.log").read_text(errors="replace").count(BUSY)
               for n in tags if (tmp / f"{n}.log").exists())


def test_three_shard_daemons_on_the_reference_lab_survive_a_kill_9(lab_factory, tmp_path):
    from pg_helpers import PgServer, available
    why = available()
    if why:
        pytest.skip(why)
    lab = lab_factory(REFERENCE, name="ni-shard-ref", mgmt_subnet="172.31.71.0/24",
                      features=("base", "ssh", "ovs", "frr"))
    inv = str(lab.inventory_path)
    repo = IntentsRepo(tmp_path, sync={"self_heal": True, "drift_interval_s": DRIFT_S})   # examples/intents
    pg = PgServer()
    procs: dict[str, subprocess.Popen] = {}
    tags = ["a", "b", "c"]
    store = None
    try:
        store = Store(pg.url)
        CA.load_or_create(tmp_path / "ca", "corp.example")
        ports = {n: free_port() for n in tags}
        t0 = time.monotonic()
        procs.update({n: _serve(tmp_path, n, repo.bare, pg.url, inv, ports[n]) for n in tags})
        for n in tags:
            _wait(lambda n=n: _health(ports[n]).get("shard", {}).get("lease"), 60, f"{n} joins", tmp_path, store, tags)
        member = {n: f"member-{n}" for n in tags}
        _wait(lambda: _synced(store), 420, "the three daemons converge the lab", tmp_path, store, tags, interval=2.0)
        # the apps' owners may finish before the fabric's (leaf BGP, uplink flows): the flow works soon after
        _wait(lambda: connects(lab, WEB_TO_API), 120, "shop/web reaches shop/api", tmp_path, store, tags, interval=2.0)
        print(f"\nconverged by three members in {time.monotonic() - t0:.0f}s")
        assert not connects(lab, DASH_TO_API)

        owners = owners_of_slots(tuple(sorted(member.values())), ShardSettings())
        victim = next(n for n in tags if member[n] == owner_of("shop", owners))
        survivors = [n for n in tags if n != victim]
        killed, k0 = time.time(), time.monotonic()
        os.kill(procs[victim].pid, signal.SIGKILL)
        procs[victim].wait(10)
        want = sorted(member[m] for m in survivors)
        for n in survivors:
            _wait(lambda n=n: _health(ports[n]).get("shard", {}).get("members") == want,
                  2 * LEASE + 5, f"{n} drops {victim}", tmp_path, store, tags, interval=0.1)
        print(f"member-{victim} (owner of shop) dropped by both survivors {time.monotonic() - k0:.1f}s after kill -9")
        lab.exec("h3", ["nft", "flush", "set", "inet", "netintent_shop", "allow_api_grpc"])   # drift on shop
        assert not connects(lab, WEB_TO_API)
        _wait(lambda: connects(lab, WEB_TO_API), 6 * DRIFT_S + 60, "the new owner repairs shop", tmp_path, store,
              tags, interval=2.0)
        print(f"shop's drift repaired {time.monotonic() - k0:.0f}s after the kill")
        _wait(lambda: _synced(store, scanned_after=killed), 6 * DRIFT_S + 60, "every app scanned and Synced after "
              "the kill", tmp_path, store, tags, interval=2.0)
        assert not connects(lab, DASH_TO_API)

        new_owner = owner_of("shop", owners_of_slots(tuple(want), ShardSettings()))
        batches = _batches(pg.url)
        assert any(m == new_owner and "shop" in a and s > killed for m, a, s, _ in batches)
        _no_overlap(batches, "write batches")
        _no_overlap(_runs(store, member[victim], killed), "runs")
        print(f"{len(batches)} write batches; transactions that met a target busy with another member's: "
              f"{_busy(tmp_path, tags)}")
    finally:
        for p in procs.values():
            stop(p, 60)
        keep = Path("/tmp/ni-shard-ref-logs")   # the daemons' logs outlive pytest's tmp rotation
        shutil.rmtree(keep, ignore_errors=True)
        keep.mkdir()
        for n in tags:
            if (tmp_path / f"{n}.log").exists():
                shutil.copy(tmp_path / f"{n}.log", keep / f"{n}.log")
        if store is not None:
            store.close()
        pg.destroy()
