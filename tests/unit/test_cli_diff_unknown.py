"""`reconciler diff` when a target could not be observed (offline, snapshot drivers): it never
says "No changes", it names the targets whose drift is unknown, and it exits 2."""
import json
import shutil
from pathlib import Path

import pytest

from reconciler.cli import main

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "intents"
NO_CHANGES = "No changes: observed state matches the intents."


@pytest.fixture()
def converged(tmp_path):
    """The example repo and a snapshot it was applied to (offline): a diff against it is clean."""
    repo = tmp_path / "intents"
    shutil.copytree(EXAMPLES, repo)
    snap = tmp_path / "observed.json"
    assert main(["apply", str(repo), "--observed", str(snap)]) == 0
    return repo, snap


def _unreachable(snap: Path, *names: str) -> None:
    data = json.loads(snap.read_text())
    data["unreachable"] = list(names)
    snap.write_text(json.dumps(data))


def test_all_observed_and_in_sync_says_no_changes(converged, capsys):
    repo, snap = converged
    assert main(["diff", str(repo), "--observed", str(snap), "--no-color"]) == 0
    assert capsys.readouterr().out == NO_CHANGES + "\n"


def test_unobserved_target_is_named_never_no_changes_exit_2(converged, capsys):
    repo, snap = converged
    _unreachable(snap, "h3", "hv2")
    code = main(["diff", str(repo), "--observed", str(snap), "--no-color"])
    out, err = capsys.readouterr()
    assert code == 2
    assert "No changes" not in out
    first = out.splitlines()[0]
    assert first.startswith("Drift unknown: ") and "hypervisor/hv2" in first and "host/h3" in first, out
    assert "observed target(s)" in out
    assert "h3: unreachable" in err and "hv2: unreachable" in err


def test_drift_elsewhere_is_shown_under_the_unknown_header(converged, capsys):
    repo, snap = converged
    data = json.loads(snap.read_text())
    data["resources"] = [r for r in data["resources"] if not r["key"].startswith("host/h1/")]
    data["unreachable"] = ["hv3"]
    snap.write_text(json.dumps(data))
    code = main(["diff", str(repo), "--observed", str(snap), "--no-color"])
    out = capsys.readouterr().out
    assert code == 2
    assert out.startswith("Drift unknown: ") and "hypervisor/hv3" in out.splitlines()[0]
    assert "Plan: " in out and "h1" in out


def test_apply_with_an_unreachable_target_never_says_no_changes(converged, capsys):
    repo, snap = converged
    _unreachable(snap, "h5")
    code = main(["apply", str(repo), "--observed", str(snap), "--no-color", "--attempts", "1"])
    out = capsys.readouterr().out
    assert code == 1
    assert "No changes" not in out and "host/h5" in out.splitlines()[0]
