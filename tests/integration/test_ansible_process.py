"""The ansible-playbook process of reconciler.drivers.ansible.runner.run_plays: timeouts and
cancels end it with every process it started, events stream while it runs, and extravars
(any size) never go onto a command line. Real ansible-playbook, local connections, no netns."""
from __future__ import annotations

import os
import random
import signal
import time
from pathlib import Path

import pytest
import yaml

from reconciler.drivers.ansible.runner import Play, RunSettings, run_plays

PLAYBOOK = """
- hosts: all
  gather_facts: false
  tasks:
    - name: wait
      ansible.builtin.command:
        argv: [sleep, "{{ ni[inventory_hostname].sleep }}"]
    - name: then
      ansible.builtin.command:
        argv: [sleep, "{{ ni[inventory_hostname].then | default(0) }}"]
    - name: observe
      ansible.builtin.command:
        argv: [ps, -eo, args]
"""


@pytest.fixture
def lab(tmp_path):
    (tmp_path / "pb.yml").write_text(PLAYBOOK)
    local = {"ansible_connection": "local", "ansible_python_interpreter": "/usr/bin/python3"}
    (tmp_path / "inv.yml").write_text(yaml.safe_dump({"all": {"hosts": {"a": local, "b": local}}}))
    return tmp_path


@pytest.fixture
def long_sleep():
    """A sleep argument only this test uses (a 300 s sleep): its processes can be found (and,
    should the test fail, are ended here, by pid)."""
    arg = f"300.{random.randrange(10**8, 10**9)}"
    yield arg
    for pid in _processes_with(f"sleep {arg}"):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _processes_with(marker: str) -> list[int]:
    pids = []
    for d in Path("/proc").iterdir():
        try:
            if d.name.isdigit() and marker in (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"):
                pids.append(int(d.name))
        except OSError:
            continue
    return pids


def _gone(marker: str, timeout: float = 10.0) -> bool:
    end = time.monotonic() + timeout
    while _processes_with(marker):
        if time.monotonic() > end:
            return False
        time.sleep(0.05)
    return True


def test_a_run_past_its_timeout_is_ended(lab, long_sleep):
    t0 = time.monotonic()
    runs = run_plays([Play(str(lab / "pb.yml"), ("a", "b"))], {h: {"sleep": long_sleep} for h in "ab"},
                     RunSettings(str(lab / "inv.yml"), timeout_s=4))
    assert time.monotonic() - t0 < 30
    for h in "ab":
        assert not runs[h].ok and "ansible run timeout" in runs[h].error, runs[h].error
    # ansible-playbook and its workers (their command lines name this test's inventory) are gone,
    # and so are the modules they ran (the workers start sessions of their own)
    assert _gone(str(lab / "inv.yml")), "ansible-playbook outlived its timeout"
    assert _gone(f"sleep {long_sleep}"), "a module of the run outlived its timeout"


def test_a_cancelled_run_ends_soon(lab, long_sleep):
    t0 = time.monotonic()
    # cancelled once its long sleep runs: only the cancel can end it that early
    runs = run_plays([Play(str(lab / "pb.yml"), ("a", "b"))], {h: {"sleep": long_sleep} for h in "ab"},
                     RunSettings(str(lab / "inv.yml"), timeout_s=600,
                                 cancel=lambda: bool(_processes_with(f"sleep {long_sleep}"))))
    assert time.monotonic() - t0 < 60
    for h in "ab":
        assert "ansible run canceled" in runs[h].error, runs[h].error
    assert _gone(str(lab / "inv.yml")), "ansible-playbook outlived its cancel"
    assert _gone(f"sleep {long_sleep}"), "a module of the run outlived its cancel"


def test_events_stream_while_the_run_goes_on(lab):
    """DRIVER_LOG events are published as tasks end, not all when the run ends: the `wait`
    event comes 1.5 s before the `then` event (a 1.5 s sleep), whose duration says so."""
    seen: list[tuple[str, float, float]] = []
    runs = run_plays([Play(str(lab / "pb.yml"), ("a",))], {"a": {"sleep": "0", "then": "1.5"}},
                     RunSettings(str(lab / "inv.yml"), timeout_s=60, publish=lambda e: seen.append(
                         (e.data["task"], e.data["duration_s"], time.monotonic()))))
    assert runs["a"].ok, runs["a"].error
    assert [t for t, _, _ in seen] == ["wait", "then", "observe"]
    (_, _, t_wait), (_, then_s, t_then) = seen[:2]
    assert t_then - t_wait >= 1.4 and then_s >= 1.4, seen


def test_extravars_of_any_size_stay_off_the_command_line(lab):
    secretish = "ni-marker-" + "x" * 200_000        # more than one argv string may hold (128 KiB)
    runs = run_plays([Play(str(lab / "pb.yml"), ("a",))], {"a": {"sleep": "0", "blob": secretish}},
                     RunSettings(str(lab / "inv.yml"), timeout_s=60))
    assert runs["a"].ok, runs["a"].error
    listing = runs["a"].results["observe"]["stdout"]       # every command line while the run was on
    assert "ansible-playbook" in listing and "ni-marker-" not in listing


def test_no_signal_handler_is_taken_over(lab):
    """ansible-runner's launcher installs SIGINT/SIGTERM handlers when called from the main
    thread; a run here leaves the process's handlers as they were."""
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    runs = run_plays([Play(str(lab / "pb.yml"), ("a",))], {"a": {"sleep": "0"}},
                     RunSettings(str(lab / "inv.yml"), timeout_s=60))
    assert runs["a"].ok, runs["a"].error
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before
