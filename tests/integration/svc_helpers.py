"""Helpers for the service tests: real git repos, a slow snapshot driver, waiting.

`daemon_config(tmp, repo, snapshot, **over)` is a daemon over that repo and snapshot drivers,
with its store and directories in `tmp` and its timers an hour apart (only the test triggers
syncs); `start_daemon(cfg)` starts one. `IntentsRepo(tmp)` makes a bare repo (`origin.git`) seeded with examples/intents (or what
`fill` writes) and a work clone to commit and push from. `stop(process)` ends a process. `slow_factory` builds snapshot drivers whose apply sleeps for
the seconds written in `<snapshot>.delay` (0 if absent) and touches `<snapshot>.applying`
first, so tests can kill or burst the daemon in the middle of an apply.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any, Callable

import yaml

from reconciler.drivers import snapshot as snap
from reconciler.drivers.snapshot import SnapshotDriver
from reconciler.service.config import DaemonConfig
from reconciler.service.daemon import Daemon

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "intents"
GIT_ENV = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.invalid", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@example.invalid", "GIT_CONFIG_NOSYSTEM": "1", "HOME": "/nonexistent"}


def git(cwd: Path, *args: str, check: bool = True, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=check,
                          env={**os.environ, **GIT_ENV, **(env or {})})


class IntentsRepo:
    """`fill(work)` writes the first commit's files instead of examples/intents; `sync` updates
    the `sync` section of its reconciler.yaml."""

    def __init__(self, tmp: Path, inventory_vars: dict[str, Any] | None = None,
                 fill: Callable[[Path], Any] | None = None, sync: dict[str, Any] | None = None) -> None:
        self.bare = tmp / "origin.git"
        self.work = tmp / "work"
        git(tmp, "init", "-q", "--bare", "-b", "main", str(self.bare))
        git(tmp, "clone", "-q", str(self.bare), str(self.work))
        git(self.work, "checkout", "-q", "-b", "main", check=False)
        if fill is not None:
            fill(self.work)
        else:
            shutil.copytree(EXAMPLE, self.work, dirs_exist_ok=True)
        if sync:
            self.edit_yaml("reconciler.yaml", lambda cfg: cfg["sync"].update(sync))
        if inventory_vars:
            inv = yaml.safe_load((self.work / "inventory.yml").read_text())
            inv["all"]["vars"].update(inventory_vars)
            (self.work / "inventory.yml").write_text(yaml.safe_dump(inv, sort_keys=False))
        self.first = self.commit("initial intents")
        self.push()

    def edit_yaml(self, rel: str, fn: Callable[[Any], None]) -> None:
        p = self.work / rel
        data = yaml.safe_load(p.read_text())
        fn(data)
        p.write_text(yaml.safe_dump(data, sort_keys=False))

    def write(self, rel: str, text: str) -> None:
        (self.work / rel).write_text(text)

    def commit(self, msg: str, *extra: str) -> str:
        git(self.work, "add", "-A")
        git(self.work, "commit", "-q", "--allow-empty", *extra, "-m", msg)
        return self.head()

    def push(self, check: bool = True, env: dict | None = None) -> subprocess.CompletedProcess:
        return git(self.work, "push", "-q", "origin", "HEAD:main", check=check, env=env)

    def head(self) -> str:
        return git(self.work, "rev-parse", "HEAD").stdout.strip()

    def set_web_port(self, port: int) -> str:
        self.edit_yaml("apps/shop.yaml", lambda d: d["spec"]["services"]["web"]["ports"][0].update(port=port))
        return self.commit(f"shop web port {port}")


class SlowSnapshot(SnapshotDriver):
    def apply(self, plans, dry_run=False):  # noqa: ANN001
        if not dry_run and any(tp.changes for tp in plans):
            Path(str(self.path) + ".applying").write_text(str(os.getpid()))
            d = Path(str(self.path) + ".delay")
            delay = float(d.read_text()) if d.exists() else 0.0
            time.sleep(delay)
        return super().apply(plans, dry_run)


def slow_factory(layer, path, **_kw):  # noqa: ANN001
    return SlowSnapshot(layer, path)


def daemon_config(tmp: Path, repo: IntentsRepo, snapshot: Path, **over: Any) -> DaemonConfig:
    cfg = DaemonConfig(repo=str(repo.bare), store_url=str(tmp / "db.sqlite"), cache_dir=str(tmp / "cache"),
                       state_dir=str(tmp / "state"), listen="127.0.0.1:0", interval_s=3600, drift_interval_s=3600,
                       observed=str(snapshot))
    for k, v in over.items():
        if not hasattr(cfg, k):
            raise AttributeError(f"DaemonConfig has no field {k}")
        setattr(cfg, k, v)
    return cfg


def start_daemon(cfg: DaemonConfig) -> Daemon:
    d = Daemon(cfg)
    d.start()
    return d


def empty_snapshot(path: Path) -> Path:
    path.write_text(json.dumps({"resources": []}))
    return path


def snapshot_edit(path: Path, fn: Callable[[dict], None]) -> None:
    with snap._LOCK:
        data = snap.read_snapshot(path)
        fn(data)
        snap.write_snapshot(path, data)


def wait_until(pred: Callable[[], Any], timeout: float = 20.0, interval: float = 0.05, what: str = "") -> Any:
    end = time.monotonic() + timeout
    last = None
    while time.monotonic() < end:
        last = pred()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or pred}")


def stop(p: subprocess.Popen, wait_s: float = 15.0) -> None:
    """SIGTERM, then SIGKILL after `wait_s`: a test never leaves its process behind."""
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(wait_s)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(10)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LeakySnapshot(SnapshotDriver):
    """Fails host applies with an error that quotes the target's secrets (as a careless
    transport's command line would): the service must mask them everywhere."""

    def apply(self, plans, dry_run=False):  # noqa: ANN001
        from reconciler.drivers.base import ApplyResult
        from reconciler.model import Layer
        from reconciler.status import Outcome
        if self.layer is not Layer.HOST or dry_run:
            return super().apply(plans, dry_run)
        return {tp.target.name: ApplyResult(tp.target.name, Outcome.FAILED,
                                            error=f"sshpass -p {tp.target.vars.get('ansible_password')} ssh: "
                                                  "refused")
                for tp in plans}


def leaky_factory(layer, path, **_kw):  # noqa: ANN001
    return LeakySnapshot(layer, path)
