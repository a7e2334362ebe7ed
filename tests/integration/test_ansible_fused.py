"""Several layers in one ansible-runner run (reconciler.drivers.ansible.runner.run_plays and
AnsibleDriver.apply_together) against real ansible-playbook, local connections, no netns:
plays run in the given order, each on its own hosts; when every host of an earlier play fails
(Ansible then ends the run), the later layers are still applied, in a run of their own."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from reconciler.drivers.ansible.driver import AnsibleDriver, Rendered
from reconciler.drivers.ansible.runner import Play, RunSettings, run_plays
from reconciler.drivers.base import Target, TargetPlan
from reconciler.model import Layer
from reconciler.status import Outcome

# play 1 (hypervisor layer) leaves a mark; play 2 (host layer) shows whether the mark is there
UNDERLAY = """
- hosts: "{{ ni_hosts_hypervisor | default('all') }}"
  gather_facts: false
  tasks:
    - name: observe
      ansible.builtin.command:
        argv: [touch, "{{ ni_mark }}"]
"""
OVERLAY = """
- hosts: "{{ ni_hosts_host | default('all') }}"
  gather_facts: false
  tasks:
    - name: observe
      ansible.builtin.command:
        argv: [ls, "{{ ni_mark }}"]
"""


@pytest.fixture
def lab(tmp_path, closed_port):
    local = {"ansible_connection": "local", "ansible_python_interpreter": "/usr/bin/python3"}
    inv = tmp_path / "inv.yml"
    inv.write_text(yaml.safe_dump({"all": {
        "vars": {"ni_mark": str(tmp_path / "underlay-done")},
        "hosts": {"u1": local, "o1": local, "o2": local,
                  "down": {"ansible_host": "127.0.0.1", "ansible_port": closed_port, "ansible_user": "nobody"}}}}))
    (tmp_path / "underlay.yml").write_text(UNDERLAY)
    (tmp_path / "overlay.yml").write_text(OVERLAY)
    return tmp_path


def test_plays_run_in_order_each_on_its_own_hosts(lab):
    plays = [Play(str(lab / "underlay.yml"), ("u1",), Layer.HYPERVISOR),
             Play(str(lab / "overlay.yml"), ("o1", "o2"), Layer.HOST)]
    runs = run_plays(plays, {}, RunSettings(str(lab / "inv.yml"), timeout_s=60))
    assert set(runs) == {"u1", "o1", "o2"}
    assert all(r.ok for r in runs.values()), {h: r.error for h, r in runs.items()}
    # the overlay play found the underlay's mark: it ran after the underlay play finished
    assert runs["o1"].results["observe"]["rc"] == 0 and runs["o2"].results["observe"]["rc"] == 0


def test_a_host_in_two_plays_is_refused(lab):
    with pytest.raises(ValueError):
        run_plays([Play(str(lab / "underlay.yml"), ("u1",), Layer.HYPERVISOR),
                   Play(str(lab / "overlay.yml"), ("u1",), Layer.HOST)], {}, RunSettings(str(lab / "inv.yml")))


class _Layer(AnsibleDriver):
    def parse(self, target, stdout):
        return []

    def render(self, plan):
        return Rendered(writes=1)


class _Underlay(_Layer):
    layer = Layer.HYPERVISOR


class _Overlay(_Layer):
    layer = Layer.HOST


def _plans(layer, names):
    return [TargetPlan(Target(n, layer), ("change",), (), ()) for n in names]


def test_a_failed_underlay_does_not_silently_skip_the_layers_above(lab):
    under = _Underlay(str(lab / "inv.yml"), timeout_s=60, connect_timeout_s=2)
    over = _Overlay(str(lab / "inv.yml"), timeout_s=60, connect_timeout_s=2)
    under.apply_playbook, over.apply_playbook = str(lab / "underlay.yml"), str(lab / "overlay.yml")
    assert under.fuse_key == over.fuse_key
    # every host of the first play is unreachable: Ansible ends that run before play 2
    res_under, res_over = AnsibleDriver.apply_together([(under, _plans(Layer.HYPERVISOR, ["down"])),
                                                        (over, _plans(Layer.HOST, ["o1", "o2"]))])
    assert res_under["down"].outcome is Outcome.UNREACHABLE
    # the overlay still ran (its own run): its check ran and found no mark, as no underlay ran
    for n in ("o1", "o2"):
        assert res_over[n].outcome is Outcome.FAILED and "No such file" in res_over[n].error, res_over[n].error
    # in order when all is well: the overlay's check sees the underlay's mark
    res_under, res_over = AnsibleDriver.apply_together([(under, _plans(Layer.HYPERVISOR, ["u1"])),
                                                        (over, _plans(Layer.HOST, ["o1"]))])
    assert res_under["u1"].outcome is Outcome.APPLIED and res_over["o1"].outcome is Outcome.APPLIED


def _drivers(lab):
    under = _Underlay(str(lab / "inv.yml"), timeout_s=60, connect_timeout_s=2)
    over = _Overlay(str(lab / "inv.yml"), timeout_s=60, connect_timeout_s=2)
    under.apply_playbook, over.apply_playbook = str(lab / "underlay.yml"), str(lab / "overlay.yml")
    return under, over


def _waiting_at_gate(fifo: str) -> bool:
    """The gated run's first play is reading its FIFO: a `cat <fifo>` process exists (it blocks in
    open() until `go`, so the FIFO is not yet in its fds). The plays after the gate have not begun."""
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            argv = cmdline.read_bytes()
        except OSError:              # the process ended meanwhile
            continue
        if fifo.encode() in argv and b"cat" in argv:
            return True
    return False


def test_a_prestarted_run_writes_nothing_before_go(lab):
    import time
    under, over = _drivers(lab)
    mark = lab / "underlay-done"
    run = AnsibleDriver.prestart([(under, _plans(Layer.HYPERVISOR, ["u1"])), (over, _plans(Layer.HOST, ["o1"]))])
    deadline = time.monotonic() + 60             # ansible-playbook start-up, on a slow machine
    while not _waiting_at_gate(run.gate.path):
        assert time.monotonic() < deadline, "the prestarted run never reached its gate"
        if not run._thread.is_alive():
            pytest.fail(f"the prestarted run ended before its gate: {run.result()}")
        time.sleep(0.05)
    assert not mark.exists(), "the underlay play ran before go"
    t_go = time.time()
    run.go()
    res_under, res_over = run.result()
    assert res_under["u1"].outcome is Outcome.APPLIED and res_over["o1"].outcome is Outcome.APPLIED
    assert mark.stat().st_mtime >= t_go - 0.01


def test_a_prestarted_run_told_to_stop_applies_nothing(lab):
    under, over = _drivers(lab)
    run = AnsibleDriver.prestart([(under, _plans(Layer.HYPERVISOR, ["u1"]))])
    run.go(False)
    (res,) = run.result()
    assert res["u1"].outcome is Outcome.FAILED and "not applied" in res["u1"].error, res["u1"].error
    assert not (lab / "underlay-done").exists()


def test_a_gate_nobody_answers_ends_the_run_unapplied(lab, monkeypatch):
    """The engine died before answering (kill -9): the gate's own timeout ends the run."""
    import time

    from reconciler.drivers.ansible import runner as ansible_mod
    monkeypatch.setattr(ansible_mod, "GATE_WAIT_S", 3)
    under, _ = _drivers(lab)
    t0 = time.monotonic()
    run = AnsibleDriver.prestart([(under, _plans(Layer.HYPERVISOR, ["u1"]))])
    (res,) = run.result()                      # nobody calls go()
    assert time.monotonic() - t0 < 30
    assert res["u1"].outcome is Outcome.FAILED
    assert not (lab / "underlay-done").exists()
