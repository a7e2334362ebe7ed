"""EventModel: an in-memory `ReadModel` built from engine events (no database).

Contract: `observer(event)` consumes the engine's events (thread-safe; the engine runs in
a worker thread while the UI reads):
- RUN_STARTED opens a run (trigger, revision, dry-run flag, app filter);
- OBSERVED notes targets that could not be observed in the run (their resources are
  shown unreachable, not missing, and do not count as drift);
- DRIFT records a drift event per resource;
- STATE replaces the resources of every application present in the run with their status
  and desired/observed specs (requires `Engine(publish_state=True)`);
- RESOURCE_RESULT marks applied resources synced (observed := desired) and failed ones
  failed/unreachable;
- RUN_FINISHED closes the run (phase, duration, writes) and recomputes each application's
  sync (drift left), health (a target of the app failed -> Degraded) and revision/last
  sync (only for runs that wrote, i.e. not dry-runs).
An application is known from `apps=` given at construction (the intents) or from events.
It never talks to drivers; it is what the TUI shows in read-only/snapshot mode.
"""
from __future__ import annotations

import threading
from dataclasses import replace
from typing import Any, Iterable, Mapping

from reconciler.events import Event, EventKind
from reconciler.model import ResourceKey
from reconciler.status import Health, Outcome, Phase, Sync
from tui.data import AppRow, DriftRow, ResourceRow, ResState, RunRow, redact

MAX_RUNS = 500
MAX_DRIFT = 2000


class EventModel:
    def __init__(self, apps: Mapping[str, bool] | Iterable[str] = (), *, source: str = "engine events",
                 read_only: bool = False) -> None:
        self.source = source
        self.read_only = read_only
        self._lock = threading.Lock()
        heal = dict(apps) if isinstance(apps, Mapping) else {a: False for a in apps}
        self._apps: dict[str, AppRow] = {a: AppRow(a, self_heal=h) for a, h in heal.items()}
        self._resources: dict[str, dict[ResourceKey, ResourceRow]] = {}
        self._runs: list[RunRow] = []               # newest last
        self._run_apps: dict[str, set[str]] = {}   # run_id -> apps touched
        self._drift: list[DriftRow] = []
        self._running: set[str] = set()
        self._unobserved: dict[str, set[tuple[str, str]]] = {}   # run -> (layer, target) not observed
        self.version = 0                            # bumps on every change (cheap change check)

    # ---- ReadModel --------------------------------------------------------------------------
    def apps(self) -> list[AppRow]:
        with self._lock:
            return [self._apps[a] for a in sorted(self._apps) if a]

    def runs(self, app: str | None = None, limit: int = 50) -> list[RunRow]:
        with self._lock:
            rows = [r for r in reversed(self._runs) if app is None or app in self._run_apps.get(r.run_id, ())]
        return rows[:limit]

    def drift_events(self, app: str | None = None, limit: int = 100) -> list[DriftRow]:
        with self._lock:
            rows = [d for d in reversed(self._drift) if app is None or d.app == app]
        return rows[:limit]

    def resources(self, app: str) -> list[ResourceRow]:
        with self._lock:
            rows = list(self._resources.get(app, {}).values())
        return sorted(rows, key=lambda r: r.key.sort_key())

    def marker(self, app: str) -> int:
        """Changes whenever any event was applied (cheap change check for the screens)."""
        return self.version

    def set_self_heal(self, app: str, on: bool) -> None:
        if self.read_only:
            raise PermissionError("read-only: no daemon or store to record self-heal")
        with self._lock:
            self._apps[app] = replace(self._apps.get(app, AppRow(app)), self_heal=on)
            self.version += 1

    # ---- events -----------------------------------------------------------------------------
    def observer(self, ev: Event) -> None:
        handler = _HANDLERS.get(ev.kind)
        if handler is None:
            return
        with self._lock:
            handler(self, ev)
            self.version += 1

    def _run_index(self, run_id: str) -> int:
        for i in range(len(self._runs) - 1, -1, -1):
            if self._runs[i].run_id == run_id:
                return i
        return -1

    def _on_started(self, ev: Event) -> None:
        d = ev.data
        apps = tuple(d.get("apps") or ())
        self._runs.append(RunRow(ev.run_id, revision=str(d.get("revision", "")), trigger=ev.message,
                                 phase=Phase.RUNNING, started=ev.ts, dry_run=bool(d.get("dry_run")), apps=apps))
        del self._runs[:-MAX_RUNS]
        targets = set(apps) if apps else set(self._apps)
        self._run_apps[ev.run_id] = targets
        self._running.add(ev.run_id)
        if not d.get("dry_run"):
            for a in targets:
                if a in self._apps:
                    self._apps[a] = replace(self._apps[a], health=Health.PROGRESSING)

    def _on_observed(self, ev: Event) -> None:
        if ev.outcome is not None and not ev.outcome.ok and ev.layer is not None:
            self._unobserved.setdefault(ev.run_id, set()).add((ev.layer.value, ev.target))

    def _on_drift(self, ev: Event) -> None:
        self._drift.append(DriftRow(ev.ts, ev.run_id, ev.app, ev.key, str(ev.data.get("action", ev.message)),
                                    bool(ev.data.get("executed", True))))
        del self._drift[:-MAX_DRIFT]
        if ev.app:
            self._run_apps.setdefault(ev.run_id, set()).add(ev.app)

    def _on_state(self, ev: Event) -> None:
        by_app: dict[str, dict[ResourceKey, ResourceRow]] = {}
        blind = self._unobserved.get(ev.run_id, set())
        for row in ev.data.get("resources", []):
            key = ResourceKey.parse(row["key"])
            app = row.get("app", "")
            desired, observed = row.get("desired"), row.get("observed")
            status, msg = ResState.parse(row.get("status")), ""
            if (key.layer.value, key.target) in blind:   # its state is unknown, not "missing"
                status, msg = ResState.UNREACHABLE, f"{key.target} could not be observed"
            by_app.setdefault(app, {})[key] = ResourceRow(
                key, status, app, None if desired is None else redact(desired),
                None if observed is None else redact(observed), msg)
        run_apps = self._run_apps.get(ev.run_id, set())
        for app in set(by_app) | run_apps:
            self._resources[app] = by_app.get(app, {})
            if app and app not in self._apps:
                self._apps[app] = AppRow(app)
        self._run_apps.setdefault(ev.run_id, set()).update(a for a in by_app if a)

    def _on_result(self, ev: Event) -> None:
        res = self._resources.get(ev.app, {})
        key = ResourceKey.parse(ev.key)
        row = res.get(key)
        if row is None or ev.outcome is None:
            return
        if ev.outcome is Outcome.APPLIED:
            if row.status in (ResState.EXTRA,):
                res.pop(key, None)
            else:
                res[key] = replace(row, status=ResState.SYNCED, observed=row.desired, message="")
        elif ev.outcome is Outcome.UNREACHABLE:
            res[key] = replace(row, status=ResState.UNREACHABLE, message=ev.message)
        elif not ev.outcome.ok:
            res[key] = replace(row, status=ResState.FAILED, message=f"{ev.message} {ev.outcome.value}")

    def _on_finished(self, ev: Event) -> None:
        d = ev.data
        i = self._run_index(ev.run_id)
        self._running.discard(ev.run_id)
        self._unobserved.pop(ev.run_id, None)
        phase = Phase(d.get("phase", ev.message or "failed"))
        apps = self._run_apps.get(ev.run_id, set()) | set(d.get("apps") or ())
        bad_targets: dict[str, list[str]] = {}
        for t in d.get("targets", []):
            if t.get("outcome") not in {o.value for o in Outcome if o.ok}:
                for a in t.get("apps", []):
                    bad_targets.setdefault(a, []).append(f"{t.get('layer')}/{t.get('target')} {t.get('outcome')}")
        drift_total = sum(int(v) for v in (d.get("drift") or {}).values())
        if i >= 0:
            run = self._runs[i]
            self._runs[i] = replace(run, phase=phase, duration_s=d.get("duration_s"), writes=int(d.get("writes", 0)),
                                    drift=drift_total, apps=run.apps or tuple(sorted(a for a in apps if a)),
                                    message="; ".join(sorted({m for v in bad_targets.values() for m in v}))[:200])
            dry_run = run.dry_run
        else:
            dry_run = False
        for app in apps:
            if not app or app not in self._apps:
                continue
            rows = self._resources.get(app, {}).values()
            drift = sum(1 for r in rows if r.status.drifted and r.status is not ResState.UNREACHABLE)
            unreachable = any(r.status is ResState.UNREACHABLE for r in rows)
            bad = bad_targets.get(app, [])
            sync = Sync.UNKNOWN if (unreachable or (bad and any("unreachable" in b for b in bad))) else (
                Sync.SYNCED if drift == 0 else Sync.OUT_OF_SYNC)
            health = Health.DEGRADED if bad or phase is Phase.FAILED and not dry_run and drift else Health.HEALTHY
            row = replace(self._apps[app], sync=sync, health=health, drift_count=drift,
                          message="; ".join(bad)[:200])
            if not dry_run and phase is not Phase.RUNNING:
                row = replace(row, revision=str(d.get("revision", "")) or row.revision,
                              last_sync=ev.ts if not bad else row.last_sync)
            self._apps[app] = row


_HANDLERS: dict[EventKind, Any] = {
    EventKind.RUN_STARTED: EventModel._on_started,
    EventKind.OBSERVED: EventModel._on_observed,
    EventKind.DRIFT: EventModel._on_drift,
    EventKind.STATE: EventModel._on_state,
    EventKind.RESOURCE_RESULT: EventModel._on_result,
    EventKind.RUN_FINISHED: EventModel._on_finished,
}
