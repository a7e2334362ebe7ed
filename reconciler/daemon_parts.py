"""Pieces of the daemon that hold no scheduling state: its configuration, the loaded
revision, driver construction, and the structured log of engine events.

Contract: `build_drivers(cfg, inventory_path, publish)` returns `{Layer: Driver}` for the
layers `cfg.layers` allows (all by default): a `--driver-factory MODULE:FUNC` (tests), the
snapshot driver for `--observed`, else the registry's driver of each layer whose module
exists. `log_event` turns run, drift and failed-apply events into JSON log lines (through
the redacting formatter). `safe(fn, default)` runs a store call, logging instead of raising.
"""
from __future__ import annotations

import datetime as dt
import importlib
import logging
import os
from dataclasses import dataclass, field
from typing import Any, Callable

from .events import Event, EventKind
from .model import Layer
from .redact import REDACTOR

log = logging.getLogger("reconciler.daemon")


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
    observed: str | None = None           # snapshot file: offline snapshot drivers
    driver_factory: str | None = None     # "module:function" (layer=..., path=..., ...)
    attempts: int = 1
    timeout_s: float = 60.0
    keyring: str | None = None            # signed-commit policy: allowed public keys
    layers: tuple[str, ...] = ()          # only these layers (default: every layer with a driver)
    retry_base_s: float = 2.0
    retry_max_s: float = 120.0
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




def build_drivers(cfg: DaemonConfig, inventory_path: str, publish: Callable[[Event], None]) -> dict:
    wanted = set(cfg.layers) or {l.value for l in Layer}
    kw = {"inventory_path": inventory_path, "publish": publish, "timeout_s": cfg.timeout_s}
    if cfg.driver_factory:
        mod, _, fn = cfg.driver_factory.partition(":")
        factory = getattr(importlib.import_module(mod), fn)
        out = {layer: factory(layer=layer, path=cfg.observed, **kw) for layer in Layer if layer.value in wanted}
        return {k: v for k, v in out.items() if v is not None}
    if cfg.observed:
        from .drivers.snapshot import SnapshotDriver
        return {layer: SnapshotDriver(layer, cfg.observed) for layer in Layer if layer.value in wanted}
    from .drivers import REGISTRY
    drivers = {}
    for layer in (l for l in Layer if l.value in wanted):
        if layer.value not in REGISTRY:
            try:
                importlib.import_module(f"reconciler.drivers.{layer.value}")
            except ModuleNotFoundError:
                continue
        if layer.value in REGISTRY:
            drivers[layer] = REGISTRY[layer.value](**kw)
    return drivers


def now_utc() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


_LOGGED = {EventKind.RUN_STARTED, EventKind.RUN_FINISHED, EventKind.DRIFT, EventKind.APPLIED}


def log_event(ev: Event) -> None:
    if ev.kind not in _LOGGED:
        return
    if ev.kind is EventKind.APPLIED and (ev.outcome is None or ev.outcome.ok):
        return
    ctx: dict[str, Any] = {"event": ev.kind.value, "run_id": ev.run_id}
    if ev.app:
        ctx["app"] = ev.app
    if ev.target:
        ctx["target"] = f"{ev.layer.value if ev.layer else ''}/{ev.target}"
    if ev.key:
        ctx["key"] = ev.key
    if ev.outcome is not None:
        ctx["outcome"] = ev.outcome.value
    if ev.kind is EventKind.RUN_FINISHED:
        ctx.update({k: ev.data.get(k) for k in ("phase", "duration_s", "revision", "converged", "writes")})
    if ev.kind is EventKind.RUN_STARTED:
        ctx.update({"trigger": ev.message, "revision": ev.data.get("revision"), "dry_run": ev.data.get("dry_run")})
    level = (logging.WARNING if ev.kind is EventKind.APPLIED else
             logging.DEBUG if ev.kind is EventKind.DRIFT else logging.INFO)
    log.log(level, "%s%s", ev.kind.value, f": {ev.message}" if ev.message and ev.kind is EventKind.APPLIED else "",
            extra={"ctx": ctx})
