"""Prometheus metrics fed by engine events (never by drivers).

Contract: `Metrics()` owns its own `CollectorRegistry`; `metrics.observer(event)` is
subscribed to the engine's bus. Labels are application names, layers, triggers and phases
only (validated identifiers): no spec, message or secret ever becomes a label or value.
Exposed series:
  reconciler_reconcile_duration_seconds{trigger}          histogram of run durations
  reconciler_runs_total{trigger,phase}                    counter
  reconciler_drift_resources{app}                         gauge, drift found by the last run of the app
  reconciler_last_successful_sync_timestamp_seconds{app}  gauge (UNIX time)
  reconciler_apply_failures_total{app,layer}              counter of failed/unreachable target applies
  reconciler_refused_revisions_total                      counter (invalid or unsigned commits)
  reconciler_leader                                       1 while this daemon holds the leader lock
  reconciler_store_pending_events                         events waiting for the database
  reconciler_reachability_violations{app,kind}           findings of the last reachability verification
                                                          (kind: violation, leak, unknown; set by
                                                          service/reachability.py, not by events)
"""
from __future__ import annotations

import threading
from typing import Any, Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from reconciler.events import Event, EventKind
from reconciler.status import Outcome

_OK = {o.value for o in Outcome if o.ok}


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.duration = Histogram("reconciler_reconcile_duration_seconds", "Duration of reconcile runs",
                                  ["trigger"], registry=r,
                                  buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300))
        self.runs = Counter("reconciler_runs_total", "Reconcile runs by trigger and phase", ["trigger", "phase"],
                            registry=r)
        self.drift = Gauge("reconciler_drift_resources", "Resources drifted from the intents (last run)", ["app"],
                           registry=r)
        self.last_sync = Gauge("reconciler_last_successful_sync_timestamp_seconds",
                               "Last successful sync per application (UNIX time)", ["app"], registry=r)
        self.apply_failures = Counter("reconciler_apply_failures_total", "Failed target applies", ["app", "layer"],
                                      registry=r)
        self.refused = Counter("reconciler_refused_revisions_total", "Revisions refused (invalid or unsigned)",
                               registry=r)
        self.leader = Gauge("reconciler_leader", "1 while this daemon is the leader", registry=r)
        self.pending = Gauge("reconciler_store_pending_events", "Events waiting for the database", registry=r)
        self.reachability = Gauge("reconciler_reachability_violations",
                                  "Reachability findings per application and kind (last verification)",
                                  ["app", "kind"], registry=r)
        self._runs: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        # Pre-rendered exposition text appended to every scrape (reconciler.telemetry's per-app
        # series: rendered once per collection round, not per scrape)
        self.extra: list[Callable[[], bytes]] = []

    def observer(self, ev: Event) -> None:
        with self._lock:
            if ev.kind is EventKind.RUN_STARTED:
                self._runs[ev.run_id] = {"trigger": ev.message or "unknown", "dry_run": bool(ev.data.get("dry_run")),
                                         "failed": set()}
            elif ev.kind is EventKind.RESOURCE_RESULT and ev.outcome is not None and not ev.outcome.ok:
                self._runs.get(ev.run_id, {}).get("failed", set()).add(ev.app)
            elif ev.kind is EventKind.RUN_FINISHED:
                ctx = self._runs.pop(ev.run_id, {"trigger": "unknown", "dry_run": False, "failed": set()})
                d = ev.data
                trig = ctx["trigger"]
                self.duration.labels(trig).observe(float(d.get("duration_s", 0.0)))
                self.runs.labels(trig, str(d.get("phase", ""))).inc()
                for app in d.get("apps") or []:
                    if not app:
                        continue
                    bad = [t for t in d.get("targets", []) if app in t.get("apps", []) and t.get("outcome") not in _OK]
                    if ctx["dry_run"]:
                        self.drift.labels(app).set(int((d.get("drift") or {}).get(app, 0)))
                        continue
                    for t in bad:
                        self.apply_failures.labels(app, t.get("layer", "")).inc()
                    if not bad and app not in ctx["failed"]:
                        self.drift.labels(app).set(0)
                        self.last_sync.labels(app).set(ev.ts)
                    else:
                        self.drift.labels(app).set(int((d.get("drift") or {}).get(app, 0)))

    def render(self) -> bytes:
        return generate_latest(self.registry) + b"".join(f() for f in self.extra)
