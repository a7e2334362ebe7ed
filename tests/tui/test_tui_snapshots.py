"""Snapshot tests (pytest-textual-snapshot) of the TUI's looks, on a store filled by real
engine runs (tests/tui/conftest.py). Times are pinned, so the SVGs are reproducible.
Update after an intended change: `pytest tests/tui/test_tui_snapshots.py --snapshot-update`,
then look at the SVGs under tests/tui/__snapshots__/ before committing them.
"""
from __future__ import annotations

import pytest

pytest.importorskip("pytest_textual_snapshot")

from tui.screens import ActionScreen  # noqa: E402

from .conftest import wait_for  # noqa: E402


def test_app_list(demo, snap_compare):
    assert snap_compare(demo.app(), terminal_size=(130, 24))


def test_app_list_filtered(demo, snap_compare):
    assert snap_compare(demo.app(), press=["f", "f"], terminal_size=(130, 24))


def test_detail_diff_of_drifted_resource(demo, snap_compare):
    assert snap_compare(demo.app(open_app="shop"), press=["n"], terminal_size=(130, 36))


def test_detail_history(demo, snap_compare):
    assert snap_compare(demo.app(open_app="billing"), press=["2"], terminal_size=(130, 30))


def test_detail_small_terminal(demo, snap_compare):
    assert snap_compare(demo.app(open_app="analytics"), press=["n"], terminal_size=(64, 24))


def test_confirm_self_heal(demo, snap_compare):
    assert snap_compare(demo.app(), press=["down", "h"], terminal_size=(100, 24))


def test_dry_run_result(demo, snap_compare):
    async def run_before(pilot) -> None:
        await pilot.press("down", "down", "d", "y")
        screen = pilot.app.screen
        assert isinstance(screen, ActionScreen)
        await wait_for(pilot, lambda: screen.result is not None)

    assert snap_compare(demo.app(), run_before=run_before, terminal_size=(110, 30))


def test_help(demo, snap_compare):
    assert snap_compare(demo.app(), press=["question_mark"], terminal_size=(100, 40))
