"""Prometheus series of the telemetry totals (a custom collector over `Totals`).

Contract: `TelemetryExport(totals)` is registered on a CollectorRegistry (service/metrics.py's);
each scrape reads the totals once. Series, every one labelled by app, layer and target:
  netintent_app_packets_total{app,service,port,verdict,layer,target}   counter
  netintent_app_bytes_total{app,service,port,verdict,layer,target}     counter
  netintent_app_policy_drops_total{app,service,port,layer,source_app,target}  counter (packets)
  netintent_app_rpc_total{app,service,code,target}, netintent_app_rpc_latency_seconds{app,service,target}
      (histogram) when a sidecar source is attached (`rpc`: a callable giving its families, rpc.py's
      RpcTotals.families; folded in before the round's totals so the cached text includes them)
  netintent_telemetry_target_up{layer,target}           1 read, 0 unreadable (its series are absent)
  netintent_app_telemetry_unknown_targets{app,layer}    targets of the app whose share is unknown
  netintent_telemetry_round_seconds, netintent_telemetry_counter_resets_total
Label values are names the intents and inventory validated; a target that cannot be read has no
series (unknown), never zeros, and the totals survive counter resets (totals.py).
`text()` is the same series as exposition text, rendered once per collection round and cached
(totals change only once a round): a scrape at 10,000 apps copies bytes instead of formatting
hundreds of thousands of samples; the daemon serves it after service/metrics.py's own series.
"""
from __future__ import annotations

import functools
import threading
from collections import Counter
from typing import Any, Callable, Iterable

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from reconciler.telemetry.model import Kind, Labels
from reconciler.telemetry.totals import Totals

TRAFFIC_LABELS = ["app", "service", "port", "verdict", "layer", "target"]
DROP_LABELS = ["app", "service", "port", "layer", "source_app", "target"]


class TelemetryExport:
    def __init__(self, totals: Totals, rpc: Callable[[], Iterable[Any]] | None = None) -> None:
        self.totals, self.rpc = totals, rpc
        self._text: tuple[int, bytes] = (-1, b"")
        self._lock = threading.Lock()

    def text(self) -> bytes:
        """The telemetry series as Prometheus exposition text (cached per collection round)."""
        with self._lock:
            if self._text[0] != self.totals.version:
                self._text = (self.totals.version, render_text(self.totals) + self._rpc_text())
            return self._text[1]

    def collect(self) -> Iterable[Any]:
        packets = CounterMetricFamily("netintent_app_packets", "Packets counted for an application by its layer's "
                                      "devices, by verdict", labels=TRAFFIC_LABELS)
        nbytes = CounterMetricFamily("netintent_app_bytes", "Bytes counted for an application by its layer's "
                                     "devices, by verdict", labels=TRAFFIC_LABELS)
        drops = CounterMetricFamily("netintent_app_policy_drops", "Packets to an application refused by policy, "
                                    "by the layer that refused them and the refused source app", labels=DROP_LABELS)
        for (lab, layer, target), (p, b) in self.totals.series().items():
            if lab.kind is Kind.DROP:
                drops.add_metric([lab.app, lab.service, lab.port, layer, lab.source_app, target], p)
            else:
                values = [lab.app, lab.service, lab.port, lab.verdict, layer, target]
                packets.add_metric(values, p)
                nbytes.add_metric(values, b)
        yield packets
        yield nbytes
        yield drops
        yield from self._status()
        if self.rpc is not None:
            yield from self.rpc()

    def _rpc_text(self) -> bytes:
        if self.rpc is None:
            return b""
        from prometheus_client import CollectorRegistry, generate_latest
        reg = CollectorRegistry()
        reg.register(_Families(self.rpc))
        return generate_latest(reg)

    def _status(self) -> Iterable[Any]:
        t = self.totals
        up = GaugeMetricFamily("netintent_telemetry_target_up", "1 when the target's counters were read in the last "
                               "round, 0 when not (its series are then absent: unknown)", labels=["layer", "target"])
        for read in _last_reads(t):
            up.add_metric(list(read), 0.0 if read in t.down else 1.0)
        yield up
        unknown = GaugeMetricFamily("netintent_app_telemetry_unknown_targets", "Targets of the application whose "
                                    "counters could not be read in the last round", labels=["app", "layer"])
        for (app, layer), n in sorted(Counter((u.app, u.layer) for u in t.unknown).items()):
            unknown.add_metric([app, layer], n)
        yield unknown
        yield GaugeMetricFamily("netintent_telemetry_round_seconds", "Duration of the last collection round",
                                value=t.last_round_s)
        yield CounterMetricFamily("netintent_telemetry_counter_resets", "Device counters seen reset (rule or flow "
                                  "replaced); totals carry on across them", value=t.resets)


def _last_reads(t: Totals) -> list[tuple[str, str]]:
    return sorted(t.targets)


def _esc(v: str) -> str:
    if '"' not in v and "\\" not in v and "\n" not in v:
        return v
    return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


@functools.lru_cache(maxsize=1 << 18)
def _label_text(lab: Labels, layer: str, target: str) -> str:
    if lab.kind is Kind.DROP:
        return (f'{{app="{_esc(lab.app)}",layer="{_esc(layer)}",port="{_esc(lab.port)}",service="{_esc(lab.service)}",'
                f'source_app="{_esc(lab.source_app)}",target="{_esc(target)}"}}')
    return (f'{{app="{_esc(lab.app)}",layer="{_esc(layer)}",port="{_esc(lab.port)}",service="{_esc(lab.service)}",'
            f'target="{_esc(target)}",verdict="{_esc(lab.verdict)}"}}')


def render_text(totals: Totals) -> bytes:
    """Exposition text of what `collect()` yields (the status gauges through prometheus_client)."""
    packets = ["# HELP netintent_app_packets_total Packets counted for an application by its layer's devices, "
               "by verdict\n# TYPE netintent_app_packets_total counter\n"]
    nbytes = ["# HELP netintent_app_bytes_total Bytes counted for an application by its layer's devices, "
              "by verdict\n# TYPE netintent_app_bytes_total counter\n"]
    drops = ["# HELP netintent_app_policy_drops_total Packets to an application refused by policy, by the layer "
             "that refused them and the refused source app\n# TYPE netintent_app_policy_drops_total counter\n"]
    for (lab, layer, target), (p, b) in totals.series().items():
        labels = _label_text(lab, layer, target)
        if lab.kind is Kind.DROP:
            drops.append(f"netintent_app_policy_drops_total{labels} {p}.0\n")
        else:
            packets.append(f"netintent_app_packets_total{labels} {p}.0\n")
            nbytes.append(f"netintent_app_bytes_total{labels} {b}.0\n")
    from prometheus_client import CollectorRegistry, generate_latest
    status = CollectorRegistry()
    status.register(_Status(totals))
    return "".join(packets + nbytes + drops).encode() + generate_latest(status)


class _Status:
    def __init__(self, totals: Totals) -> None:
        self.totals = totals

    def collect(self) -> Iterable[Any]:
        return TelemetryExport(self.totals)._status()


class _Families:
    def __init__(self, families: Callable[[], Iterable[Any]]) -> None:
        self.families = families

    def collect(self) -> Iterable[Any]:
        return self.families()
