"""Flow probes: prove with real TCP, from inside lab nodes, which flows connect.

Contract: `probe_tcp(lab, Flow...)` starts one bounded TCP listener per destination inside
the destination node (bound to the destination address; when a workload already listens there,
that workload is the listener and a completed TCP handshake is the proof), connects from inside the source
node with the source address bound (so policy by source identity applies), and returns one
`ProbeResult` per flow. Every listener and connection has a timeout; every process started
is ended before the call returns. Traffic only goes to lab namespace addresses.
"""
from __future__ import annotations

import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Sequence

# Runs inside the destination node: accept connections until killed or `limit` seconds.
_SERVER = r"""
import socket, sys, time
addr, port, limit = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
try:
    s.bind((addr, port))
except OSError as e:
    if e.errno == 98:   # a workload (gRPC server) listens there: probe it instead
        print("in-use", flush=True); sys.exit(0)
    raise
s.listen(16); s.settimeout(0.2)
print("ready", flush=True)
end = time.monotonic() + limit
while time.monotonic() < end:
    try:
        c, _ = s.accept()
    except socket.timeout:
        continue
    try:
        c.sendall(b"ok\n")
    finally:
        c.close()
"""

# Runs inside the source node: exit 0 when the server answered.
_CLIENT = r"""
import socket, sys
src, dst, port, timeout = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
connect_only = len(sys.argv) > 5
s = socket.socket(); s.settimeout(timeout)
s.bind((src, 0))
try:
    s.connect((dst, port))
    if connect_only:
        sys.exit(0)
    data = s.recv(3)
except OSError as e:
    print(f"{type(e).__name__}: {e}"); sys.exit(1)
sys.exit(0 if data == b"ok\n" else 2)
"""


@dataclass(frozen=True)
class Flow:
    src_node: str
    src_addr: str
    dst_node: str
    dst_addr: str
    port: int
    label: str = ""

    def __str__(self) -> str:
        name = f"{self.label}: " if self.label else ""
        return f"{name}{self.src_node}({self.src_addr}) -> {self.dst_node}({self.dst_addr}):{self.port}"


@dataclass(frozen=True)
class ProbeResult:
    flow: Flow
    connected: bool
    detail: str = ""


def probe_tcp(lab, flows: Sequence[Flow], timeout: float = 2.0) -> list[ProbeResult]:
    servers: list[subprocess.Popen] = []
    in_use: set[tuple[str, str, int]] = set()   # a workload listens there: a TCP handshake is the proof
    try:
        for dst in sorted({(f.dst_node, f.dst_addr, f.port) for f in flows}):
            argv, env = lab.node_argv(dst[0], ["python3", "-c", _SERVER, dst[1], str(dst[2]),
                                               str(timeout * len(flows) + 10)])
            p = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            servers.append(p)
            line = p.stdout.readline() if p.stdout else ""
            if line.strip() == "in-use":
                in_use.add(dst)
                continue
            if line.strip() != "ready":
                err = p.stderr.read() if p.stderr else ""
                raise RuntimeError(f"listener on {dst[0]} {dst[1]}:{dst[2]} did not start: {err.strip()[-200:]}")

        def one(f: Flow) -> ProbeResult:
            t0 = time.monotonic()
            extra = ["connect-only"] if (f.dst_node, f.dst_addr, f.port) in in_use else []
            cp = lab.exec(f.src_node, ["python3", "-c", _CLIENT, f.src_addr, f.dst_addr, str(f.port), str(timeout),
                                       *extra], check=False, timeout=timeout + 10)
            return ProbeResult(f, cp.returncode == 0,
                               (cp.stdout or cp.stderr).strip()[-200:] or f"{time.monotonic() - t0:.2f}s")

        with ThreadPoolExecutor(max_workers=min(8, max(1, len(flows)))) as pool:
            return list(pool.map(one, flows))
    finally:
        for p in servers:
            p.kill()
            p.wait(timeout=5)
