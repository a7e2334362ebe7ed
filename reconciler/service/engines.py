"""The daemon's engine: built once per inventory, rebuilt when a layer's driver could not load.

Contract: `DaemonEngines(cfg, bus, store, reach, fence)`. `engine_for(loaded, trigger, apps)` ->
the Engine over the drivers of `loaded`'s inventory (the registry's `drivers_for`, each behind
the shard fence when `fence` is given), made once per inventory path and tapped by the
reachability verifier; None when a layer's driver cannot be loaded (`DriverLoadError`, e.g. grpc
not installed). That failure is a FAILED run in the store naming what is missing (a run someone
asked for always gets one; polls and scans record the same error once), logged, and kept in
`error` (healthz `drivers`) until drivers load again. Nothing is cached after a failure, so the
next sync tries again. Never raises for a driver that cannot load.
"""
from __future__ import annotations

import logging
import uuid
from typing import Any

from reconciler.drivers.registry import DriverLoadError, drivers_for
from reconciler.engine import Engine
from reconciler.redact import REDACTOR
from reconciler.service.config import DaemonConfig, Loaded
from reconciler.service.config import safe as _safe
from reconciler.service.shard_fence import fence_drivers
from reconciler.status import Phase

log = logging.getLogger("reconciler.service.daemon")

_PERIODIC = ("poll", "drift-scan", "retry", "self-heal")   # triggers nobody waits on an answer for


class DaemonEngines:
    def __init__(self, cfg: DaemonConfig, bus: Any, store: Any, reach: Any, fence: Any = None) -> None:
        self.cfg, self.bus, self.store, self.reach, self.fence = cfg, bus, store, reach, fence
        self.error = ""   # why the drivers could not be loaded ("" when they could)
        self._engine: Engine | None = None
        self._inventory: str | None = None

    def engine_for(self, loaded: Loaded, trigger: str, apps: list[str] | None = None) -> Engine | None:
        if self._engine is None or self._inventory != loaded.inventory_path:
            try:
                drivers = self._drivers(loaded.inventory_path, loaded.targets)
            except DriverLoadError as exc:
                self._failed(str(exc), loaded.revision, trigger, apps)
                return None
            self._engine = Engine(drivers, self.bus, attempts=self.cfg.attempts, publish_state=True)
            self.reach.tap(self._engine)
            self._inventory = loaded.inventory_path
        if self.error:
            log.info("drivers loaded again; the earlier error is cleared")
            self.error = ""
        return self._engine

    def _failed(self, msg: str, revision: str, trigger: str, apps: list[str] | None) -> None:
        msg = REDACTOR.text(msg)
        repeated = msg == self.error
        self.error = msg
        if repeated and trigger in _PERIODIC:
            return
        log.error("drivers cannot be loaded: %s; nothing applied, retried at the next sync", msg,
                  extra={"ctx": {"revision": revision, "trigger": trigger}})
        _safe(lambda: self.store.record_run(uuid.uuid4().hex[:12], revision=revision, trigger=trigger,
                                            phase=Phase.FAILED, error=f"drivers cannot be loaded: {msg}",
                                            apps=apps or ()))

    def _drivers(self, inventory_path: str, targets: dict) -> dict:
        settings = {"inventory_path": inventory_path, "publish": self.bus.publish, "timeout_s": self.cfg.timeout_s}
        drivers = drivers_for(targets, settings, layers=self.cfg.layers, observed=self.cfg.observed,
                              factory=self.cfg.driver_factory)
        return drivers if self.fence is None else fence_drivers(drivers, self.fence)
