"""reconciler.lab.shared: one lab shared by two processes stays up until the last user leaves;
a lab brought up outside (CLI) is never taken down by a user. Marked `lab` (root, netns)."""
from __future__ import annotations

import subprocess
import sys

import pytest
from labcheck import TOPOLOGIES, assert_lab_gone

from reconciler.lab import Lab
from reconciler.lab.shared import shared_lab, skip_reason

pytestmark = pytest.mark.lab
TOPO = TOPOLOGIES / "links.clab.yml"
ARGS = ("ni-lab-sh", "172.31.87.0/24")

CHILD = """
import sys
from reconciler.lab.shared import shared_lab
with shared_lab(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]) as lab:
    print("in", lab.is_up(), flush=True)
    sys.stdin.readline()
print("out", flush=True)
"""


@pytest.fixture
def need_lab():
    reason = skip_reason(("base", "ssh", "ovs"))
    if reason:
        pytest.skip(reason)


def test_last_user_takes_the_lab_down(need_lab, tmp_path):
    lab = Lab.from_file(TOPO, *ARGS[:1], tmp_path, ARGS[1])
    child = None
    try:
        with shared_lab(TOPO, ARGS[0], tmp_path, ARGS[1]) as mine:
            assert mine.is_up()
            child = subprocess.Popen([sys.executable, "-c", CHILD, str(TOPO), ARGS[0],
                                      str(tmp_path), ARGS[1]], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
            assert child.stdout.readline().strip() == "in True"
        assert lab.is_up(), "the other user still holds the lab"
        child.stdin.write("\n")
        child.stdin.flush()
        assert child.stdout.readline().strip() == "out"
        assert child.wait(timeout=30) == 0
        assert not lab.is_up()
        assert_lab_gone(lab)
    finally:
        if child and child.poll() is None:
            child.kill()
        lab.down(quiet=True)


def test_lab_brought_up_outside_is_left_up(need_lab, tmp_path):
    lab = Lab.from_file(TOPO, ARGS[0], tmp_path, ARGS[1])
    try:
        lab.up()
        with shared_lab(TOPO, ARGS[0], tmp_path, ARGS[1]) as used:
            assert used.exec("a", ["hostname"]).stdout.strip() == "a"
        assert lab.is_up()
    finally:
        lab.down(quiet=True)
    assert_lab_gone(lab)
