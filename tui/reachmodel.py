"""Reachability results for the TUI, read from the service's store (reconciler.service.store_verify).

Contract: `reach_counts(store)` -> {app: (violations, leaks, unknown)} of the daemon's last
verification (empty when the store has none or cannot be read); `reach_of(store, app)` ->
(summary or None, findings); with `summary_only` the findings are left out (a cheap change
marker). A store without the reachability tables (an older daemon) reads as "not verified".
"""
from __future__ import annotations

from typing import Any


def _store_verify() -> Any:
    from reconciler.service import store_verify
    return store_verify


def reach_counts(store: Any) -> dict[str, tuple[int, int, int]]:
    if getattr(store, "engine", None) is None:
        return {}
    try:
        sums = _store_verify().summaries(store)
    except Exception:   # no table yet (an older store) or unreadable: shown as not verified
        return {}
    return {a: (s.violations, s.leaks, s.unknowns) for a, s in sums.items()}


def reach_of(store: Any, app: str, summary_only: bool = False) -> tuple[Any, list[Any]]:
    if getattr(store, "engine", None) is None:
        return None, []
    try:
        sv = _store_verify()
        summary = sv.summaries(store).get(app)
        return summary, ([] if summary_only or summary is None else sv.findings(store, app))
    except Exception:
        return None, []
