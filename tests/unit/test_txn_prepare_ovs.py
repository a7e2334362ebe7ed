"""Prepare check of the hypervisor driver's `ovs-vsctl` transaction against a scratch OVSDB
(a real ovsdb-server on a unix socket in a temp dir; nothing else is touched)."""
import shutil
from pathlib import Path

import pytest

from reconciler.compile import compile_repo
from reconciler.drivers.ansible.hypervisor import HypervisorDriver
from reconciler.drivers.base import Target, TargetPlan
from reconciler.intents.validate import load_repo
from reconciler.model import Layer, State
from reconciler.plan import make_plan
from reconciler.txn.prepare_ovs import SCHEMA, check_vsctl, why_skipped

pytestmark = pytest.mark.skipif(not SCHEMA.exists() or not shutil.which("ovsdb-server"),
                                reason="ovsdb-server and the vswitch schema are needed")


def _plans(undo: bool = False) -> list[TargetPlan]:
    desired = State.of(compile_repo(load_repo("examples/intents")))
    empty = State.of([])
    want, have = (empty, desired) if undo else (desired, empty)
    plan = make_plan(want, have, prune=True)
    names = sorted({k.target for k in desired.resources if k.layer is Layer.HYPERVISOR})
    return [TargetPlan(Target(t, Layer.HYPERVISOR, {}), plan.for_target(Layer.HYPERVISOR, t),
                       tuple(want.for_target(Layer.HYPERVISOR, t)), tuple(have.for_target(Layer.HYPERVISOR, t)),
                       True) for t in names]


def test_the_drivers_vsctl_for_the_examples_passes_both_ways():
    drv = HypervisorDriver("examples/intents/inventory.yml")
    for undo in (False, True):
        for tp in _plans(undo):
            argv = drv.render(tp).hostvars.get("vsctl")
            assert argv, tp.target.name
            assert check_vsctl(argv) == "", (undo, tp.target.name)
            assert why_skipped() == ""


@pytest.mark.parametrize("argv,message", [
    (["--", "--may-exist", "add-port", "br0", "eth2", "--", "set", "Port", "eth2", "tag=5000"],
     "constraint violation: 5000 is not in the valid range 0 to 4095"),
    (["--", "set", "Port", "eth2", "tagg=5"], 'Port does not contain a column whose name matches "tagg"'),
    (["--", "set", "Port", "eth1", "trunks=[101,x]"], '"x" is not a valid integer or range'),
    (["--", "frobnicate", "br0"], "unknown command 'frobnicate'"),
])
def test_a_bad_vsctl_transaction_is_refused_with_the_tools_message(argv, message):
    why = check_vsctl(argv)
    assert why.startswith("ovs-vsctl: ") and message in why


def test_the_scratch_database_is_gone_after_the_check(tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile
    monkeypatch.setattr(tempfile, "tempdir", None)
    assert check_vsctl(["--", "--may-exist", "add-br", "br9"]) == ""
    assert list(Path(tmp_path).iterdir()) == []
