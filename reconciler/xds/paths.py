"""Where a workload host keeps its xDS files (no imports: compile, the lab and drivers share it).

WORKLOAD_DIR holds `bootstrap.json` (what GRPC_XDS_BOOTSTRAP names) and `certs/` (the SPIFFE
certificates, keys and the CA bundle the bootstrap's file_watcher providers read). The host
layer writes there; the lab binds a per-node directory onto it.
`control_path(address)`: the control socket of the ADS relay serving `address` (relay.py).
"""
import os
from pathlib import Path

WORKLOAD_DIR = "/etc/netintent/xds"
BOOTSTRAP_FILE = f"{WORKLOAD_DIR}/bootstrap.json"
DEFAULT_RUN_DIR = "/run/netintent/ads"


def run_dir() -> Path:
    return Path(os.environ.get("RECONCILER_ADS_RUN_DIR") or DEFAULT_RUN_DIR)


def control_path(address: str) -> Path:
    host, _, port = address.rpartition(":")
    safe = "".join(c if c.isalnum() or c in ".-" else "_" for c in host.strip("[]"))
    return run_dir() / f"{safe}_{port}.sock"
