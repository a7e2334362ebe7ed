"""StoreReadModel: the TUI's `ReadModel` over the service's store (`reconciler.service.store.Store`).

Contract: every call reads the store (the screens poll about once a second); records are
converted with tui.data's `row_*` functions. Two things the store records only at a run's
edges are completed here: resources of an app whose last run wrote get that run's
per-resource results (applied -> synced, failed/unreachable marked), and apps a writing
run is working on right now show Health.PROGRESSING. Database URLs are shown without
their password.
"""
from __future__ import annotations

import re
import time
from dataclasses import replace
from typing import Any

from reconciler.status import Health, Outcome, Phase
from tui.data import (
    AppRow,
    DriftRow,
    ResourceRow,
    ResState,
    RunRow,
    _enum,
    _get,
    row_app,
    row_drift,
    row_resource,
    row_run,
)
from tui.reachmodel import reach_counts, reach_of

STALE_RUN_S = 900.0


class StoreReadModel:
    """The service's store, read on every call (the screens poll it about once a second)."""

    read_only = False

    def __init__(self, store: Any, source: str = "") -> None:
        self.store = store
        self.source = source or "store"

    @classmethod
    def open(cls, url: str) -> "StoreReadModel":
        from reconciler.service.store import Store  # lands with the GitOps service
        return cls(Store(url), source=_safe_url(url))

    def apps(self) -> list[AppRow]:
        reach = reach_counts(self.store)
        rows = sorted((replace(row_app(a), reach=reach.get(_get(a, "app", "name"))) for a in self.store.apps()),
                      key=lambda r: r.name)
        busy = self._progressing({r.name for r in rows})
        return [replace(r, health=Health.PROGRESSING) if r.name in busy else r for r in rows]

    def reachability(self, app: str) -> tuple[Any, list[Any]]:
        """(summary or None, findings) of the daemon's last reachability verification of `app`."""
        return reach_of(self.store, app)

    def transactions(self, app: str, limit: int = 50) -> list[dict]:
        """The transactions touching `app` (reconciler.txn.history), newest first."""
        from reconciler.txn.history import transactions
        return transactions(self.store, limit, app=app)

    def _progressing(self, names: set[str]) -> set[str]:
        """Apps a writing run is working on right now (the store records health when a run
        ends; a run still RUNNING means Progressing). Runs older than STALE_RUN_S are not
        trusted: their process may have died (the daemon marks them interrupted on restart)."""
        now = time.time()
        busy: set[str] = set()
        for r in self.runs(None, 5):
            if r.phase is Phase.RUNNING and not r.dry_run and r.started and now - r.started < STALE_RUN_S:
                busy |= set(r.apps) if r.apps else names
        return busy & names

    def runs(self, app: str | None = None, limit: int = 50) -> list[RunRow]:
        return [row_run(r) for r in self.store.runs(app=app, limit=limit)]

    def drift_events(self, app: str | None = None, limit: int = 100) -> list[DriftRow]:
        return [row_drift(d) for d in self.store.drift_events(app, limit)]

    def resources(self, app: str) -> list[ResourceRow]:
        rows = {str(r.key): r for r in (row_resource(x, app) for x in self.store.resources(app))}
        self._overlay_results(app, rows)
        return sorted(rows.values(), key=lambda r: r.key.sort_key())

    def _overlay_results(self, app: str, rows: dict[str, ResourceRow]) -> None:
        """The resource states are written when a run starts (its STATE event); when the
        app's last run wrote, its per-resource results say what became of the drift."""
        results = getattr(self.store, "results", None)
        run_of = getattr(self.store, "run", None)
        last = next((_get(a, "last_run", default="") for a in self.store.apps() if _get(a, "app", "name") == app), "")
        if not last or results is None or run_of is None:
            return
        run = run_of(last)
        if run is None or _get(run, "dry_run", default=True):
            return
        for res in results(last):
            key, outcome = str(_get(res, "key")), _enum(Outcome, _get(res, "outcome"), None)
            row = rows.get(key)
            if row is None or outcome is None:
                continue
            if outcome is Outcome.APPLIED:
                if row.status in (ResState.EXTRA,):
                    rows.pop(key)
                else:
                    rows[key] = replace(row, status=ResState.SYNCED, observed=row.desired)
            elif outcome is Outcome.UNREACHABLE:
                rows[key] = replace(row, status=ResState.UNREACHABLE, message=f"{row.key.target} unreachable")
            elif not outcome.ok:
                rows[key] = replace(row, status=ResState.FAILED, message=f"{_get(res, 'action', default='')} "
                                                                          f"{outcome.value} in run {last}")

    def set_self_heal(self, app: str, on: bool) -> None:
        self.store.set_self_heal(app, on)

    @property
    def observer(self):
        return self.store.observer

    def marker(self, app: str) -> tuple:
        """Cheap change check for one app's screen: its status row, the newest run (id and
        phase) and the app's newest drift event. Equal markers: nothing to re-read."""
        status = next((a for a in self.store.apps() if _get(a, "app", "name") == app), None)
        latest = self.store.runs(None, 1)
        drift = self.store.drift_events(app, 1)
        return (status, tuple((_get(r, "run_id"), _get(r, "phase"), _get(r, "finished")) for r in latest),
                tuple((_get(d, "id"), _get(d, "ts")) for d in drift), reach_of(self.store, app, summary_only=True))


def _safe_url(url: str) -> str:
    """A database URL without its password, for display."""
    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", url)
