"""Telemetry for the TUI: per-application traffic and drops, from the daemon's /metrics.

Contract: `TelemetryFeed(fetch, min_interval_s)`; `fetch()` returns Prometheus exposition text
(`http_fetch(base_url)`: GET <daemon>/metrics, 1 s timeout) or raises. `poll(now)` fetches at
most once per `min_interval_s` and keeps the last `HISTORY` scrapes (a failed fetch keeps the
old ones and sets `error`). Derived, per application (rates between scrapes; None while only one
scrape is known, never a made-up 0):
  `rates()`        {app: (accepted packets/s at the host layer, policy drops/s over all layers,
                   some share unknown)}; a rate is None when no target of it could be read
  `traffic(app)`   `AppTraffic`: per service rates and their history (sparklines), the refused
                   sources (source app, service, port, refusing layer and target, total, rate)
                   with the resource the refusing rule or flow belongs to, RPC calls by code (summed
                   over calling nodes), mean RPC latency per service, and the targets whose share
                   is unknown.
Only label values of the netintent_* series are used; nothing else of the scrape is kept.
"""
from __future__ import annotations

import collections
import urllib.request
from dataclasses import dataclass
from typing import Callable

HISTORY = 30
Snapshot = dict[tuple, float]


@dataclass(frozen=True)
class ServiceTraffic:
    service: str
    pps: float | None
    drops_ps: float | None
    pps_history: tuple[float, ...] = ()
    drops_history: tuple[float, ...] = ()


@dataclass(frozen=True)
class RefusedSource:
    source_app: str
    service: str
    port: str
    layer: str
    target: str
    packets: int
    rate: float | None
    resource: str          # the resource tree key of the table (host) or the target (hypervisor)


@dataclass(frozen=True)
class AppTraffic:
    app: str
    services: tuple[ServiceTraffic, ...]
    refused: tuple[RefusedSource, ...]
    rpc: tuple[tuple[str, str, int], ...]      # (service, code, calls), summed over the calling nodes
    unknown: tuple[str, ...]                   # "layer (n targets)"
    rpc_latency: tuple[tuple[str, float, int], ...] = ()   # (service, mean seconds, calls) since start


def http_fetch(base_url: str) -> Callable[[], str]:
    url = base_url.rstrip("/") + "/metrics"

    def fetch() -> str:
        with urllib.request.urlopen(url, timeout=1.0) as r:   # the operator's own daemon URL
            return r.read().decode("utf-8", "replace")
    return fetch


def parse(text: str) -> Snapshot:
    """(metric, app, service, port, verdict/source_app/code, layer, target) -> value, netintent_* only."""
    from prometheus_client.parser import text_string_to_metric_families
    out: Snapshot = {}
    for fam in text_string_to_metric_families(text):
        if not fam.name.startswith("netintent_"):
            continue
        for s in fam.samples:
            lab = s.labels
            key = (s.name, lab.get("app", ""), lab.get("service", ""), lab.get("port", ""),
                   lab.get("verdict") or lab.get("source_app") or lab.get("code", ""), lab.get("layer", ""),
                   lab.get("target", ""))
            out[key] = float(s.value)
    return out


def with_traffic(app: object, rows: list) -> list:
    """`rows` (AppRow) with their `traffic` rates when the TUI has a feed (`app.telemetry`)."""
    from dataclasses import replace
    feed = getattr(app, "telemetry", None)
    if feed is None:
        return rows
    feed.poll(getattr(app, "now")())
    rates = feed.rates()
    return [replace(r, traffic=rates.get(r.name)) for r in rows]


class TelemetryFeed:
    def __init__(self, fetch: Callable[[], str], min_interval_s: float = 5.0) -> None:
        self.fetch, self.min_interval_s = fetch, min_interval_s
        self.history: collections.deque[tuple[float, Snapshot]] = collections.deque(maxlen=HISTORY)
        self.error = ""
        self._last_try = float("-inf")

    def poll(self, now: float) -> None:
        if now - self._last_try < self.min_interval_s:
            return
        self._last_try = now
        try:
            snap = parse(self.fetch())
        except Exception as exc:   # daemon away or not serving telemetry: keep what we had
            self.error = f"{type(exc).__name__}: {exc}"[:200]
            return
        self.error = ""
        self.history.append((now, snap))

    def _sum(self, snap: Snapshot, metric: str, app: str, **where: str) -> float:
        idx = {"service": 2, "port": 3, "tag": 4, "layer": 5, "target": 6}
        return sum(v for k, v in snap.items() if k[0] == metric and k[1] == app
                   and all(k[idx[f]] == want for f, want in where.items()))

    def _series(self, app: str, metric: str, **where: str) -> list[float]:
        """Per-second rates between consecutive scrapes (negative differences are counter resets)."""
        out = []
        pts = list(self.history)
        for (t0, a), (t1, b) in zip(pts, pts[1:]):
            d = self._sum(b, metric, app, **where) - self._sum(a, metric, app, **where)
            out.append(max(d, 0.0) / (t1 - t0) if t1 > t0 else 0.0)
        return out

    def apps(self) -> set[str]:
        return {k[1] for _, snap in list(self.history)[-1:] for k in snap if k[1]}

    def rates(self) -> dict[str, tuple[float | None, float | None, bool]]:
        out: dict[str, tuple[float | None, float | None, bool]] = {}
        last = self.history[-1][1] if self.history else {}
        known = {(k[0], k[1]) for k in last}
        unknown = {k[1] for k, v in last.items() if k[0] == "netintent_app_telemetry_unknown_targets" and v}
        for app in self.apps():
            acc = self._series(app, "netintent_app_packets_total", tag="accept", layer="host")
            drops = self._series(app, "netintent_app_policy_drops_total")
            has = ("netintent_app_packets_total", app) in known
            out[app] = (acc[-1] if acc and has else None, drops[-1] if drops and has else None, app in unknown)
        return out

    def traffic(self, app: str) -> AppTraffic | None:
        if not self.history or app not in self.apps():
            return None
        last = self.history[-1][1]
        services = sorted({k[2] for k in last if k[1] == app and k[2]})
        svc_rows = []
        for svc in services:
            acc = self._series(app, "netintent_app_packets_total", service=svc, tag="accept", layer="host")
            drops = self._series(app, "netintent_app_policy_drops_total", service=svc)
            svc_rows.append(ServiceTraffic(svc, acc[-1] if acc else None, drops[-1] if drops else None,
                                           tuple(acc), tuple(drops)))
        return AppTraffic(app, tuple(svc_rows), self._refused(app, last), self._rpc(app, last),
                          tuple(f"{k[5]} ({int(v)} target(s))" for k, v in sorted(last.items())
                                if k[0] == "netintent_app_telemetry_unknown_targets" and k[1] == app and v),
                          self._rpc_latency(app, last))

    def _refused(self, app: str, last: Snapshot) -> tuple[RefusedSource, ...]:
        prev = self.history[-2] if len(self.history) > 1 else None
        rows = []
        for k, v in last.items():
            if k[0] != "netintent_app_policy_drops_total" or k[1] != app:
                continue
            rate = None
            if prev is not None and self.history[-1][0] > prev[0]:
                rate = max(v - prev[1].get(k, 0.0), 0.0) / (self.history[-1][0] - prev[0])
            table = f"netintent_{app.replace('-', '_')}"
            resource = f"host/{k[6]}/nft-table/{table}" if k[5] == "host" else f"{k[5]}/{k[6]}"
            rows.append(RefusedSource(k[4], k[2], k[3], k[5], k[6], int(v), rate, resource))
        rows.sort(key=lambda r: (-(r.rate or 0.0), -r.packets, r.source_app))
        return tuple(rows[:20])

    def _rpc(self, app: str, last: Snapshot) -> tuple[tuple[str, str, int], ...]:
        calls: dict[tuple[str, str], float] = collections.Counter()
        for k, v in last.items():
            if k[0] == "netintent_app_rpc_total" and k[1] == app:
                calls[(k[2], k[4])] += v
        return tuple(sorted((svc, code, int(n)) for (svc, code), n in calls.items()))

    def _rpc_latency(self, app: str, last: Snapshot) -> tuple[tuple[str, float, int], ...]:
        """Mean latency per service from the histogram's _sum and _count (the buckets are not kept)."""
        total: dict[str, float] = collections.Counter()
        count: dict[str, float] = collections.Counter()
        for k, v in last.items():
            if k[1] == app and k[0] == "netintent_app_rpc_latency_seconds_sum":
                total[k[2]] += v
            elif k[1] == app and k[0] == "netintent_app_rpc_latency_seconds_count":
                count[k[2]] += v
        return tuple((svc, total[svc] / n, int(n)) for svc, n in sorted(count.items()) if n)
