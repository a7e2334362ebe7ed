"""observe_ssh.observe_command: the observe playbook's own commands, filled in as Ansible fills
them; a bridge name that is not an interface name never reaches the command."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from reconciler.drivers.ansible import observe_ssh
from reconciler.model import Layer


def _target(**vars_):
    return SimpleNamespace(name="t1", vars=vars_)


def test_commands_are_the_playbooks_with_values_filled():
    hv = observe_ssh.observe_command(Layer.HYPERVISOR, _target(netintent_bridge="br-app"))
    assert "list Bridge br-app" in hv and "dump-flows br-app cookie=0x4e49" in hv
    assert observe_ssh.observe_command(Layer.HYPERVISOR, _target()).count(" br0") == 2   # the default
    host = observe_ssh.observe_command(Layer.HOST, _target())
    assert host.startswith("ip -j -4 addr show") and "/etc/netintent/xds/bootstrap.json" in host
    for cmd in (hv, host):
        assert "{{" not in cmd and "{%" not in cmd


@pytest.mark.parametrize("bridge", ["br0; touch /tmp/x", "$(id)", "a" * 16, "br 0", "`id`"])
def test_a_bridge_name_that_is_no_interface_name_is_refused(bridge):
    with pytest.raises(ValueError, match="not an interface name"):
        observe_ssh.observe_command(Layer.HYPERVISOR, _target(netintent_bridge=bridge))


def test_an_unknown_template_value_in_the_playbook_is_refused(monkeypatch):
    monkeypatch.setattr(observe_ssh, "_templates", lambda: ({"host": "ip addr {{ other_var }}"}, ""))
    with pytest.raises(ValueError, match="template value"):
        observe_ssh.observe_command(Layer.HOST, _target())


@pytest.mark.parametrize("extra", [{"ansible_become": True}, {"ansible_ssh_common_args": "-o ProxyJump=x"},
                                   {"ansible_password": "pw"}, {"ansible_connection": "local"}])
def test_targets_plain_ssh_would_not_reach_as_ansible_does_go_through_ansible(extra):
    assert observe_ssh.servable(_target(ansible_host="10.0.0.1"))
    assert not observe_ssh.servable(_target(ansible_host="10.0.0.1", **extra))
