"""IPAM under concurrency: a `reconciler apply` process and a daemon-load process (and a
second of each) race on one real store, SQLite and PostgreSQL, never handing out one value twice.

Each process loads random repo variants (shared instances s0..s3 plus its own), recording
allocations; the first loads of all processes are computed from the same generation (a
barrier after the read), so their commits really collide. Checked from the processes' logs:
every commit was made on a distinct generation (compare-and-swap: no lost update), each
commit equals the pure allocator applied to the commit before it (linearizable), no commit
holds one value twice, the shared instances never move, and the store ends as the last commit.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))
from ipam_util import app_doc, ipam_files, write_tree  # noqa: E402

from reconciler.intents.validate import load_repo  # noqa: E402
from reconciler.ipam import persist  # noqa: E402
from reconciler.ipam.model import Allocations, Kind, Row  # noqa: E402

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
VARIANTS = 6
ITERATIONS = 25


def _variant(worker: str, k: int) -> dict:
    own = [{"host": "n0", "name": f"{worker}{j}"} for j in range(k % 4 + 1)]
    shared = [{"host": "n0", "name": f"s{j}"} for j in range(4)]
    apps = {"shop.yaml": app_doc("shop", "10.90.0.0/24", {"web": shared + own})}
    if k % 2:
        apps[f"{worker}.yaml"] = app_doc(f"app-{worker}", f"10.90.{1 + k}.0/24", {"x": [{"host": f"n{1 + k}"}]})
    return apps


def _cli_variants(tmp: Path, worker: str) -> Path:
    d = tmp / f"cli-{worker}"
    for k in range(VARIANTS):
        write_tree(ipam_files(_variant(worker, k)), d / f"v{k}")
    return d


def _git_variants(tmp: Path, worker: str) -> Path:
    d = tmp / f"git-{worker}"
    d.mkdir()
    git = ["git", "-C", str(d), "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run(["git", "init", "-q", str(d)], check=True)
    for k in range(VARIANTS):
        for p in (d / "apps").glob("*.yaml") if (d / "apps").exists() else ():
            p.unlink()
        write_tree(ipam_files(_variant(worker, k)), d)
        subprocess.run(git + ["add", "-A"], check=True)
        subprocess.run(git + ["commit", "-qm", f"v{k}", "--allow-empty"], check=True)
        subprocess.run(git + ["tag", f"v{k}"], check=True)
    return d


def _race(tmp: Path, url: str) -> list[dict]:
    from reconciler.service.store import Store
    Store(url).close()  # the daemons' store exists before they start (two creating one at once is another race)
    barrier = tmp / "barrier"
    barrier.mkdir()
    plan = [("cli", "a", _cli_variants(tmp, "a")), ("daemon", "b", _git_variants(tmp, "b")),
            ("cli", "c", _cli_variants(tmp, "c")), ("daemon", "d", _git_variants(tmp, "d"))]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "IPAM_VARIANTS": str(VARIANTS)}
    procs = [subprocess.Popen([sys.executable, str(HERE / "ipam_race_worker.py"), mode, url, str(src),
                               str(ITERATIONS), str(i), str(barrier), str(len(plan))],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp)
             for i, (mode, _, src) in enumerate(plan)]
    logs = []
    for p, (mode, worker, src) in zip(procs, plan):
        out, err = p.communicate(timeout=600)
        assert p.returncode == 0, err[-3000:]
        for line in out.splitlines():
            rec = json.loads(line)
            rec["dir"] = str(src / rec["variant"]) if mode == "cli" else None
            rec["worker"], rec["mode"], rec["src"] = worker, mode, str(src)
            logs.append(rec)
    return logs


def _repo_dir(rec: dict, tmp: Path) -> Path:
    if rec["dir"]:
        return Path(rec["dir"])
    out = tmp / "replay" / rec["worker"] / rec["variant"]
    if not out.exists():
        write_tree(ipam_files(_variant(rec["worker"], int(rec["variant"][1:]))), out)
    return out


def _check(logs: list[dict], url: str, tmp: Path) -> None:
    commits = sorted((r for r in logs if r["changed"]), key=lambda r: r["base"])
    assert [c["base"] for c in commits] == list(range(len(commits))), "two commits on one generation: a lost update"
    assert sum(r["attempts"] for r in logs) > len(logs), "the race never made anyone retry"
    state: list = []
    shared: dict[str, str] = {}
    for c in commits:
        previous = Allocations.from_rows((Row(a, Kind(k), o, v) for a, k, o, v in state), c["base"])
        replay = load_repo(_repo_dir(c, tmp), previous=previous).allocations.allocations
        assert [[r.app, r.kind.value, r.owner, r.value] for r in replay.rows()] == c["rows"], "not linearizable"
        values = [(k, v) for _, k, _, v in c["rows"]]
        assert len(values) == len(set(values)), f"one value handed out twice: {c['rows']}"
        for a, k, o, v in c["rows"]:
            if a == "shop" and o.startswith("web/s"):
                assert shared.setdefault(o, v) == v, f"{o} moved"
        state = c["rows"]
    final = persist.read(persist.engine_for(url))
    assert [[r.app, r.kind.value, r.owner, r.value] for r in final.rows()] == state
    assert final.generation == len(commits)


def test_race_on_sqlite(tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'state.db'}"
    _check(_race(tmp_path, url), url, tmp_path)


def test_race_on_postgresql(tmp_path: Path):
    sys.path.insert(0, str(HERE))
    from pg_helpers import PgServer, available
    if available():
        pytest.skip(available())
    pg = PgServer()
    try:
        _check(_race(tmp_path, pg.url), pg.url, tmp_path)
    finally:
        pg.destroy()
