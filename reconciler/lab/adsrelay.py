"""The lab's ADS server (reconciler.xds.relay): started by `lab up`, ended by `lab down`.

Contract: when the topology has sidecar hosts, `spawn(layout, address)` starts
`python -m reconciler.xds.relay --listen <mgmt gateway>:ADS_PORT` in the root network
namespace (its own session; log and ready file in the lab's state dir) and returns the
Popen; `wait_ready(proc, layout)` waits (bounded) for it to listen on both the ADS port and
its control socket, else raises StepError. The address is what the lab inventory gives the
hosts as `netintent_ads`; `reconciler apply/serve/serve-xds` find the relay through its control
socket (reconciler.xds.relay.control_path) and hand it their snapshots, so workloads stay
connected and configured between one-shot applies. `lab down` kills the pid kept in the lab
state (`ads_relay`) and removes the socket.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from reconciler.lab.layout import Layout
from reconciler.lab.system import StepError

READY_TIMEOUT_S = 20.0


def ready_file(layout: Layout):
    return layout.state_dir / "ads-relay.ready"


def spawn(layout: Layout, address: str) -> subprocess.Popen:
    rf = ready_file(layout)
    rf.unlink(missing_ok=True)
    env = dict(os.environ)
    for k in ("GRPC_TRACE", "GRPC_VERBOSITY"):
        env.pop(k, None)
    with open(layout.state_dir / "ads-relay.log", "ab") as log:
        return subprocess.Popen([sys.executable, "-m", "reconciler.xds.relay", "--listen", address,
                                 "--ready-file", str(rf)], env=env, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)


def wait_ready(proc: subprocess.Popen, layout: Layout) -> dict:
    deadline = time.monotonic() + READY_TIMEOUT_S
    rf = ready_file(layout)
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = (layout.state_dir / "ads-relay.log").read_text(errors="replace")[-300:].strip()
            raise StepError("start the lab ADS server", f"exited {proc.returncode}: {tail or 'no output'}")
        try:
            return json.loads(rf.read_text())
        except (OSError, ValueError):
            time.sleep(0.05)
    raise StepError("start the lab ADS server", f"not listening within {READY_TIMEOUT_S:g}s")


def remove_socket(address: str) -> None:
    from reconciler.xds.paths import control_path
    path = control_path(address)
    path.unlink(missing_ok=True)
    for d in (path.parent, path.parent.parent):   # /run/netintent/ads, /run/netintent when empty
        try:
            d.rmdir()
        except OSError:
            break
