"""Prepare check of a hypervisor change's `ovs-vsctl` transaction against a scratch OVSDB.

Contract: `check_vsctl(argv)` -> '' when `ovs-vsctl --no-wait <argv>` (the driver's one
transaction, `-- ...` parts) commits against a throw-away ovsdb-server holding the
vswitch schema, else "ovs-vsctl: <its message>". Nothing is written to any device: the
database lives in a temporary directory, its server listens only on a unix socket there and
is stopped before returning. The bridges the argv names, and the ports it sets, clears or
removes columns of, are created first, so the check is of the commands, columns and values
(tag, trunks, external_ids), not of which ports exist on the hypervisor (observe says that).
A check that cannot run (tools or schema missing, server not up in time) returns '' and says
why in `why_skipped()`.
"""
from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Sequence

SCHEMA = Path("/usr/share/openvswitch/vswitch.ovsschema")
_SKIPPED: list[str] = []


def why_skipped() -> str:
    return _SKIPPED[-1] if _SKIPPED else ""


def _names(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """(bridges, ports whose columns are touched without an add-port in the same argv)."""
    bridges: list[str] = []
    touched: list[str] = []
    added: set[str] = set()
    for i, word in enumerate(argv[:-1]):
        nxt = argv[i + 1]
        if word in ("add-port", "br-set-external-id", "add-br", "del-port") and not nxt.startswith("-"):
            if nxt not in bridges:
                bridges.append(nxt)
            if word == "add-port" and i + 2 < len(argv):
                added.add(argv[i + 2])
        elif word == "Port" and nxt not in touched:
            touched.append(nxt)
    return bridges, [p for p in touched if p not in added]


def _preload(bridges: list[str], ports: list[str]) -> list[str]:
    args = ["init"]
    for br in bridges or ["ni-scratch"]:
        args += ["--", "--may-exist", "add-br", br]
    for port in ports:
        args += ["--", "--may-exist", "add-port", (bridges or ["ni-scratch"])[0], port]
    return args


def _wait_for(path: Path, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    for _ in range(int(timeout_s / 0.02) + 1):   # bounded in count and time
        if path.exists() or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    return path.exists()


def check_vsctl(argv: Sequence[str], timeout_s: float = 10) -> str:
    _SKIPPED.clear()
    if not SCHEMA.exists() or not all(shutil.which(t) for t in ("ovsdb-tool", "ovsdb-server", "ovs-vsctl")):
        _SKIPPED.append("hypervisor: ovs-vsctl check needs ovsdb-tool, ovsdb-server, ovs-vsctl and the schema")
        return ""
    argv = [a for a in argv if not a.startswith("--timeout")]
    with tempfile.TemporaryDirectory(prefix="ni-prep-") as d:
        db, sock = Path(d, "conf.db"), Path(d, "db.sock")
        subprocess.run(["ovsdb-tool", "create", str(db), str(SCHEMA)], check=True, capture_output=True,
                       timeout=timeout_s)
        server = subprocess.Popen(["ovsdb-server", str(db), f"--remote=punix:{sock}", f"--unixctl={d}/ctl",
                                   "--no-chdir", "-vconsole:off", "-vsyslog:off"],
                                  stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            if not _wait_for(sock, timeout_s):
                _SKIPPED.append("hypervisor: scratch ovsdb-server did not come up")
                return ""
            vsctl = ["ovs-vsctl", f"--db=unix:{sock}", "--no-wait", f"--timeout={int(timeout_s)}"]
            pre = subprocess.run(vsctl + _preload(*_names(argv)), capture_output=True, text=True, timeout=timeout_s)
            if pre.returncode != 0:
                _SKIPPED.append(f"hypervisor: scratch ovsdb preload failed: {pre.stderr.strip()[:200]}")
                return ""
            p = subprocess.run(vsctl + list(argv), capture_output=True, text=True, timeout=timeout_s)
        finally:
            server.terminate()
            try:
                server.wait(timeout=5)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait(timeout=5)
    msg = " | ".join(p.stderr.strip().splitlines()[:3])
    return "" if p.returncode == 0 else msg if msg.startswith("ovs-vsctl: ") else f"ovs-vsctl: {msg}"
