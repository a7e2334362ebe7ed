"""Git hooks on a real bare repo, exercised by real `git push`, and the signed-commit policy."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from svc_helpers import IntentsRepo, daemon_config, empty_snapshot, git, start_daemon, wait_until

from reconciler.cli import main
from reconciler.service.daemon import Daemon, DaemonConfig

SECRET = b"hooks-test-secret-0123456789abcdef"


@pytest.fixture
def repo(tmp_path):
    return IntentsRepo(tmp_path)


@pytest.fixture
def daemon(tmp_path, repo):
    d = start_daemon(daemon_config(tmp_path, repo, empty_snapshot(tmp_path / "snap.json"), webhook_secret=SECRET))
    try:
        wait_until(lambda: d.current is not None and d.current.revision == repo.first, what="initial sync")
        yield d
    finally:
        d.stop(wait_s=10)
        d.store.close()


def install(repo: IntentsRepo, tmp: Path, *extra: str) -> None:
    assert main(["hooks", "install", str(repo.bare), *extra]) == 0
    assert os.access(repo.bare / "hooks" / "pre-receive", os.X_OK)


def test_invalid_push_is_rejected_with_file_line_path(repo, tmp_path):
    install(repo, tmp_path)
    before = git(repo.bare, "rev-parse", "main").stdout.strip()
    repo.edit_yaml("apps/shop.yaml", lambda y: y["spec"]["services"]["web"]["ports"][0].update(port=70000))
    repo.edit_yaml("apps/billing.yaml", lambda y: y["spec"]["segment"].update(subnet="10.999.0.0/24"))
    repo.commit("two mistakes")
    res = repo.push(check=False)
    assert res.returncode != 0
    assert "netintent: push to refs/heads/main rejected: 2 error(s)" in res.stderr or "rejected" in res.stderr
    lines = [l for l in res.stderr.splitlines() if "apps/" in l]
    assert any("apps/shop.yaml:" in l and "ports" in l and "70000" in l for l in lines), res.stderr
    assert any("apps/billing.yaml:" in l and "subnet" in l for l in lines), res.stderr
    assert git(repo.bare, "rev-parse", "main").stdout.strip() == before, "nothing reached the repo"


def test_valid_push_notifies_the_daemon(repo, tmp_path, daemon):
    secret = tmp_path / "secret"
    secret.write_bytes(SECRET)
    host, port = daemon.http.address
    install(repo, tmp_path, "--webhook", f"http://{host}:{port}/hooks/git", "--webhook-secret-file", str(secret),
            "--branch", "main")
    sha = repo.set_web_port(8088)
    res = repo.push()
    assert "daemon notified (202)" in res.stderr
    wait_until(lambda: daemon.current.revision == sha and not daemon._sync_running, timeout=10, what="webhook sync")
    assert [r.trigger for r in daemon.store.runs(limit=5) if r.revision == sha] == ["webhook"]


def test_post_receive_never_fails_a_push_when_the_daemon_is_down(repo, tmp_path):
    secret = tmp_path / "secret"
    secret.write_bytes(SECRET)
    install(repo, tmp_path, "--webhook", "http://127.0.0.1:9/hooks/git", "--webhook-secret-file", str(secret))
    sha = repo.set_web_port(8089)
    res = repo.push()
    assert "daemon not notified" in res.stderr
    assert git(repo.bare, "rev-parse", "main").stdout.strip() == sha


def test_foreign_hook_is_not_overwritten(repo, tmp_path, capsys):
    (repo.bare / "hooks" / "pre-receive").write_text("#!/bin/sh\nexit 0\n")
    assert main(["hooks", "install", str(repo.bare)]) == 2
    assert "not ours" in capsys.readouterr().err


# ---- signed commits -----------------------------------------------------------------------
@pytest.fixture
def gpg_key(tmp_path):
    if not shutil.which("gpg"):
        pytest.skip("gpg not installed")
    home = tmp_path / "gnupg"
    home.mkdir(mode=0o700)
    env = {**os.environ, "GNUPGHOME": str(home)}
    subprocess.run(["gpg", "--batch", "--passphrase", "", "--quick-gen-key", "Intents Signer <signer@example.invalid>",
                    "ed25519", "sign", "never"], env=env, check=True, capture_output=True, timeout=60)
    fpr = subprocess.run(["gpg", "--batch", "--with-colons", "--list-secret-keys"], env=env, capture_output=True,
                         text=True, check=True).stdout
    fpr = next(l.split(":")[9] for l in fpr.splitlines() if l.startswith("fpr:"))
    keyring = tmp_path / "allowed.asc"
    keyring.write_bytes(subprocess.run(["gpg", "--batch", "--armor", "--export", fpr], env=env, capture_output=True,
                                       check=True).stdout)
    try:
        yield {"home": str(home), "fpr": fpr, "keyring": keyring, "env": {"GNUPGHOME": str(home)}}
    finally:
        subprocess.run(["gpgconf", "--kill", "all"], env=env, capture_output=True, timeout=10)


def signed_commit(repo: IntentsRepo, msg: str, key: dict) -> str:
    git(repo.work, "add", "-A")
    git(repo.work, "commit", "-q", f"-S{key['fpr']}", "-m", msg, env=key["env"])
    return repo.head()


def test_signed_commit_policy_in_the_hook(repo, tmp_path, gpg_key):
    install(repo, tmp_path, "--keyring", str(gpg_key["keyring"]))
    repo.set_web_port(8091)
    res = repo.push(check=False)
    assert res.returncode != 0 and "not signed" in res.stderr
    git(repo.work, "reset", "-q", "--hard", "origin/main")
    repo.edit_yaml("apps/shop.yaml", lambda y: y["spec"]["services"]["web"]["ports"][0].update(port=8092))
    signed = signed_commit(repo, "signed change", gpg_key)
    res = repo.push(check=False)
    assert res.returncode == 0, res.stderr
    assert git(repo.bare, "rev-parse", "main").stdout.strip() == signed


def test_signed_commit_policy_in_the_daemon(repo, tmp_path, gpg_key):
    """Hooks not installed: the daemon itself refuses an unsigned head and keeps the last good one."""
    repo.edit_yaml("apps/shop.yaml", lambda y: y["spec"]["services"]["web"]["ports"][0].update(port=8093))
    good = signed_commit(repo, "signed", gpg_key)
    repo.push()
    cfg = DaemonConfig(repo=str(repo.bare), store_url=str(tmp_path / "db.sqlite"), cache_dir=str(tmp_path / "cache"),
                       state_dir=str(tmp_path / "state"), listen=None, interval_s=3600, drift_interval_s=3600,
                       observed=str(empty_snapshot(tmp_path / "snap.json")), keyring=str(gpg_key["keyring"]))
    d = Daemon(cfg)
    d.start()
    try:
        wait_until(lambda: d.current is not None and d.current.revision == good, what="signed head applied")
        unsigned = repo.set_web_port(8094)
        repo.push()
        d.request_sync("poll")
        wait_until(lambda: d.refused and d.refused["sha"] == unsigned, what="unsigned refused")
        assert d.current.revision == good
        assert "not signed" in d.refused["errors"][0]
    finally:
        d.stop(wait_s=10)
        d.store.close()


def test_hooks_installed_by_an_earlier_version_keep_working(repo, tmp_path):
    """Bare repos whose hooks still run `python -m reconciler.hooks` (the module before the
    service package existed) keep validating pushes through the compatibility shim."""
    import sys
    install(repo, tmp_path)
    hook = repo.bare / "hooks" / "pre-receive"
    text = hook.read_text()
    assert "-m reconciler.service.hooks pre-receive" in text
    hook.write_text(text.replace("-m reconciler.service.hooks", "-m reconciler.hooks"))
    assert f"{sys.executable} -m reconciler.hooks pre-receive" in hook.read_text()
    before = git(repo.bare, "rev-parse", "main").stdout.strip()
    repo.edit_yaml("apps/shop.yaml", lambda y: y["spec"]["services"]["web"]["ports"][0].update(port=70000))
    repo.commit("a mistake")
    res = repo.push(check=False)
    assert res.returncode != 0 and "rejected" in res.stderr, res.stderr
    assert any("apps/shop.yaml:" in l and "70000" in l for l in res.stderr.splitlines()), res.stderr
    assert git(repo.bare, "rev-parse", "main").stdout.strip() == before
