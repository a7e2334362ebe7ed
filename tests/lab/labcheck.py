"""Helpers for lab tests: real TCP between nodes, real SSH, and 'nothing left' assertions."""
from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from reconciler.lab import Lab
from reconciler.lab.system import alive, netns_list

TOPOLOGIES = Path(__file__).resolve().parent / "topologies"

SERVER = """
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2]))); s.listen(1); s.settimeout(20)
print("listening", flush=True)
c, _ = s.accept(); c.settimeout(20)
data = b""
while not data.endswith(b"END"):
    chunk = c.recv(65536)
    if not chunk: break
    data += chunk
c.sendall(str(len(data)).encode()); c.close()
"""
CLIENT = """
import socket, sys
c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10)
c.sendall(b"x" * 200000 + b"END"); print(c.recv(100).decode())
"""


def tcp_roundtrip(lab: Lab, client: str, server: str, server_ip: str, port: int = 5801) -> None:
    """200 kB over TCP from client to server_ip (inside server); asserts every byte arrived."""
    argv, env = lab.node_argv(server, ["python3", "-c", SERVER, server_ip, str(port)])
    srv = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True)
    try:
        assert srv.stdout.readline().strip() == "listening", srv.stderr.read()
        cp = lab.exec(client, ["python3", "-c", CLIENT, server_ip, str(port)], check=False,
                      timeout=30)
        assert cp.returncode == 0, f"TCP {client} -> {server}:{server_ip} failed: {cp.stderr}"
        assert cp.stdout.strip() == str(200003)
    finally:
        srv.kill()
        srv.wait(timeout=5)


def ssh(lab: Lab, node: str, command: str, timeout: float = 20) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["ssh", "-i", str(lab.key_path), "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
         "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=5",
         f"root@{lab.mgmt_ip(node)}", command],
        capture_output=True, text=True, timeout=timeout, check=True)


def _lab_processes(lab: Lab) -> list[str]:
    """Live (non-zombie) processes whose command line mentions the lab's state dir or netns."""
    marks = [str(lab.layout.state_dir)] + [f"-N {lab.netns(n)}" for n in lab.topo.nodes]
    out = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or not alive(int(pid)):
            continue
        try:
            cmd = open(f"/proc/{pid}/cmdline", "rb").read().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if any(m in cmd for m in marks):
            out.append(f"{pid}: {cmd}")
    return out


def frr_tmp_dirs() -> set[str]:
    try:
        return set(os.listdir("/var/tmp/frr"))
    except FileNotFoundError:
        return set()


def assert_lab_gone(lab: Lab) -> None:
    have = netns_list()
    assert not [lab.netns(n) for n in lab.topo.nodes if lab.netns(n) in have]
    assert not os.path.exists(f"/sys/class/net/{lab.layout.mgmt_bridge}")
    for n in lab.topo.nodes:
        if lab.topo.nodes[n].kind == "linux":
            assert not os.path.exists(f"/sys/class/net/{lab.layout.mgmt_host_veth(n)}")
        else:
            assert not os.path.exists(f"/sys/class/net/{n}"), f"bridge {n} left"
    for ln in lab.topo.links:
        for ep in (ln.a, ln.b):
            if lab.topo.nodes[ep.node].kind != "linux":
                assert not os.path.exists(f"/sys/class/net/{ep.iface}")
    assert not lab.layout.state_dir.exists()
    assert not lab.inventory_path.exists()
    for n in lab.topo.nodes:
        assert not lab.layout.frr_etc(n).exists() and not lab.layout.frr_run(n).exists()
    deadline = time.monotonic() + 3
    while _lab_processes(lab) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _lab_processes(lab) == []
