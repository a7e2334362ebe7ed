"""Reachability verification in the daemon: after each converge and each drift scan, verify
incrementally from what the engine observed; store the results and export them as metrics.

Contract:
- `Reachability(store, metrics)`; `tap(engine)` records every observation the engine makes
  (its `observe` is wrapped once per engine: the full, unfiltered observation of every target,
  foreign resources included), so a drift scan costs no extra observation.
- `after_run(loaded, report, engine)` is called by the daemon with the run lock held, after
  every run. Targets the run wrote are taken as their drivers read them back right after the
  write (`Engine.readbacks`); a written target without a read-back is observed again, unless
  something observed it since the run ended (the transaction's reachability
  check does: observing twice cost a commit 2-3 s), then the model is updated: a new revision
  (or the first run) verifies everything
  (reconciler.verify.incremental.Incremental), otherwise only the destinations that read a
  target whose observed resources changed are recomputed. A target that could not be
  observed makes its pairs `unknown` with the driver's reason. Results of the applications whose
  findings changed are written to the store (service/store_verify.py) and every application's
  counts to `reconciler_reachability_violations{app,kind}`.
  After a full verification the process's objects are frozen out of the cyclic GC
  (gc.freeze): at 10,000 apps a full collection of the model would stall an update 1-3 s.
  It returns the applications with a leak not seen before (a drift scan heals them like any
  drift; a leak that a heal did not remove is not healed again until it changes).
- Verification needs the switch, hypervisor and host layers; without a driver for each it is
  off (`status()` says why). It never raises into the daemon: a failure is logged and shown
  in `status()`, and the next run starts over from a full verification.
"""
from __future__ import annotations

import gc
import logging
import threading
import time
import weakref
from typing import Any, Mapping

from reconciler.model import Layer, Resource
from reconciler.service import store_verify
from reconciler.service.config import safe
from reconciler.verify.compare import LEAK, UNKNOWN_KIND, VIOLATION
from reconciler.verify.incremental import Incremental
from reconciler.verify.model import L4_LAYERS

log = logging.getLogger("reconciler.service.reachability")
KINDS = {VIOLATION: "violations", LEAK: "leaks", UNKNOWN_KIND: "unknowns"}


class Reachability:
    def __init__(self, store: Any, metrics: Any) -> None:
        self.store, self.metrics = store, metrics
        self.inc: Incremental | None = None
        self.revision = ""
        self.error = ""
        self.last: dict[str, Any] = {}
        self.totals: dict[str, int] = {}
        self._obs: dict[tuple[Layer, str], list[Resource]] = {}
        self._why: dict[tuple[Layer, str], str] = {}
        self._at: dict[tuple[Layer, str], float] = {}   # when each target was last observed (time.time())
        self._tried: dict[str, frozenset] = {}
        self._tapped: weakref.WeakSet = weakref.WeakSet()
        self._lock = threading.Lock()

    # ---- observations ----------------------------------------------------------------
    def tap(self, engine: Any) -> None:
        if engine in self._tapped:
            return
        inner = engine.observe

        def observe(targets, run_id=""):  # noqa: ANN001, ANN202  (Engine.observe's signature)
            state, results = inner(targets, run_id)
            self._record(state, results)
            return state, results

        setattr(engine, "observe", observe)   # an observer of the engine's observations, not a change of them
        self._tapped.add(engine)

    def _record(self, state: Any, results: Mapping[tuple[Layer, str], Any]) -> None:
        grouped: dict[tuple[Layer, str], list[Resource]] = {}
        for r in state.resources.values():
            grouped.setdefault((r.key.layer, r.key.target), []).append(r)
        now = time.time()
        with self._lock:
            for k, o in results.items():
                self._at[k] = now
                if o.ok:
                    self._obs[k] = grouped.get(k, [])
                    self._why.pop(k, None)
                else:
                    self._obs.pop(k, None)
                    self._why[k] = f"{o.outcome.value}: {o.error}".strip(": ")

    def cached(self, loaded: Any) -> tuple[list[Resource], dict[tuple[str, str], str]]:
        """The latest observation of every target of `loaded` (a transaction's baseline for the
        targets its run does not observe), and why the others are not known."""
        return self._observed(loaded, set(loaded.targets))

    def _observed(self, loaded: Any, layers: set[Layer]) -> tuple[list[Resource], dict[tuple[str, str], str]]:
        resources: list[Resource] = []
        unobserved: dict[tuple[str, str], str] = {}
        with self._lock:
            for layer, ts in loaded.targets.items():
                if layer not in layers:
                    continue
                for t in ts:
                    got = self._obs.get((layer, t.name))
                    if got is None:
                        unobserved[(layer.value, t.name)] = self._why.get((layer, t.name), "not observed yet")
                    else:
                        resources += got
        return resources, unobserved

    # ---- after a run -----------------------------------------------------------------
    def after_run(self, loaded: Any, report: Any, engine: Any) -> set[str]:
        try:
            return self._after_run(loaded, report, engine)
        except Exception as exc:   # never break the daemon; start over at the next run
            log.exception("reachability verification failed")
            self.error, self.inc = f"{exc.__class__.__name__}: {exc}", None
            return set()

    def _after_run(self, loaded: Any, report: Any, engine: Any) -> set[str]:
        layers = {layer for layer in engine.drivers if loaded.targets.get(layer)}
        missing = sorted(L4_LAYERS - {layer.value for layer in layers})
        if missing:
            self.error = f"off: no driver for the {', '.join(missing)} layer(s)"
            return set()
        self.tap(engine)
        ended = report.started + report.duration_s
        readbacks = getattr(engine, "readbacks", {})
        with self._lock:
            written = {k for k, t in report.targets.items() if t.writes and self._at.get(k, 0.0) < ended}
            for k in written & readbacks.keys():   # the driver's read-back right after its write
                self._obs[k], self._at[k] = list(readbacks[k]), time.time()
                self._why.pop(k, None)
            written -= readbacks.keys()
        if written and not report.dry_run:
            engine.observe({layer: [t for t in ts if (layer, t.name) in written]
                            for layer, ts in loaded.targets.items() if any((layer, t.name) in written for t in ts)},
                           report.run_id)
        resources, unobserved = self._observed(loaded, layers)
        t0 = time.perf_counter()
        if self.inc is None or self.revision != loaded.revision:
            self.inc = None      # the old model is garbage before the new one is built
            self.inc = Incremental(loaded.repo, resources, unobserved, [layer.value for layer in layers])
            gc.collect()
            gc.freeze()          # the model is long-lived: keep full collections from scanning it
            self.revision, changed, recomputed = loaded.revision, set(loaded.repo.apps), len(self.inc.entries)
        else:
            delta = self.inc.update(resources, unobserved)
            changed, recomputed = delta.apps, delta.recomputed
        self.error = ""
        self.last = {"revision": loaded.revision, "run_id": report.run_id, "recomputed": recomputed,
                     "seconds": round(time.perf_counter() - t0, 4), "ts": time.time()}
        return self._publish(changed)

    def _publish(self, changed: set[str]) -> set[str]:
        assert self.inc is not None
        counts = self.inc.counts()
        self.totals = {attr: sum(getattr(c, attr) for c in counts.values()) for attr in KINDS.values()}
        for app in changed & counts.keys():
            for kind, attr in KINDS.items():
                self.metrics.reachability.labels(app, kind).set(getattr(counts[app], attr))
        if changed:
            found = {a: self.inc.findings(a) for a in changed}
            safe(lambda: store_verify.save(self.store, self.revision, counts, found, changed))
            for a in sorted(changed):
                c = counts.get(a)
                if c is not None and (c.violations or c.leaks or c.unknowns):
                    log.warning("reachability of %s: %d violation(s), %d leak(s), %d unknown", a, c.violations,
                                c.leaks, c.unknowns, extra={"ctx": {"app": a, "violations": c.violations,
                                                                    "leaks": c.leaks, "unknown": c.unknowns}})
        return self._new_leaks(counts)

    def _new_leaks(self, counts: Mapping[str, Any]) -> set[str]:
        assert self.inc is not None
        out = set()
        for app, c in counts.items():
            if not c.leaks:
                self._tried.pop(app, None)
                continue
            mark = frozenset((f.source.id, f.dest.id) for f in self.inc.findings(app) if f.kind == LEAK)
            if self._tried.get(app) != mark:
                self._tried[app] = mark
                out.add(app)
        return out

    def status(self) -> dict[str, Any]:
        return {"ok": not self.error, "error": self.error, **self.last, **self.totals}
