"""CLI plan/diff/apply offline: exit codes, determinism, commit ranges, snapshot loop."""
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from reconciler.cli import main

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "intents"


@pytest.fixture()
def repo(tmp_path):
    dst = tmp_path / "intents"
    shutil.copytree(EXAMPLES, dst)
    return dst


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_plan_against_nothing_shows_changes_grouped_by_app(repo, capsys):
    code, out, _ = run(capsys, "plan", repo, "--no-color")
    assert code == 1
    heads = [l for l in out.splitlines() if l.startswith("application ")]
    assert heads == sorted(heads) and any("application shop" in h for h in heads)
    assert "@@ host h3 @@" in out and "+ nft-set netintent_shop/allow_api_grpc" in out
    assert out.rstrip().splitlines()[-1].startswith("Plan: ")


def test_plan_json_is_deterministic(repo, capsys):
    _, a, _ = run(capsys, "plan", repo, "--json")
    _, b, _ = run(capsys, "plan", repo, "--json")
    assert a == b
    data = json.loads(a)
    assert data["summary"]["create"] == len(data["changes"]) > 50


def test_plan_against_matching_snapshot_is_clean_then_drift_shows(repo, tmp_path, capsys):
    _, out, _ = run(capsys, "plan", repo, "--json")
    snap = tmp_path / "observed.json"
    # apply offline into a snapshot, then the plan against it is empty
    code, _, _ = run(capsys, "apply", repo, "--observed", snap)
    assert code == 0
    code, out, _ = run(capsys, "plan", repo, "--observed", snap)
    assert code == 0 and out.startswith("No changes")
    data = json.loads(snap.read_text())
    for r in data["resources"]:
        if r["key"] == "host/h3/nft-set/netintent_shop/allow_api_grpc":
            r["spec"]["elements"] = ["10.50.1.11", "10.66.6.6"]
    snap.write_text(json.dumps(data))
    code, out, _ = run(capsys, "plan", repo, "--observed", snap, "--no-color")
    assert code == 1
    assert "~ nft-set netintent_shop/allow_api_grpc" in out
    assert "- elements: 10.66.6.6" in out and "+ elements: 10.50.2.11" in out


def test_invalid_repo_exit_2_with_file_and_line(repo, capsys):
    (repo / "apps" / "shop.yaml").write_text("apiVersion: netintent/v1\nkind: Application\nmetadata: {name: shop}\nspec: {segment: 12}\n")
    code, out, err = run(capsys, "plan", repo)
    assert code == 2
    assert "apps/shop.yaml:4" in err and "Traceback" not in err
    assert "nothing was planned" in err


def test_usage_errors_exit_2(tmp_path, capsys):
    assert run(capsys, "plan", tmp_path / "nope")[0] == 2
    assert run(capsys, "plan")[0] == 2
    assert run(capsys, "plan", tmp_path, "--observed", tmp_path / "missing.json")[0] == 2


def _git(cwd, *args):
    subprocess.run(["git", "-c", "user.email=t@example.invalid", "-c", "user.name=t", *args], cwd=cwd, check=True,
                   capture_output=True)


def test_plan_commit_range_shows_effect_per_app(repo, capsys):
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "one")
    shop = repo / "apps" / "shop.yaml"
    shop.write_text(shop.read_text().replace("port: 8080", "port: 8443"))
    (repo / "apps" / "analytics.yaml").unlink()
    _git(repo, "commit", "-qam", "two")
    code, out, _ = run(capsys, "plan", repo, "--from", "HEAD~1", "--to", "HEAD", "--json")
    assert code == 1
    changes = json.loads(out)["changes"]
    apps = {c["app"] for c in changes}
    assert apps == {"shop", "analytics"}
    assert all(c["action"] == "delete" for c in changes if c["app"] == "analytics")
    upd = [c for c in changes if c["key"] == "host/h3/nft-table/netintent_shop"]
    assert upd and upd[0]["action"] == "update"
    assert run(capsys, "plan", repo, "--from", "HEAD", "--to", "HEAD")[0] == 0
    code, _, err = run(capsys, "plan", repo, "--from", "nope", "--to", "HEAD")
    assert code == 2 and "nope" in err


def test_apply_offline_loop_unreachable_and_rejected_targets(repo, tmp_path, capsys):
    snap = tmp_path / "observed.json"
    snap.write_text(json.dumps({"resources": [], "unreachable": ["h5"],
                                "reject": ["hypervisor/hv2/ovs-port/eth3"]}))
    code, out, _ = run(capsys, "apply", repo, "--observed", snap, "--attempts", "2", "--no-color")
    assert code == 1
    assert "h5" in out and "unreachable" in out
    assert "hv2" in out and "failed" in out
    keys = {r["key"] for r in json.loads(snap.read_text())["resources"]}
    assert "host/h3/nft-table/netintent_shop" in keys  # the others converged
    assert not any(k.startswith("host/h5/") for k in keys)
    # heal the lab: the next run converges and a run after that writes nothing
    data = json.loads(snap.read_text())
    data["unreachable"], data["reject"] = [], []
    snap.write_text(json.dumps(data))
    assert run(capsys, "apply", repo, "--observed", snap)[0] == 0
    code, out, _ = run(capsys, "apply", repo, "--observed", snap, "--json")
    assert code == 0 and json.loads(out)["writes"] == 0
    assert run(capsys, "diff", repo, "--observed", snap)[0] == 0


def test_prune_with_no_applications_is_refused(repo, tmp_path, capsys):
    import shutil as _sh
    _sh.rmtree(repo / "apps")
    snap = tmp_path / "observed.json"
    code, _, err = run(capsys, "apply", repo, "--observed", snap, "--prune")
    assert code == 2 and "--allow-empty" in err
    assert not snap.exists()
