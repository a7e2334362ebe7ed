"""The Ansible drivers' observe over kept ssh shells (observe_ssh.py) against real sshd, nftables
and Open vSwitch: it reads exactly what the observe playbook reads through Ansible, and a target
it cannot read is observed, and reported, by Ansible. Marked `lab`."""
from __future__ import annotations

import pytest
from conformance import converge
from hd_fixtures import HostAdapter, HypervisorAdapter, mini_lab  # noqa: F401 (fixture)

from reconciler.drivers.ansible import observe_ssh
from reconciler.status import Outcome

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def adapters(mini_lab):
    found = {"hypervisor": HypervisorAdapter(mini_lab), "host": HostAdapter(mini_lab)}
    for a in found.values():     # underlay first
        res = converge(a, a.desired())
        assert all(r.outcome.ok for r in res.values()), {n: (r.outcome, r.error) for n, r in res.items()}
    yield found
    observe_ssh.close()


@pytest.mark.parametrize("layer", ["hypervisor", "host"])
def test_the_ssh_read_gives_what_ansible_reads(adapters, monkeypatch, layer):
    a = adapters[layer]
    targets = a.targets()
    assert set(observe_ssh.read([(a.layer, targets)], 30)) == {t.name for t in targets}   # all over ssh
    by_ssh = a.driver().observe(targets)
    monkeypatch.setenv("RECONCILER_OBSERVE_SSH", "0")
    by_ansible = a.driver().observe(targets)
    for t in targets:
        assert by_ssh[t.name].ok and by_ansible[t.name].ok, (by_ssh[t.name].error, by_ansible[t.name].error)
        assert by_ssh[t.name].resources, t.name      # converged: there is state to read
        assert by_ssh[t.name].resources == by_ansible[t.name].resources, t.name


def test_a_target_ssh_cannot_read_is_observed_and_reported_by_ansible(adapters):
    a = adapters["host"]
    down = a.names[0]
    observe_ssh.close()      # no kept shell survives into the stopped sshd's absence
    a.make_unreachable(down)
    try:
        obs = a.driver().observe(a.targets())
        assert obs[down].outcome is Outcome.UNREACHABLE, (obs[down].outcome, obs[down].error)
        assert obs[down].error
        assert all(obs[n].ok for n in a.names if n != down)
        # Ansible's run is what reported it: its runner events name the host
        assert any(getattr(e, "target", "") == down for e in a.events), "no Ansible event for the down host"
    finally:
        a.restore(down)
    assert a.driver().observe(a.targets())[down].ok


def test_a_kept_connection_is_not_reused_under_other_host_keys(adapters, tmp_path):
    """A session over a kept ssh master skips host-key checks: a target whose known_hosts file
    holds other keys must not be read over the master opened before, but fail as Ansible does."""
    import dataclasses
    import subprocess
    a = adapters["host"]
    target = a.targets()[0]
    assert set(observe_ssh.read([(a.layer, [target])], 30)) == {target.name}    # a master is kept now
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "other")], check=True)
    key_type, key = (tmp_path / "other.pub").read_text().split()[:2]
    wrong = tmp_path / "known_hosts"
    wrong.write_text(f"{target.vars['ansible_host']} {key_type} {key}\n")
    other = dataclasses.replace(target, vars={**target.vars, "netintent_known_hosts": str(wrong)})
    assert observe_ssh.read([(a.layer, [other])], 30) == {}
    got = a.driver().observe([other])[target.name]
    assert got.outcome is Outcome.UNREACHABLE and "host key verification failed" in got.error.lower(), got.error
    assert a.driver().observe([target])[target.name].ok     # its own keys: read again
