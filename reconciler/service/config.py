"""Pieces of the daemon that hold no scheduling state: its configuration and the loaded
revision.

Contract: `DaemonConfig` is everything `reconciler serve` is told; `Loaded` is one
validated, compiled revision with its inventory path and targets; `safe(fn, default)` runs a
store call, logging instead of raising. Drivers come from `reconciler.drivers.registry`.
"""
from __future__ import annotations

import datetime as dt
import logging
import os
from dataclasses import dataclass, field
from typing import Any, Callable

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
