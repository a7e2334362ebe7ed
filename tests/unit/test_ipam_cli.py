"""IPAM through the command line: `apply --observed` records allocations in the store, a later
`validate`/`plan` of the same repo keeps them, `plan` and `plan --from/--to` preview what would
be allocated, `ipam show` lists owners and usage. Real git, real SQLite store, no device."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import yaml
from ipam_util import app_doc, ipam_files, write_tree

from reconciler.cli import main
from reconciler.intents.cli import main as validate_main
from reconciler.ipam import persist


def _repo(tmp: Path, n: int) -> Path:
    apps = {"shop.yaml": app_doc("shop", "10.70.0.0/24", {"web": [{"host": "n0", "name": f"w{k}"} for k in range(n)]})}
    return write_tree(ipam_files(apps), tmp / "intents")


def _show(capsys, db: Path) -> dict:
    capsys.readouterr()
    assert main(["ipam", "show", "--json", "--store", str(db)]) == 0
    return json.loads(capsys.readouterr().out)


def test_offline_apply_records_and_later_commands_keep_them(tmp_path: Path, capsys):
    repo, db, snap = _repo(tmp_path, 2), tmp_path / "state.db", tmp_path / "observed.json"
    assert main(["apply", str(repo), "--observed", str(snap), "--store", str(db)]) == 0
    shown = _show(capsys, db)
    owners = {(a["owner"], a["value"]) for a in shown["allocations"] if a["kind"] == "address"}
    assert owners == {("web/w0", "10.70.0.2"), ("web/w1", "10.70.0.3")}
    assert shown["generation"] == 1
    # w0 goes away, w5 comes: w1 keeps .3; w5 takes the lowest free address, .2
    doc = yaml.safe_load((repo / "apps/shop.yaml").read_text())
    doc["spec"]["services"]["web"]["instances"] = [{"host": "n0", "name": "w5"}, {"host": "n0", "name": "w1"}]
    (repo / "apps/shop.yaml").write_text(yaml.safe_dump(doc))
    capsys.readouterr()
    assert validate_main(["validate", str(repo), "--store", str(db)]) == 0
    # same two addresses on the same host: nothing changes on the devices, only the owner of .2
    assert main(["plan", str(repo), "--store", str(db), "--observed", str(snap), "--no-color"]) == 0
    out = capsys.readouterr().out
    assert "IPAM: 1 allocation(s) to make, 1 to release" in out
    assert "+ address 10.70.0.2       shop/web/w5" in out and "- address 10.70.0.2       shop/web/w0" in out
    assert _show(capsys, db)["generation"] == 1  # plan and validate never write
    assert main(["apply", str(repo), "--observed", str(snap), "--store", str(db)]) == 0
    shown = _show(capsys, db)
    assert {(a["owner"], a["value"]) for a in shown["allocations"] if a["kind"] == "address"} == \
        {("web/w5", "10.70.0.2"), ("web/w1", "10.70.0.3")}
    snapshot = snap.read_text()
    assert "10.70.0.3" in snapshot and "10.70.0.2" in snapshot  # compile got the allocated addresses


def test_pull_request_preview_shows_the_addresses_a_merge_would_allocate(tmp_path: Path, capsys):
    repo, db = _repo(tmp_path, 1), tmp_path / "state.db"
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    subprocess.run(git + ["add", "-A"], check=True)
    subprocess.run(git + ["commit", "-qm", "one"], check=True)
    doc = yaml.safe_load((repo / "apps/shop.yaml").read_text())
    doc["spec"]["services"]["api"] = {"instances": [{"host": "n0", "name": "a0"}]}
    (repo / "apps/shop.yaml").write_text(yaml.safe_dump(doc))
    subprocess.run(git + ["commit", "-qam", "two"], check=True)
    capsys.readouterr()
    assert main(["plan", str(repo), "--from", "HEAD~1", "--to", "HEAD", "--store", str(db), "--json"]) == 1
    preview = json.loads(capsys.readouterr().out)["ipam"]
    assert preview[0] == "IPAM: 1 allocation(s) to make, 0 to release"
    assert "+ address 10.70.0.3       shop/api/a0" in preview[1]
    assert not db.exists()  # a preview reads the store, never creates one


def test_ipam_show_text_lists_owners_and_pool_usage(tmp_path: Path, capsys):
    repo, db, snap = _repo(tmp_path, 3), tmp_path / "state.db", tmp_path / "observed.json"
    assert main(["apply", str(repo), "--observed", str(snap), "--store", str(db)]) == 0
    capsys.readouterr()
    assert main(["ipam", "show", "--store", str(db), "--repo", str(repo), "--app", "shop"]) == 0
    out = capsys.readouterr().out
    assert "address  10.70.0.4        shop/web/w2" in out and "vni      7000             shop (vni)" in out
    assert "shop 10.70.0.0/24" in out and "3 of 253" in out and "ipam.vni 7000..7099" in out
    assert persist.read(persist.engine_for(str(db)), "shop").apps["shop"].vni == 7000
