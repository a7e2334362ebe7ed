"""IPAM in the daemon: a real git repo, the daemon with its SQLite store and the snapshot driver.
The daemon records the allocations of each revision it loads; a later commit keeps them; the
CLI (`plan`, `validate`) on a checkout of the same commit sees the very same addresses."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
from svc_helpers import IntentsRepo, daemon_config, empty_snapshot, start_daemon, wait_until

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))
from ipam_util import app_doc, ipam_files, write_tree  # noqa: E402

from reconciler.cli import main  # noqa: E402
from reconciler.drivers.snapshot import read_snapshot  # noqa: E402
from reconciler.intents.cli import main as validate_main  # noqa: E402
from reconciler.ipam import persist  # noqa: E402


def _shop(names: list[str]) -> dict:
    return {"shop.yaml": app_doc("shop", "10.70.0.0/24", {"web": [{"host": "n0", "name": n} for n in names]})}


@pytest.fixture
def daemon(tmp_path):
    repo = IntentsRepo(tmp_path, fill=lambda work: write_tree(ipam_files(_shop(["w0", "w1"])), work))
    snap = empty_snapshot(tmp_path / "snap.json")
    d = start_daemon(daemon_config(tmp_path, repo, snap))
    try:
        yield d, repo, snap, tmp_path / "db.sqlite"
    finally:
        d.stop(wait_s=10)
        d.store.close()


def _addresses(db: Path) -> dict[str, str]:
    return dict(persist.read(persist.engine_for(str(db))).apps["shop"].addresses)


def test_daemon_records_and_keeps_allocations_and_the_cli_sees_them(daemon, capsys):
    d, repo, snap, db = daemon
    wait_until(lambda: d.current is not None and d.current.revision == repo.first and not d._sync_running,
               what="initial sync")
    assert _addresses(db) == {"web/w0": "10.70.0.2", "web/w1": "10.70.0.3"}
    assert "10.70.0.3" in str(read_snapshot(snap)["resources"])
    # w0 removed, w2 added: w1 keeps .3, w2 takes the freed .2
    write_tree(ipam_files(_shop(["w2", "w1"])), repo.work)
    sha = repo.commit("w0 out, w2 in")
    repo.push()
    d.request_sync("manual", manual=True)
    wait_until(lambda: d.current is not None and d.current.revision == sha and not d._sync_running, what="sync")
    assert _addresses(db) == {"web/w1": "10.70.0.3", "web/w2": "10.70.0.2"}
    capsys.readouterr()
    assert validate_main(["validate", str(repo.work), "--store", str(db)]) == 0
    assert main(["plan", str(repo.work), "--observed", str(snap), "--store", str(db), "--no-color"]) == 0
    assert "IPAM:" not in capsys.readouterr().out, "the CLI allocates nothing the daemon did not"
