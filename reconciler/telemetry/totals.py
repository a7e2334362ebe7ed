"""Monotonic totals per series across counter resets, the way Prometheus expects.

Contract: `Totals.add(sample)` folds one round in. Each device counter (layer, target, key and
labels) keeps its last raw value and a running total: a raw value lower than the last one means
the counter was recreated (its rule or flow replaced by an apply, a set element expired), so
the new raw value is all new; otherwise the difference is added. Totals never decrease, and a
counter that disappears keeps its total (its series stays, frozen). A target whose last round
could not be read is `down`: its series are withheld from export (absent, i.e. unknown), never
shown as zero. `series()` sums totals by exported labels; `rates()` gives per-series rates
between the last two rounds. Thread-safe (one writer, many readers).
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field

from reconciler.telemetry.model import Labels, Sample, Unknown

SeriesKey = tuple[Labels, str, str]          # labels, layer, target


@dataclass
class _Counter:
    last_packets: int
    last_bytes: int
    packets: int
    bytes: int


@dataclass
class Totals:
    counters: dict[tuple, _Counter] = field(default_factory=dict)
    down: dict[tuple[str, str], str] = field(default_factory=dict)       # (layer, target) -> error
    targets: set[tuple[str, str]] = field(default_factory=set)           # (layer, target) read last round
    unknown: tuple[Unknown, ...] = ()
    resets: int = 0
    version: int = 0                                                     # rounds folded in
    last_ts: float = 0.0
    last_round_s: float = 0.0
    _prev: dict[SeriesKey, tuple[int, int]] = field(default_factory=dict)
    _prev_ts: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, sample: Sample) -> None:
        with self._lock:
            self._prev, self._prev_ts = self._series(), self.last_ts
            for p in sample.points:
                k = (p.labels, p.layer, p.target, p.key)
                c = self.counters.get(k)
                if c is None:
                    self.counters[k] = _Counter(p.packets, p.bytes, p.packets, p.bytes)
                    continue
                if p.packets < c.last_packets or p.bytes < c.last_bytes:
                    self.resets += 1
                    c.packets, c.bytes = c.packets + p.packets, c.bytes + p.bytes
                else:
                    c.packets += p.packets - c.last_packets
                    c.bytes += p.bytes - c.last_bytes
                c.last_packets, c.last_bytes = p.packets, p.bytes
            self.down = {(r.layer, r.target): r.error for r in sample.targets if not r.ok}
            self.targets = {(r.layer, r.target) for r in sample.targets}
            self.unknown = sample.unknown
            self.last_ts, self.last_round_s = sample.ts, sample.duration_s
            self.version += 1

    def _series(self) -> dict[SeriesKey, tuple[int, int]]:
        out: dict[SeriesKey, tuple[int, int]] = {}
        for (labels, layer, target, _key), c in self.counters.items():
            if (layer, target) in self.down:
                continue
            p, b = out.get((labels, layer, target), (0, 0))
            out[(labels, layer, target)] = (p + c.packets, b + c.bytes)
        return out

    def series(self) -> dict[SeriesKey, tuple[int, int]]:
        """(labels, layer, target) -> (packets, bytes) totals; targets down are left out."""
        with self._lock:
            return self._series()

    def rates(self) -> dict[SeriesKey, tuple[float, float]]:
        """Per-second packet and byte rates between the last two rounds (series in both)."""
        with self._lock:
            now, dt = self._series(), self.last_ts - self._prev_ts
            if not self._prev or dt <= 0:
                return {}
            return {k: ((v[0] - self._prev[k][0]) / dt, (v[1] - self._prev[k][1]) / dt)
                    for k, v in now.items() if k in self._prev}
