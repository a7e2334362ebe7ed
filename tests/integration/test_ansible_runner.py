"""reconciler.drivers.ansible.runner against real ansible-runner/ansible-playbook (no netns needed):
per-host results from runner events, an unreachable host as data, payload files fed on stdin
without ever being templated, and published events carrying no payloads."""
from __future__ import annotations

import pytest
import yaml

from reconciler.drivers.ansible.runner import Play, RunSettings, run_plays

PLAYBOOK = """
- hosts: all
  gather_facts: false
  tasks:
    - name: echo
      ansible.builtin.command:
        argv: [cat]
        stdin: "{{ lookup('ansible.builtin.file', ni_files ~ '/' ~ inventory_hostname ~ '/payload.txt') }}"
      when: ni[inventory_hostname].payload | default(false)
    - name: var
      ansible.builtin.command:
        argv: [echo, "{{ ni[inventory_hostname].word }}"]
"""


@pytest.fixture
def setup(tmp_path, closed_port):
    pb = tmp_path / "pb.yml"
    pb.write_text(PLAYBOOK)
    inv = tmp_path / "inv.yml"
    inv.write_text(yaml.safe_dump({"all": {"hosts": {
        "a": {"ansible_connection": "local", "ansible_python_interpreter": "/usr/bin/python3"},
        "b": {"ansible_connection": "local", "ansible_python_interpreter": "/usr/bin/python3"},
        "down": {"ansible_host": "127.0.0.1", "ansible_port": closed_port, "ansible_user": "nobody"},
    }}}))
    return pb, inv


def test_per_host_results_unreachable_as_data_and_untemplated_payload(setup):
    pb, inv = setup
    events = []
    payload = "table inet x { {{ lookup('pipe', 'id') }} }\n{% raw %}"
    runs = run_plays([Play(str(pb), ("a", "b", "down"))],
                     {"a": {"payload": True, "word": "alpha"}, "b": {"word": "beta"},
                      "down": {"word": "never"}},
                     RunSettings(str(inv), publish=events.append, timeout_s=60, connect_timeout_s=2),
                     files={"a": {"payload.txt": payload}})
    assert runs["a"].ok and runs["b"].ok
    assert runs["a"].results["echo"]["stdout"] == payload.rstrip("\n")   # verbatim: never templated
    assert runs["a"].results["var"]["stdout"] == "alpha"
    assert "echo" in runs["b"].skipped and runs["b"].results["var"]["stdout"] == "beta"
    assert runs["down"].unreachable and not runs["down"].ok and runs["down"].error
    logs = [e for e in events if e.kind.value == "driver-log"]
    assert {(e.target, e.data["status"]) for e in logs} >= {("a", "ok"), ("b", "skipped"), ("down", "unreachable")}
    for e in logs:
        assert "lookup" not in repr(e) and "alpha" not in repr(e)              # no payloads, no outputs


def test_empty_host_list_runs_nothing(setup):
    pb, inv = setup
    assert run_plays([Play(str(pb), ())], {}, RunSettings(str(inv))) == {}
