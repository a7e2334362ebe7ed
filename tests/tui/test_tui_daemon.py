"""The TUI against a REAL daemon: `reconciler serve` in a subprocess (offline: its snapshot
drivers on a file, a git intents repo in tmp), its store and its HTTP API.

Live updates (a drift scan by the daemon shows up without a key press), self-heal toggled
from the TUI and honoured by the daemon (drift is only reported), and sync through the
daemon's signed /sync endpoint followed to the run's outcome.
"""
from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from reconciler.service.store import sqlite_url
from reconciler.status import Sync
from tui.app import ReconcilerApp
from tui.http_actions import DaemonActions
from tui.screens import ActionScreen, ConfirmScreen
from tui.storemodel import StoreReadModel
from tui.widgets import AppTable

from .conftest import EXAMPLES, wait_for
from .test_tui_pilot import SHOP_FW, table_rows

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True,
                   env={**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.invalid",
                        "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.invalid"})


def _wait(cond, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(0.2)


def _healthy(probe: DaemonActions) -> bool:
    try:
        return bool(probe.health().get("ok"))
    except Exception:
        return False


@pytest.fixture
def daemon(tmp_path: Path):
    if shutil.which("git") is None:
        pytest.skip("git not installed")
    repo = tmp_path / "repo"
    shutil.copytree(EXAMPLES, repo)
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "intents")
    snap = tmp_path / "observed.json"
    snap.write_text(json.dumps({"resources": []}))
    secret = tmp_path / "secret"
    secret.write_text("tui-test-secret-0123456789abcdef")
    secret.chmod(0o600)
    port = _free_port()
    db = tmp_path / "state.db"
    log = open(tmp_path / "serve.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "reconciler.cli", "serve", "--repo", str(repo), "--store", str(db),
                             "--listen", f"127.0.0.1:{port}", "--webhook-secret-file", str(secret),
                             "--observed", str(snap), "--state-dir", str(tmp_path / "st"),
                             "--interval", "600", "--drift-interval", "1"],
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        probe = DaemonActions(f"127.0.0.1:{port}", None, None)
        _wait(lambda: _healthy(probe), 60, "the daemon's /healthz")   # the store exists once it answers
        model = StoreReadModel.open(sqlite_url(db))
        _wait(lambda: len(model.apps()) == 3 and all(a.sync is Sync.SYNCED for a in model.apps()), 60,
              "the daemon's first sync")
        actions = DaemonActions(f"127.0.0.1:{port}", secret.read_bytes().strip(), model, timeout_s=60)
        yield model, actions, snap
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        log.close()


def _drop_element(snap: Path) -> None:
    data = json.loads(snap.read_text())
    for r in data["resources"]:
        if r["key"] == SHOP_FW:
            r["spec"]["elements"] = r["spec"]["elements"][:1]
    tmp = snap.with_suffix(".tmp")
    tmp.write_text(json.dumps(data))
    tmp.replace(snap)


def test_live_drift_self_heal_toggle_and_sync_through_daemon(daemon):
    model, actions, snap = daemon
    assert actions.health()["ok"] is True

    async def go():
        app = ReconcilerApp(model, actions, poll_s=0.2)
        async with app.run_test(size=(140, 30)) as pilot:
            await pilot.pause()
            table = app.screen.query_one(AppTable)
            assert "Synced" in table_rows(table)["shop"][1]
            # self-heal off for shop (the repo policy says on): the daemon must only report drift
            await pilot.press("down", "down", "h")
            assert isinstance(app.screen, ConfirmScreen) and "Disable" not in app.screen.question
            await pilot.press("y")
            await wait_for(pilot, lambda: {a.name: a.self_heal for a in model.apps()}["shop"] is True)
            await pilot.press("h", "y")
            await wait_for(pilot, lambda: {a.name: a.self_heal for a in model.apps()}["shop"] is False)
            # a manual change on the "device": the daemon's drift scan finds it, the screen follows
            _drop_element(snap)
            await wait_for(pilot, lambda: "OutOfSync" in table_rows(app.screen.query_one(AppTable))["shop"][1],
                           timeout_s=30)
            assert json.loads(snap.read_text())  # still drifted: self-heal is off for shop
            fw = next(r for r in json.loads(snap.read_text())["resources"] if r["key"] == SHOP_FW)
            assert len(fw["spec"]["elements"]) == 1
            # sync through the daemon's API, followed to the run's outcome
            await pilot.press("s", "y")
            screen = app.screen
            assert isinstance(screen, ActionScreen)
            await wait_for(pilot, lambda: screen.result is not None, timeout_s=70)
            assert screen.result.ok, screen.result
            assert "succeeded" in screen.result.summary
            await pilot.press("enter")
            await wait_for(pilot, lambda: "OutOf" not in table_rows(app.screen.query_one(AppTable))["shop"][1],
                           timeout_s=30)
    asyncio.run(go())
    fw = next(r for r in json.loads(snap.read_text())["resources"] if r["key"] == SHOP_FW)
    assert len(fw["spec"]["elements"]) == 2      # repaired by the daemon's run


def test_sync_refused_without_secret(daemon):
    model, actions, _ = daemon
    no_secret = DaemonActions(actions.base, None, model)
    assert "sync" not in no_secret.capabilities
    res = no_secret.sync("shop")
    assert not res.ok and "webhook-secret-file" in res.summary
    wrong = DaemonActions(actions.base, b"wrong-secret-0123456789", model, timeout_s=5)
    res = wrong.sync("shop")
    assert not res.ok and "401" in res.summary
