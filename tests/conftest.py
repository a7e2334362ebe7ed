"""Session rules for every test under tests/.

Contract:
- Honest CI. With CI=true (or 1/yes), a lab test (marked `lab`, or any test under tests/lab/)
  that skips, for whatever reason (not root, a tool missing, pytest.skip, skipif), is reported
  as FAILED with the skip's reason; a lab module skipped whole at collection fails the session.
  A CI run is never green with the lab unrun. Outside CI a skip stays a skip, so a developer
  without root still runs everything else. xfail is left alone.
- Lab tally. The final outcome of every lab test is counted; the terminal summary prints
  `lab tests: N passed, ...`, and with NETINTENT_TEST_SUMMARY=<file> the counts are written
  there as JSON: {"lab": {"passed": N, "failed": N, "skipped": N, "xfailed": N}}.
  `.ci/run` reads it and fails when no lab test passed.
- Our environment's tools first. Run from a virtual environment that is not activated
  (`.venv/bin/python -m pytest`, as the README says), the venv's bin dir goes first on PATH, so
  tests that start `ansible`, `reconciler`, ... by name get the ones installed with the project.
"""
from __future__ import annotations

import json
import os
import sys
import sysconfig
from collections import Counter
from pathlib import Path

import pytest

LAB_DIR = Path(__file__).resolve().parent / "lab"
SUMMARY_ENV = "NETINTENT_TEST_SUMMARY"

_outcome: dict[str, str] = {}           # lab test node id -> passed / failed / skipped / xfailed
_skipped_lab_modules: list[str] = []    # lab modules skipped whole at collection, under CI


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def _under_lab_dir(path: object) -> bool:
    return Path(str(path)).resolve().is_relative_to(LAB_DIR)


def is_lab(item: pytest.Item) -> bool:
    return item.get_closest_marker("lab") is not None or _under_lab_dir(item.path)


def _skip_text(longrepr: object) -> str:
    # a skip's longrepr is (file, line, "Skipped: <reason>")
    return str(longrepr[2]) if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)


def pytest_configure(config: pytest.Config) -> None:
    if sys.prefix != sys.base_prefix:
        scripts = sysconfig.get_path("scripts")
        path = os.environ.get("PATH", os.defpath).split(os.pathsep)
        if scripts not in path:
            os.environ["PATH"] = os.pathsep.join([scripts, *path])


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    outcome = yield
    rep = outcome.get_result()
    if not is_lab(item):
        return
    xfail = hasattr(rep, "wasxfail")
    if rep.skipped and not xfail and in_ci():
        rep.outcome = "failed"
        rep.longrepr = f"CI=true: this lab test could not run, and CI must run it: {_skip_text(rep.longrepr)}"
    if rep.failed:
        _outcome[item.nodeid] = "failed"
    elif rep.skipped:
        _outcome[item.nodeid] = "xfailed" if xfail else "skipped"
    elif rep.when == "call" and item.nodeid not in _outcome:
        _outcome[item.nodeid] = "passed"


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector):
    outcome = yield
    rep = outcome.get_result()
    if rep.skipped and in_ci() and _under_lab_dir(collector.path):
        _skipped_lab_modules.append(f"{rep.nodeid}: {_skip_text(rep.longrepr)}")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _skipped_lab_modules and exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED):
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    target = os.environ.get(SUMMARY_ENV)
    if target:
        counts = Counter(_outcome.values())
        lab = {k: counts.get(k, 0) for k in ("passed", "failed", "skipped", "xfailed")}
        Path(target).write_text(json.dumps({"lab": lab, "lab_modules_skipped": _skipped_lab_modules}) + "\n")


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    counts = Counter(_outcome.values())
    if counts:
        terminalreporter.write_line("lab tests: " + ", ".join(f"{n} {k}" for k, n in sorted(counts.items())))
    for line in _skipped_lab_modules:
        terminalreporter.write_line(f"CI=true: lab module skipped whole, and CI must run it: {line}", red=True)
