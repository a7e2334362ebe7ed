"""Sidecar layer: the workloads' gRPC call counts, status codes and latency, per app and service.

Contract:
- `rpc_index(desired)` maps (xDS node, dialed target) to (app, service) from the compiled desired
  state: a client-side `listener` resource named `S.A:P` (compile/sidecar.target_authority) on a
  node means that node's workload dials `xds:///S.A:P`, which is service S of app A (the resource's
  owner). Targets the desired state does not name are never attributed.
- `RpcCollector.read(targets)` asks each sidecar target's workload (its admin address, where the
  sidecar driver reads CSDS: drivers/sidecar.csds_address) for `/netintent.lab.Admin/Stats`
  (labs/workloads/agent.py), in parallel, one round trip each; never raises for a target: an
  unreadable or malformed answer is a not-ok `RpcRead`.
- `RpcTotals.add(reads, index)` folds a round in, reset-safe: a workload's counts restart when its
  `started` changes (a restart) or any count decreases; totals then add the new values in full and
  never decrease. A target whose last read failed is down: its series are withheld (unknown, never 0).
- `RpcTotals.families()` yields `netintent_app_rpc_total{app,service,code,target}` (counter) and
  `netintent_app_rpc_latency_seconds{app,service,target}` (histogram, the workload's fixed buckets):
  the `rpc` hook of export.TelemetryExport. `target` is the calling node the calls were counted on.
- `status(reads, index)` gives the round's `TargetRead`s (layer sidecar) and `Unknown` shares for
  the common target_up / unknown_targets gauges.
"""
from __future__ import annotations

import json
import math
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily

from reconciler.model import Layer, Resource
from reconciler.telemetry.model import TargetRead, Unknown

SIDECAR = Layer.SIDECAR.value
STATS = "/netintent.lab.Admin/Stats"
RpcIndex = dict[tuple[str, str], tuple[str, str]]        # (node, "xds:///S.A:P") -> (app, service)
_Hist = tuple[list[int], float]                          # cumulative bucket counts (+Inf last), sum


def rpc_index(desired: Iterable[Resource]) -> RpcIndex:
    out: RpcIndex = {}
    for r in desired:
        if r.key.layer is not Layer.SIDECAR or r.key.kind != "listener" or not r.app:
            continue
        host = r.key.name.rsplit(":", 1)[0]
        suffix = "." + r.app
        if host.endswith(suffix) and len(host) > len(suffix):
            out[(r.key.target, "xds:///" + r.key.name)] = (r.app, host[: -len(suffix)])
    return out


def apps_on(index: RpcIndex) -> dict[str, set[str]]:
    """node -> apps whose calls are counted there (whose share is unknown when it cannot be read)."""
    out: dict[str, set[str]] = {}
    for (node, _t), (app, _s) in index.items():
        out.setdefault(node, set()).add(app)
    return out


@dataclass(frozen=True)
class RpcRead:
    target: str
    ok: bool
    stats: dict = field(default_factory=dict, hash=False, compare=False)
    error: str = ""
    duration_s: float = 0.0


class RpcCollector:
    def __init__(self, timeout_s: float = 3.0, parallel: int = 16) -> None:
        self.timeout_s, self.parallel = timeout_s, parallel

    def read(self, targets: Sequence[Any]) -> list[RpcRead]:
        if not targets:
            return []
        with ThreadPoolExecutor(min(self.parallel, len(targets)), thread_name_prefix="ni-telemetry-rpc") as ex:
            return list(ex.map(self._read_one, targets))

    def _read_one(self, t: Any) -> RpcRead:
        import grpc

        from reconciler.drivers.sidecar import csds_address
        t0 = time.monotonic()
        try:
            with grpc.insecure_channel(csds_address(t)) as ch:
                raw = ch.unary_unary(STATS)(b"{}", timeout=self.timeout_s)
            stats = json.loads(raw)
            _check(stats)
        except grpc.RpcError as e:
            return RpcRead(t.name, False, error=f"{e.code().name}: {e.details()}"[:300],
                           duration_s=time.monotonic() - t0)
        except (ValueError, KeyError, TypeError) as e:
            return RpcRead(t.name, False, error=f"malformed stats: {e}"[:300], duration_s=time.monotonic() - t0)
        return RpcRead(t.name, True, stats, duration_s=time.monotonic() - t0)


def _check(stats: Any) -> None:
    """Shape check of a Stats answer (a workload is not trusted to send well-formed data)."""
    if not isinstance(stats, dict) or not isinstance(stats.get("targets"), dict):
        raise ValueError("no targets")
    nb = len(stats["buckets"]) + 1
    if not all(isinstance(b, (int, float)) for b in stats["buckets"]):
        raise ValueError("bad buckets")
    for v in stats["targets"].values():
        lat = v["latency"]
        if len(lat["counts"]) != nb or not all(isinstance(c, int) and c >= 0 for c in lat["counts"]):
            raise ValueError("bad latency counts")
        if not all(isinstance(c, int) and c >= 0 for c in v["codes"].values()):
            raise ValueError("bad codes")
        float(lat["sum"])


def status(reads: Iterable[RpcRead], index: RpcIndex) -> tuple[list[TargetRead], list[Unknown]]:
    on = apps_on(index)
    treads: list[TargetRead] = []
    unknown: list[Unknown] = []
    for r in reads:
        treads.append(TargetRead(SIDECAR, r.target, r.ok, error=r.error, duration_s=r.duration_s))
        if not r.ok:
            unknown.extend(Unknown(app, SIDECAR, r.target, r.error) for app in sorted(on.get(r.target, ())))
    return treads, unknown


@dataclass
class _Source:
    """One (node, dialed target)'s last raw counts and running totals."""

    started: float = -1.0
    last_codes: dict[str, int] = field(default_factory=dict)
    last_hist: list[int] = field(default_factory=list)
    last_sum: float = 0.0
    codes: dict[str, int] = field(default_factory=dict)
    hist: list[int] = field(default_factory=list)
    sum: float = 0.0


@dataclass
class RpcTotals:
    sources: dict[tuple[str, str], tuple[tuple[str, str], _Source]] = field(default_factory=dict)
    buckets: tuple[float, ...] = ()
    down: set[str] = field(default_factory=set)
    resets: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, reads: Iterable[RpcRead], index: RpcIndex) -> None:
        with self._lock:
            reads = list(reads)
            self.down = {r.target for r in reads if not r.ok}
            for r in (r for r in reads if r.ok):
                buckets = tuple(float(b) for b in r.stats["buckets"])
                if self.buckets and buckets != self.buckets:
                    self.down.add(r.target)     # not summable with what we hold: unknown rather than wrong
                    continue
                self.buckets = buckets
                for target, v in r.stats["targets"].items():
                    owner = index.get((r.target, target))
                    if owner is not None:
                        self._fold(r.target, target, owner, float(r.stats.get("started", 0)), v)

    def _fold(self, node: str, target: str, owner: tuple[str, str], started: float, v: dict) -> None:
        src = self.sources.setdefault((node, target), (owner, _Source()))[1]
        codes = {str(k): int(n) for k, n in v["codes"].items()}
        hist, total = [int(c) for c in v["latency"]["counts"]], float(v["latency"]["sum"])
        fresh = src.started < 0
        reset = not fresh and (started != src.started or any(n < src.last_codes.get(k, 0) for k, n in codes.items())
                               or any(c < p for c, p in zip(hist, src.last_hist)) or total < src.last_sum)
        if reset:
            self.resets += 1
        base_codes = {} if (fresh or reset) else src.last_codes
        base_hist = [0] * len(hist) if (fresh or reset or not src.last_hist) else src.last_hist
        base_sum = 0.0 if (fresh or reset) else src.last_sum
        for k, n in codes.items():
            src.codes[k] = src.codes.get(k, 0) + n - base_codes.get(k, 0)
        src.hist = [a + c - b for a, c, b in zip(src.hist or [0] * len(hist), hist, base_hist)]
        src.sum += total - base_sum
        src.started, src.last_codes, src.last_hist, src.last_sum = started, codes, hist, total

    def series(self) -> tuple[dict[tuple[str, str, str, str], int], dict[tuple[str, str, str], _Hist]]:
        """({(app, service, code, node): calls}, {(app, service, node): (cumulative bucket counts, sum)});
        nodes down are left out."""
        with self._lock:
            calls: dict[tuple[str, str, str, str], int] = {}
            hists: dict[tuple[str, str, str], _Hist] = {}
            for (node, _t), ((app, svc), src) in self.sources.items():
                if node in self.down:
                    continue
                for code, n in src.codes.items():
                    calls[(app, svc, code, node)] = calls.get((app, svc, code, node), 0) + n
                h, s = hists.get((app, svc, node), ([0] * len(src.hist), 0.0))
                hists[(app, svc, node)] = ([a + b for a, b in zip(h, src.hist)], s + src.sum)
            return calls, hists

    def families(self) -> Iterable[Any]:
        calls, hists = self.series()
        total = CounterMetricFamily("netintent_app_rpc", "gRPC calls to an application's service made by the "
                                    "workloads of a node, by final status code", labels=["app", "service", "code",
                                                                                          "target"])
        for (app, svc, code, node), n in sorted(calls.items()):
            total.add_metric([app, svc, code, node], n)
        yield total
        lat = HistogramMetricFamily("netintent_app_rpc_latency_seconds", "Client-side latency of gRPC calls to an "
                                    "application's service, from the workloads of a node",
                                    labels=["app", "service", "target"])
        bounds = [_le(b) for b in self.buckets] + ["+Inf"]
        for (app, svc, node), (h, s) in sorted(hists.items()):
            lat.add_metric([app, svc, node], list(zip(bounds, [float(c) for c in h])), s)
        yield lat


def _le(b: float) -> str:
    return str(b) if not math.isinf(b) else "+Inf"


def rpc_round(collector: RpcCollector, targets: Sequence[Any], index: RpcIndex, totals: RpcTotals,
              sample: Any) -> Any:
    """Read the sidecar targets with calls to attribute, fold them into `totals`, and return `sample`
    (the other layers' round) with their target status and unknown shares added."""
    from dataclasses import replace
    on = apps_on(index)
    reads = collector.read([t for t in targets if t.name in on])
    totals.add(reads, index)
    treads, unknown = status(reads, index)
    return replace(sample, targets=tuple(sample.targets) + tuple(treads),
                   unknown=tuple(sample.unknown) + tuple(unknown))
