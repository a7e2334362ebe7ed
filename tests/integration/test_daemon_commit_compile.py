"""The daemon compiles a new commit from its changed apps (service/commit_compile.py): after a
commit that edits one app, the daemon's compile is given that app (`changed=`) and compiles
it and its flow partners only, and what it applies equals a compile from scratch. Real git
repos and SQLite; the snapshot driver stands in for devices."""
from __future__ import annotations

from svc_helpers import IntentsRepo, empty_snapshot

from reconciler.compile import Compiler
from reconciler.revision import load_revision
from reconciler.service.commit_compile import CommitCompiler
from reconciler.service.daemon import Daemon, DaemonConfig


def test_the_daemon_hands_a_commits_changed_apps_to_the_compiler(tmp_path):
    repo = IntentsRepo(tmp_path)
    snap = empty_snapshot(tmp_path / "snap.json")
    cfg = DaemonConfig(repo=str(repo.bare), store_url=str(tmp_path / "db.sqlite"), cache_dir=str(tmp_path / "cache"),
                       state_dir=str(tmp_path / "state"), listen="", interval_s=3600, drift_interval_s=3600,
                       observed=str(snap))
    d = Daemon(cfg)
    try:
        assert isinstance(d.compiler, CommitCompiler)
        assert d.lock.try_acquire()
        d.is_leader = True
        first = d.sync_once("startup")
        assert first is not None and first.converged and d.compiler.last_hint is None   # first compile: all
        repo.edit_yaml("apps/shop.yaml", lambda a: a["spec"]["services"]["api"]["ports"].append(
            {"name": "metrics", "port": 9100}))
        sha = repo.commit("shop: metrics port")
        repo.push()
        report = d.sync_once("webhook")
        assert report is not None and report.converged and report.revision == sha
        assert d.compiler.last_hint == ("shop",)
        assert "shop" in d.compiler.last_compiled and len(d.compiler.last_compiled) < 3
        want = load_revision(d.source.repo_dir, sha, cfg.inventory, compiler=Compiler()).desired
        assert d.current is not None and dict(d.current.desired.resources) == dict(want.resources)
    finally:
        d.stop(wait_s=10)
        d.store.close()
