"""Start and drive lab workloads (labs/workloads/agent.py) as subprocesses.

Contract: `Workload(...).start(timeout)` launches one agent with its own GRPC_XDS_BOOTSTRAP
and waits (bounded) for its ready file; `run()` asks it to make N calls to a target and
returns the tally; `csds()` dumps its xDS clients; `stop()` ends it (SIGTERM, then SIGKILL
after a bound). Used by the integration tests, the bench and `reconciler lab`; it only
ever ends the process it started. `netns` runs the agent inside that network namespace.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Sequence

import grpc

from reconciler.xds import csds

AGENT = Path(__file__).resolve().parents[2] / "labs" / "workloads" / "agent.py"


class WorkloadError(RuntimeError):
    pass


class Workload:
    def __init__(self, node: str, workdir: str | os.PathLike, bootstrap: str | os.PathLike,
                 serve: Sequence[tuple[str, str, int]] = (), warm: Sequence[str] = (),
                 admin: str = "127.0.0.1:0", netns: str | None = None,
                 env: dict[str, str] | None = None,
                 serve_plain: Sequence[tuple[str, str, int]] = ()) -> None:
        self.node = node
        self.workdir = Path(workdir)
        self.bootstrap = str(bootstrap)
        self.serve = list(serve)
        self.serve_plain = list(serve_plain)
        self.warm = list(warm)
        self.admin_bind = admin
        self.netns = netns
        self.env = env or {}
        self.proc: subprocess.Popen | None = None
        self.admin_address = ""

    def start(self, timeout: float = 20.0) -> "Workload":
        self.workdir.mkdir(parents=True, exist_ok=True)
        ready = self.workdir / "ready.json"
        ready.unlink(missing_ok=True)
        argv = [sys.executable, str(AGENT), "--admin", self.admin_bind, "--ready-file", str(ready)]
        for name, ip, port in self.serve:
            argv += ["--serve", f"{name}@{ip}:{port}"]
        for name, ip, port in self.serve_plain:
            argv += ["--serve-plain", f"{name}@{ip}:{port}"]
        for t in self.warm:
            argv += ["--warm", t]
        if self.netns:
            argv = ["ip", "netns", "exec", self.netns] + argv
        env = dict(os.environ, GRPC_XDS_BOOTSTRAP=self.bootstrap, **self.env)
        env.pop("GRPC_XDS_BOOTSTRAP_CONFIG", None)
        log = open(self.workdir / "agent.log", "ab")
        try:
            self.proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        finally:
            log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise WorkloadError(f"workload {self.node} exited with {self.proc.returncode}: "
                                    f"{self.log_tail()}")
            if ready.exists():
                info = json.loads(ready.read_text())
                host = self.admin_bind.rsplit(":", 1)[0]
                self.admin_address = f"{host}:{info['admin']}"
                return self
            time.sleep(0.05)
        self.stop()
        raise WorkloadError(f"workload {self.node} not ready within {timeout}s: {self.log_tail()}")

    def log_tail(self, n: int = 2000) -> str:
        p = self.workdir / "agent.log"
        return p.read_text(errors="replace")[-n:] if p.exists() else ""

    def run(self, target: str, n: int = 100, timeout_s: float = 2.0, concurrency: int = 20,
            sleep_ms: int = 0, fail_every: int = 0) -> dict:
        req = json.dumps({"target": target, "n": n, "timeout_s": timeout_s,
                          "concurrency": concurrency, "sleep_ms": sleep_ms,
                          "fail_every": fail_every}).encode()
        bound = 5.0 + n * timeout_s / max(1, concurrency) + timeout_s
        with grpc.insecure_channel(self.admin_address) as ch:
            return json.loads(ch.unary_unary("/netintent.lab.Admin/Run")(req, timeout=bound))

    def csds(self, timeout: float = 3.0) -> list[csds.CsdsEntry]:
        return csds.dump(self.admin_address, timeout)

    def stop(self, timeout: float = 5.0) -> None:
        p = self.proc
        if p is None or p.poll() is not None:
            return
        try:
            os.killpg(p.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait(timeout)

    def __enter__(self) -> "Workload":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
