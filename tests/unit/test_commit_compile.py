"""The daemon's compiler passes a commit's changed apps (from git) to the incremental compile,
and the result equals a compile from scratch (reconciler/service/commit_compile.py)."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from reconciler.compile import Compiler
from reconciler.revision import load_revision
from reconciler.service.commit_compile import CommitCompiler, app_file

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.invalid",
       "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.invalid"}


def git(cwd: Path, *a: str) -> str:
    return subprocess.run(["git", *a], cwd=cwd, env=ENV, capture_output=True, text=True, check=True,
                          timeout=60).stdout.strip()


@pytest.fixture
def work(tmp_path) -> Path:
    w = tmp_path / "work"
    shutil.copytree(ROOT / "examples" / "intents", w)
    git(w, "init", "-q", "-b", "main")
    git(w, "add", "-A")
    git(w, "commit", "-qm", "initial")
    return w


def commit(w: Path, msg: str) -> str:
    git(w, "add", "-A")
    git(w, "commit", "-qm", msg)
    return git(w, "rev-parse", "HEAD")


def edit(w: Path, rel: str, fn) -> None:
    doc = yaml.safe_load((w / rel).read_text())
    fn(doc)
    (w / rel).write_text(yaml.safe_dump(doc, sort_keys=False))


def same_as_scratch(w: Path, sha: str, cc: CommitCompiler) -> bool:
    got = load_revision(w, sha, compiler=cc).desired
    want = load_revision(w, sha, compiler=Compiler()).desired
    return dict(got.resources) == dict(want.resources)


def test_a_commit_compiles_only_its_changed_apps_and_equals_a_full_compile(work):
    cc = CommitCompiler(str(work))
    assert same_as_scratch(work, git(work, "rev-parse", "HEAD"), cc) and cc.last_hint is None   # first: everything
    # one app edited: the hint is that app; compiled are it and its flow partners only
    edit(work, "apps/billing.yaml", lambda d: d["spec"]["services"]["ledger"]["ports"].append(
        {"name": "admin", "port": 9911}))
    sha = commit(work, "billing: admin port")
    assert same_as_scratch(work, sha, cc)
    assert cc.last_hint == ("billing",) and "billing" in cc.last_compiled and len(cc.last_compiled) < 3
    # an app added under a file name that is not its name, and one removed
    doc = yaml.safe_load((work / "apps" / "billing.yaml").read_text())
    (work / "apps" / "billing.yaml").unlink()
    doc["metadata"]["name"] = "payments"
    (work / "apps" / "pay.yml").write_text(yaml.safe_dump(doc, sort_keys=False))
    sha = commit(work, "billing becomes payments")
    assert same_as_scratch(work, sha, cc) and cc.last_hint == ("billing", "payments")
    # the same revision again: nothing changed, nothing compiled
    load_revision(work, sha, compiler=cc)
    assert cc.last_hint == () and cc.last_compiled == ()
    # a config change (no app file): the compiler sees the config differ and compiles everything
    edit(work, "reconciler.yaml", lambda d: d["sync"].update(interval_s=45))
    sha = commit(work, "config")
    assert same_as_scratch(work, sha, cc) and cc.last_hint == ()
    assert set(cc.last_compiled) == {"analytics", "payments", "shop"}


def test_without_a_diff_the_compiler_scans_as_before(work, tmp_path):
    cc = CommitCompiler(str(tmp_path / "not-a-repo"))
    load_revision(work, "HEAD", compiler=cc)
    edit(work, "apps/shop.yaml", lambda d: d["spec"]["services"]["api"]["ports"].append({"name": "m", "port": 9100}))
    sha = commit(work, "shop")
    got = load_revision(work, sha, compiler=cc).desired
    assert cc.last_hint is None and "shop" in cc.last_compiled
    assert dict(got.resources) == dict(load_revision(work, sha, compiler=Compiler()).desired.resources)


@pytest.mark.parametrize("path,want", [("apps/shop.yaml", True), ("apps/x.yml", True), ("apps/.shop.yaml", False),
                                       ("apps/sub/shop.yaml", False), ("reconciler.yaml", False),
                                       ("apps/README.md", False)])
def test_app_files_are_the_loaders(path, want):
    assert app_file(path) is want
