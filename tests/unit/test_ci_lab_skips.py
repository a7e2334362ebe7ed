"""Honest CI (tests/conftest.py): with CI=true a lab test that cannot run FAILS; outside CI it skips.

pytest runs in a subprocess, (1) on a throwaway tree that uses tests/conftest.py (lab tests by
marker, by folder, skipped in the body, in a fixture, a whole module; a non-lab skip; an xfail),
(2) on real lab tests with the lab's tools taken off PATH, so reconciler.lab.shared.skip_reason
reports them missing (no namespace is made: the tests end at the skip).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
ROOT = TESTS.parent

PLAIN = '''
import pytest

@pytest.fixture
def fake_lab():
    pytest.skip("fake lab: ovs-vswitchd missing")

@pytest.mark.lab
def test_marked_lab_skips_in_body():
    pytest.skip("fake feature missing: frr")

@pytest.mark.lab
def test_marked_lab_skips_in_fixture(fake_lab):
    pass

@pytest.mark.lab
def test_marked_lab_passes():
    pass

@pytest.mark.lab
@pytest.mark.xfail(reason="known")
def test_marked_lab_xfails():
    assert False

def test_not_lab_skips():
    pytest.skip("not a lab test")
'''
IN_LAB_DIR = '''
import pytest

def test_in_lab_dir_skips():
    pytest.skip("fake feature missing: nft")
'''
MODULE_SKIP = '''
import pytest
pytest.skip("fake: the whole module needs sshd", allow_module_level=True)

def test_never_collected():
    pass
'''


def _pytest(args: list[str], cwd: Path, ci: bool, summary: Path, **env_over: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "PYTEST_ADDOPTS")}
    env.update({"NETINTENT_TEST_SUMMARY": str(summary), **env_over})
    if ci:
        env["CI"] = "true"
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rA", *args], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=300)


def _tree(tmp: Path) -> Path:
    (tmp / "lab").mkdir(parents=True)
    shutil.copy(TESTS / "conftest.py", tmp / "conftest.py")
    (tmp / "pytest.ini").write_text("[pytest]\nmarkers =\n    lab: needs the lab\n")
    (tmp / "test_plain.py").write_text(PLAIN)
    (tmp / "lab" / "test_in_lab_dir.py").write_text(IN_LAB_DIR)
    (tmp / "lab" / "test_module_skip.py").write_text(MODULE_SKIP)
    return tmp


def test_outside_ci_a_lab_test_that_cannot_run_skips(tmp_path):
    tree = _tree(tmp_path / "t")
    cp = _pytest(["."], tree, ci=False, summary=tmp_path / "s.json")
    assert cp.returncode == 0, cp.stdout + cp.stderr
    doc = json.loads((tmp_path / "s.json").read_text())
    assert doc["lab"] == {"passed": 1, "failed": 0, "skipped": 3, "xfailed": 1}
    assert doc["lab_modules_skipped"] == []
    assert "lab tests: 1 passed, 3 skipped, 1 xfailed" in cp.stdout


def test_with_ci_true_a_lab_test_that_cannot_run_fails(tmp_path):
    tree = _tree(tmp_path / "t")
    cp = _pytest(["."], tree, ci=True, summary=tmp_path / "s.json")
    out = cp.stdout
    assert cp.returncode == 1, out + cp.stderr
    doc = json.loads((tmp_path / "s.json").read_text())
    assert doc["lab"] == {"passed": 1, "failed": 3, "skipped": 0, "xfailed": 1}
    assert len(doc["lab_modules_skipped"]) == 1 and "the whole module needs sshd" in doc["lab_modules_skipped"][0]
    # each failure says why the test could not run
    for reason in ("fake feature missing: frr", "fake lab: ovs-vswitchd missing", "fake feature missing: nft"):
        assert reason in out and "CI=true" in out, out
    assert "SKIPPED [1] test_plain.py" in out and "not a lab test" in out, "a non-lab skip stays a skip"
    assert "XFAIL test_plain.py::test_marked_lab_xfails" in out


def test_with_ci_true_real_lab_tests_without_their_tools_fail(tmp_path):
    """The real path: tests/lab/conftest.py's fixture and a test body, both asking skip_reason."""
    nodes = ["tests/lab/test_demo.py",   # skips in its body
             "tests/lab/test_lab_reference.py::test_shared_lab_answers_ssh_on_the_committed_addresses"]  # fixture
    no_tools = {"PATH": str(tmp_path / "empty-bin")}
    (tmp_path / "empty-bin").mkdir()
    cp = _pytest(nodes, ROOT, ci=False, summary=tmp_path / "skip.json", **no_tools)
    assert cp.returncode == 0, cp.stdout + cp.stderr
    assert json.loads((tmp_path / "skip.json").read_text())["lab"]["skipped"] == 2
    cp = _pytest(nodes, ROOT, ci=True, summary=tmp_path / "fail.json", **no_tools)
    assert cp.returncode == 1, cp.stdout + cp.stderr
    assert json.loads((tmp_path / "fail.json").read_text())["lab"] == {"passed": 0, "failed": 2, "skipped": 0,
                                                                      "xfailed": 0}
    assert "the lab needs: ip" in cp.stdout and "scripts/install.sh" in cp.stdout, cp.stdout
