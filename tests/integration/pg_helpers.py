"""A throwaway PostgreSQL server for tests (Debian package `postgresql`).

`PgServer()` runs initdb (as the `postgres` user when we are root) into a temp dir, starts
the server with pg_ctl on a free loopback port and a private socket dir, and `stop()`s and
removes it. `available()` says why it cannot run (binaries or user missing) for skips.
"""
from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

from svc_helpers import free_port


def _bindir() -> Path | None:
    cands = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    if cands:
        return Path(cands[-1]).parent
    w = shutil.which("initdb")
    return Path(w).resolve().parent if w else None


def available() -> str:
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "psycopg (PostgreSQL driver) not installed: pip install 'psycopg[binary]'"
    if _bindir() is None:
        return "PostgreSQL server binaries (initdb/pg_ctl) not installed: apt-get install postgresql"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "no 'postgres' user to run the server as"
    return ""


class PgServer:
    def __init__(self) -> None:
        self.bindir = _bindir()
        self.base = Path(tempfile.mkdtemp(prefix="ni-svc-pg-"))
        os.chmod(self.base, 0o755)
        self.data = self.base / "data"
        self.sock = self.base / "sock"
        self.data.mkdir()
        self.sock.mkdir()
        self.port = free_port()
        self.log = self.base / "server.log"
        self.log.touch()
        if os.geteuid() == 0:
            pw = pwd.getpwnam("postgres")
            for p in (self.data, self.sock, self.log):
                os.chown(p, pw.pw_uid, pw.pw_gid)
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8")
        self.start()

    def _run(self, tool: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        cmd = [str(self.bindir / tool), *args]
        if os.geteuid() == 0:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=check, cwd="/")

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        opts = f"-p {self.port} -k {self.sock} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off"
        self._run("pg_ctl", "-D", str(self.data), "-o", opts, "-l", str(self.log), "-w", "-t", "60", "start")

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop", check=False)

    def destroy(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.base, ignore_errors=True)
