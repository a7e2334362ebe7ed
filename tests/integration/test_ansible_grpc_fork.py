"""Ansible runs in a process where gRPC is busy (reconciler.drivers.ansible.runner.run_plays).

The sidecar driver's ADS server and CSDS channels live in the same process as the Ansible
drivers (`reconciler diff` observes both layers at once). A fork of that process (pexpect's pty.fork, multiprocessing's fork) while gRPC's
threads run broke about 1 Ansible run in 11 (`ansible run failed (rc=None)`, the child saying
`epoll_wait error: Bad file descriptor`). The runner starts ansible-playbook without forking the
calling process: here 30 runs beside a gRPC server and channel kept busy all along must all
succeed, and no Python fork handler may run in this process while they do.
Real ansible-playbook (local connections) and real grpcio workloads on loopback; no netns.
"""
from __future__ import annotations

import os
import threading
import time

import pytest
import yaml

from reconciler.drivers.ansible.runner import Play, RunSettings, run_plays

RUNS = 30

PLAYBOOK = """
- hosts: all
  gather_facts: false
  tasks:
    - name: observe
      ansible.builtin.command:
        argv: [echo, "{{ ni[inventory_hostname].word }}"]
"""

# Python fork handlers can't be unregistered: one handler for the module, armed per test.
_forks_seen: list[list[str]] = []
os.register_at_fork(before=lambda: _forks_seen and _forks_seen[-1].append(threading.current_thread().name))


@pytest.fixture
def inventory(tmp_path):
    (tmp_path / "pb.yml").write_text(PLAYBOOK)
    local = {"ansible_connection": "local", "ansible_python_interpreter": "/usr/bin/python3"}
    inv = tmp_path / "inv.yml"
    inv.write_text(yaml.safe_dump({"all": {"hosts": {"a": local, "b": local}}}))
    return tmp_path


@pytest.fixture
def busy_grpc(mesh):
    """gRPC busy in this process as in `reconciler diff`: the ADS server (mesh.server), three
    real workloads, and a thread dumping their CSDS through the sidecar driver without pause
    (channels opened, called and closed) until the test ends. Yields the count of dumps."""
    targets = [mesh.target(mesh.start(node).node) for node in ("w1", "w2", "w3")]
    stop = threading.Event()
    dumps = [0]

    def observe() -> None:
        while not stop.is_set():
            got = mesh.driver.observe(targets)
            dumps[0] += 1
            assert all(o.ok for o in got.values()), got

    thread = threading.Thread(target=observe, name="csds-observe", daemon=True)
    thread.start()
    try:
        yield dumps
    finally:
        stop.set()
        thread.join(timeout=10)


@pytest.mark.slow
def test_ansible_runs_beside_busy_grpc_all_succeed_without_forking_this_process(inventory, busy_grpc):
    settings = RunSettings(str(inventory / "inv.yml"), timeout_s=60, connect_timeout_s=2)
    forks: list[str] = []
    _forks_seen.append(forks)
    failures = []
    try:
        for i in range(RUNS):
            before = busy_grpc[0]
            runs = run_plays([Play(str(inventory / "pb.yml"), ("a", "b"))],
                             {"a": {"word": f"a{i}"}, "b": {"word": f"b{i}"}}, settings)
            bad = {h: r.error for h, r in runs.items() if not r.ok or r.results["observe"]["stdout"] != f"{h}{i}"}
            if bad:
                failures.append((i, bad))
            assert busy_grpc[0] > before, "no CSDS dump during the run: the test proves nothing"
    finally:
        _forks_seen.remove(forks)
    assert not failures, f"{len(failures)} of {RUNS} runs failed: {failures[:3]}"
    assert not forks, f"this process forked (Python fork handlers ran) in threads {sorted(set(forks))}"


def test_a_run_started_from_a_thread_while_grpc_serves_reports_per_host(inventory, busy_grpc):
    """The engine runs observes in worker threads: the same from a thread, several at once."""
    settings = RunSettings(str(inventory / "inv.yml"), timeout_s=60, connect_timeout_s=2)
    results: dict[int, dict] = {}

    def one(k: int) -> None:
        results[k] = run_plays([Play(str(inventory / "pb.yml"), ("a", "b"))],
                               {"a": {"word": "x"}, "b": {"word": "y"}}, settings)

    threads = [threading.Thread(target=one, args=(k,)) for k in range(3)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert time.monotonic() - t0 < 120 and len(results) == 3
    for runs in results.values():
        assert runs["a"].results["observe"]["stdout"] == "x" and runs["b"].results["observe"]["stdout"] == "y"
