"""The daemon's telemetry: collection rounds on their own schedule, never blocking a sync.

Contract: `TelemetryService(current, interval, extra)` runs one thread (not the scheduler's pool,
and no lock shared with syncs): every `interval(loaded)` seconds it reads the devices of the
revision `current()` returns (the last loaded one; nothing while there is none), through its own
Collector (own ssh shells, own switch session pool), and folds the round into `totals`, whose
exposition text (export.py, rendered once a round) is appended to `extra` (Metrics.extra). The
attribution index is rebuilt when the revision changes. With `sidecar` (default; off when the
daemon's layers exclude it) each round also reads the sidecar targets' gRPC call stats (rpc.py).
An interval <= 0 disables collection.
`start()`/`stop()`; a round in progress finishes on its own (bounded by the collector's timeout) and
the thread then ends. Errors are logged and the round is skipped; nothing raises out.
"""
from __future__ import annotations

import logging
import threading
from typing import Any, Callable

from reconciler.model import Layer
from reconciler.telemetry.export import TelemetryExport
from reconciler.telemetry.index import Index, build_index
from reconciler.telemetry.rpc import RpcCollector, RpcIndex, RpcTotals, rpc_index, rpc_round
from reconciler.telemetry.totals import Totals

log = logging.getLogger("reconciler.telemetry")
LAYERS = (Layer.HOST, Layer.HYPERVISOR, Layer.SWITCH)


def targets_to_read(targets: dict, ix: Index, layers: tuple[Layer, ...] = LAYERS) -> dict[Layer, list]:
    """The targets of `layers` with an app's counters on them."""
    return {layer: [t for t in targets.get(layer, ()) if (layer.value, t.name) in ix.apps_on] for layer in layers}


class TelemetryService:
    def __init__(self, current: Callable[[], Any], interval: Callable[[Any], float], extra: list | None = None,
                 timeout_s: float = 30.0, layers: tuple[Layer, ...] = LAYERS, sidecar: bool = True) -> None:
        self.current, self.interval, self.timeout_s, self.layers = current, interval, timeout_s, layers
        self.totals = Totals()
        self.rpc = RpcTotals() if sidecar else None
        self._rpc_collector = RpcCollector()
        self.export = TelemetryExport(self.totals, self.rpc.families if self.rpc is not None else None)
        if extra is not None:
            extra.append(self.export.text)   # Metrics.extra: rendered once a round, not per scrape
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._index: tuple[str, Index, RpcIndex] | None = None
        self._collector: Any = None
        self.rounds = 0

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="ni-telemetry", daemon=True)
        self._thread.start()

    def stop(self, wait_s: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(wait_s)
        if self._collector is not None:
            self._collector.close()

    def _loop(self) -> None:
        while not self._stop.is_set():
            loaded = self.current()
            iv = float(self.interval(loaded))
            if iv <= 0:
                return
            if loaded is not None:
                try:
                    self.round(loaded)
                except Exception as exc:   # a bug must not end the loop: log it, try next round
                    log.warning("telemetry round failed: %s: %s", type(exc).__name__, str(exc)[:300])
            self._stop.wait(iv)

    def round(self, loaded: Any) -> None:
        from reconciler.telemetry.collect import Collector
        if self._index is None or self._index[0] != loaded.revision:
            desired = list(loaded.desired)
            self._index = (loaded.revision, build_index(loaded.repo, desired), rpc_index(desired))
        ix = self._index[1]
        if self._collector is None or self._collector.settings.inventory_path != str(loaded.inventory_path):
            if self._collector is not None:
                self._collector.close()
            self._collector = Collector(loaded.inventory_path, timeout_s=self.timeout_s)
        sample = self._collector.round(targets_to_read(loaded.targets, ix, self.layers), ix)
        if self.rpc is not None:   # sidecar: the workloads' call stats (rpc.py), folded in before the totals
            sample = rpc_round(self._rpc_collector, loaded.targets.get(Layer.SIDECAR, ()), self._index[2],
                               self.rpc, sample)
        self.totals.add(sample)
        self.export.text()          # render now, in this thread: scrapes only copy it
        self.rounds += 1


def for_daemon(daemon: Any) -> TelemetryService:
    """The daemon's service: interval from `--telemetry-interval` or the repo's sync.telemetry_interval_s;
    off for snapshot or factory drivers (no devices to read)."""
    cfg = daemon.cfg

    def interval(loaded: Any) -> float:
        if cfg.observed or cfg.driver_factory:
            return 0.0
        if cfg.telemetry_interval_s is not None:
            return float(cfg.telemetry_interval_s)
        return float(loaded.repo.config.sync.telemetry_interval_s) if loaded is not None else 5.0

    layers = tuple(l for l in LAYERS if not cfg.layers or l.value in cfg.layers)
    sidecar = not cfg.layers or Layer.SIDECAR.value in cfg.layers
    return TelemetryService(lambda: daemon.current, interval, daemon.metrics.extra, layers=layers, sidecar=sidecar)
