"""Pieces of the daemon that hold no scheduling state: its configuration and the loaded
revision.

Contract: `DaemonConfig` is everything `reconciler serve` is told; `Loaded` is one
validated, compiled revision with its inventory path and targets; `safe(fn, default)` runs a
store call, logging instead of raising; `write_inventory` puts a revision's inventory file in
the state directory (0600, named by content); `FABRIC` is the app name of the fabric.
Drivers come from `reconciler.drivers.registry`.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from reconciler.redact import REDACTOR

log = logging.getLogger("reconciler.service.daemon")


@dataclass
class DaemonConfig:
    repo: str
    store_url: str
    branch: str = "main"
    cache_dir: str = ".reconciler/cache"
    state_dir: str = ".reconciler/state"
    inventory: str | None = None          # inventory override (path on this machine)
    listen: str | None = "127.0.0.1:8686"
    webhook_secret: bytes | None = None
    interval_s: float | None = None       # None: the repo's sync.interval_s
    drift_interval_s: float | None = None # None: the repo's sync.drift_interval_s
    telemetry_interval_s: float | None = None  # None: the repo's sync.telemetry_interval_s; 0: no collection
    observed: str | None = None           # snapshot file: offline snapshot drivers
    driver_factory: str | None = None     # "module:function" (layer=..., path=..., ...)
    attempts: int = 1
    timeout_s: float = 60.0
    keyring: str | None = None            # signed-commit policy: allowed public keys
    layers: tuple[str, ...] = ()          # only these layers (default: every layer with a driver)
    retry_base_s: float = 2.0
    retry_max_s: float = 120.0
    shards: Any = None                    # service.shards.ShardSettings: share apps with other daemons (PostgreSQL)
    confirm_checks: tuple[str, ...] | None = None  # health checks that confirm a commit-confirm transaction
                                                   # (None: env RECONCILER_CONFIRM_CHECKS; known: "verify")
    instance: str = field(default_factory=lambda: f"{os.uname().nodename}:{os.getpid()}")


@dataclass
class Loaded:
    revision: str
    repo: Any
    desired: Any
    inventory_path: str
    targets: dict


def safe(fn: Callable[[], Any], default: Any = None, what: str = "store") -> Any:
    try:
        return fn()
    except Exception as exc:
        log.warning("%s unavailable: %s", what, REDACTOR.text(str(exc).splitlines()[0] if str(exc) else repr(exc)))
        return default


def now_utc() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


FABRIC = ""  # the owner of resources no application claims (compile_fabric output)


def app_label(app: str) -> str:
    return app or "(fabric)"


def write_inventory(state_dir: str, files: Mapping[str, Any], name: str) -> str:
    """The revision's inventory file `name` written under `state_dir` (0600), its path."""
    data = files.get(name, b"")
    data = data if isinstance(data, bytes) else b""
    # Named by content, not by commit: an unchanged inventory keeps its path, so the engine,
    # its drivers and their SSH control masters (one dir per inventory path) are reused.
    digest = hashlib.blake2b(data, digest_size=6).hexdigest()
    p = Path(state_dir) / f"inventory-{digest}.yml"
    if not p.exists():
        # created 0600 from the start (it may hold passwords): never readable, not even briefly
        tmp = p.with_suffix(f".{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, p)
    return str(p.resolve())
