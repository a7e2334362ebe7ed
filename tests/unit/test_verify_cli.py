"""`reconciler verify` end to end over snapshot files (the snapshot driver, no device) and over a
git range (differential mode): exit codes, text and JSON."""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

from verify_cases import EXAMPLES, change, resources

from reconciler.cli import main
from reconciler.model import Layer


def _snapshot(tmp_path: Path, res, **extra) -> str:
    p = tmp_path / "observed.json"
    p.write_text(json.dumps({"resources": [r.to_json() for r in res], **extra}))
    return str(p)


def test_clean_snapshot_exits_0(tmp_path, capsys):
    assert main(["verify", str(EXAMPLES), "--observed", _snapshot(tmp_path, resources())]) == 0
    out = capsys.readouterr().out
    assert "0 violation(s), 0 leak(s), 0 unknown: verified" in out


def test_leak_exits_1_and_names_the_hop(tmp_path, capsys):
    rule = {"match": {"daddr_set": "svc_api", "protocol": "tcp", "dport": 8080}, "verdict": "accept"}
    res = change(resources(), "host/h3/nft-table/netintent_shop", lambda s: s["chains"]["input"]["rules"].insert(2, rule))
    assert main(["verify", str(EXAMPLES), "--observed", _snapshot(tmp_path, res), "--app", "shop"]) == 1
    out = capsys.readouterr().out
    assert "LEAK [l4] billing/ledger@10.50.2.21 -> shop/api@10.50.1.21:8080" in out
    assert "h3       nftables inet netintent_shop input #3: ip daddr @svc_api tcp dport 8080 accept: permit" in out


def test_json_has_findings_and_witness_hops(tmp_path, capsys):
    res = change(resources(), "switch/leaf1/vxlan/vxlan5001", lambda s: s.update(flood=[]))
    assert main(["verify", str(EXAMPLES), "--observed", _snapshot(tmp_path, res), "--json", "--witness"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["summary"]["violations"] == 1 and data["summary"]["exit_code"] == 1
    f = data["findings"][0]
    assert f["kind"] == "violation" and f["hops"][0]["rule"] == "vxlan5001" and f["hops"][0]["device"] == "leaf1"
    assert all("hops" in p for p in data["pairs"])


def test_unreachable_target_exits_2_with_the_reason(tmp_path, capsys):
    snap = _snapshot(tmp_path, resources(), unreachable=["leaf2"])
    assert main(["verify", str(EXAMPLES), "--observed", snap]) == 2
    captured = capsys.readouterr()
    assert "switch leaf2: not observed: unreachable" in captured.err
    assert "UNKNOWN shop/web@10.50.1.11 -> shop/api@10.50.1.22:8080" in captured.out


def test_sidecar_layer_may_be_left_out_but_not_the_others(tmp_path, capsys):
    res = [r for r in resources() if r.key.layer is not Layer.SIDECAR]
    snap = _snapshot(tmp_path, res)
    assert main(["verify", str(EXAMPLES), "--observed", snap, "--layers", "switch,hypervisor,host"]) == 0
    assert main(["verify", str(EXAMPLES), "--observed", snap, "--layers", "switch,host"]) == 2
    assert "needs the hypervisor layer" in capsys.readouterr().err
    assert main(["verify", str(EXAMPLES), "--observed", snap, "--app", "nope"]) == 2


def test_invalid_repo_exits_2(tmp_path, capsys):
    repo = tmp_path / "repo"
    shutil.copytree(EXAMPLES, repo)
    (repo / "apps" / "shop.yaml").write_text("apiVersion: netintent/v1\nkind: Application\nmetadata: {}\n")
    assert main(["verify", str(repo), "--observed", _snapshot(tmp_path, resources())]) == 2


def _git(repo: Path, *argv: str) -> None:
    subprocess.run(["git", "-C", str(repo), *argv], check=True, capture_output=True,
                   env={"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@e", "GIT_COMMITTER_NAME": "t",
                        "GIT_COMMITTER_EMAIL": "t@e", "PATH": "/usr/bin:/bin"})


def test_differential_range_reports_added_reachability(tmp_path, capsys):
    repo = tmp_path / "repo"
    shutil.copytree(EXAMPLES, repo)
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "base")
    app = repo / "apps" / "analytics.yaml"
    app.write_text(app.read_text().replace("      - {from: dash, to: collector, ports: [ingest]}",
                                           "      - {from: dash, to: collector, ports: [ingest]}\n"
                                           "      - {from: dash, to: shop/api, ports: [grpc]}"))
    _git(repo, "commit", "-qam", "dash calls shop/api")
    assert main(["verify", str(repo), "--from", "HEAD~1", "--to", "HEAD"]) == 1
    out = capsys.readouterr().out
    assert "shop: +2 -0" in out
    assert "+ analytics/dash@10.50.3.12 -> shop/api@10.50.1.21:8080 8080/tcp" in out
    # the examples' own two defects (verify_cases.defects) are still there after the change
    assert "after: 0 violation(s), 0 leak(s), 2 unknown" in out
    assert main(["verify", str(repo), "--from", "HEAD", "--to", "HEAD", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["apps"] == {}
