"""The targets a new revision touches: a commit's sync observes and applies only those.

Contract:
- `touched_targets(before, after)` -> the (layer, target) pairs on which any desired resource
  was added, removed or changed between two desired states (pure; resources compare as tuples).
- `narrow(base, new)` -> `new` with `targets` cut down to the layers and targets the change
  from `base` touches (a target kept is kept whole: all its resources are observed and planned),
  or None when the sync must stay full: no base, another inventory (path or targets), or another
  sync config (prune, ignore rules, ...): those change what the plan of an untouched target is.
- Why this is safe: `base` is a revision known to be in place on every target (the daemon sets
  it only after a full or narrowed run of it converged and its transaction committed), so an
  untouched target already holds what `new` wants of it. Drift on untouched targets is what
  the drift scan (always every target) finds and self-heal repairs; failed apps are retried on
  every target by the retry job.
- `RECONCILER_NARROW_SYNC=0` in the environment turns narrowing off (every sync full).
- `went_live(store, report)`: whether a sync's run put its revision in place for good: the run
  converged and its transaction (the journal row of its run id) ended `committed` or `noop`
  (not rolled back, not pending a confirm that may still roll it back). Any doubt (journal
  unreadable) is False: the next sync is then full.
- `journal_settled(store)`: no transaction in the journal is unfinished. A sync first recovers
  unfinished transactions with the targets it is given, and a rollback skips journalled targets
  it is not given: so a narrowed sync only runs when nothing is left to recover (else it is full).
- A change that touches nothing (e.g. a README commit) gives empty targets: the run records the
  revision as applied and reads no device.
- `carry_unchanged(store, base, new)`: after a narrowed sync of `new` went live, the apps whose
  desired state `new` did not change are at `new` too: their recorded revision moves from
  `base`'s to `new`'s (only where it still is `base`'s; their sync and health stay as they are).
"""
from __future__ import annotations

import logging
import os
from collections import defaultdict
from dataclasses import replace
from typing import Any

from reconciler.model import Layer, State
from reconciler.report import RunReport
from reconciler.service.config import Loaded
from reconciler.status import Phase

__all__ = ["carry_unchanged", "journal_settled", "narrow", "touched_targets", "unchanged_apps", "went_live"]

NARROW_ENV = "RECONCILER_NARROW_SYNC"
log = logging.getLogger(__name__)


def touched_targets(before: State, after: State) -> set[tuple[Layer, str]]:
    old, new = before.resources, after.resources
    touched = {(k.layer, k.target) for k, r in new.items() if old.get(k) != r}
    touched |= {(k.layer, k.target) for k in old.keys() - new.keys()}
    return touched


def narrow(base: Loaded | None, new: Loaded) -> Loaded | None:
    """`new` restricted to what changed since `base` (see the module contract), or None: full."""
    if os.environ.get(NARROW_ENV, "1") == "0":
        return None
    if base is None or base.inventory_path != new.inventory_path or base.targets != new.targets:
        return None
    if base.repo.config != new.repo.config:   # frozen models: compared field by field
        return None
    touched = touched_targets(base.desired, new.desired)
    targets = {layer: [t for t in ts if (layer, t.name) in touched] for layer, ts in new.targets.items()}
    return replace(new, targets={layer: ts for layer, ts in targets.items() if ts})


def went_live(store: Any, report: RunReport | None) -> bool:
    """Whether `report`'s run put its revision in place for good (see the module contract)."""
    if report is None or report.dry_run or report.phase is not Phase.SUCCEEDED:
        return False
    from reconciler.txn.journal import Journal
    from reconciler.txn.models import TxnState
    try:
        rows = Journal(store).of_run(report.run_id)
    except Exception:   # journal unreadable: in doubt, the next sync is full
        return False
    for_good = {TxnState.COMMITTED.value, TxnState.NOOP.value}   # not rolled back, no confirm pending
    return bool(rows) and all(r.state in for_good for r in rows)


def journal_settled(store: Any) -> bool:
    """Whether no transaction is left unfinished (see the module contract); False in doubt."""
    try:
        from reconciler.txn.journal import Journal
        return not Journal(store).unfinished()
    except Exception:
        return False


def unchanged_apps(before: State, after: State) -> set[str]:
    """Apps with desired resources in `after` that are exactly those of `before` (pure)."""
    def by_app(state: State) -> dict[str, dict]:
        out: dict[str, dict] = defaultdict(dict)
        for k, r in state.resources.items():
            out[r.app][k] = r
        return out
    old, new = by_app(before), by_app(after)
    return {app for app, rs in new.items() if app and old.get(app) == rs}


def carry_unchanged(store: Any, base: Loaded, new: Loaded) -> None:
    """See the module contract. A store that cannot be written is logged: the revisions then lag
    until the app's next sync, nothing else depends on them."""
    apps = unchanged_apps(base.desired, new.desired)
    try:
        store.carry_revision(apps, base.revision, new.revision)
    except Exception as exc:
        log.warning("cannot record revision %s for %d unchanged app(s): %s", new.revision[:12], len(apps), exc)
