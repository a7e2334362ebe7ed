"""Transaction history as text and JSON: per transaction, per layer and target, what was
written, what was rolled back, and the outcome (read from the journal; used by `reconciler
history` and the TUI).

Contract: `transactions(store, limit)` -> list of dicts (newest first), each with `targets`
in layer order; `print_transactions(store, limit, txn_id)` prints them (nothing when the
journal is empty). Reads only; never raises for an empty or older store.
"""
from __future__ import annotations

import json
import time
from typing import Any

from reconciler.model import Layer
from reconciler.txn.journal import Journal


def _ts(t: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(t)) if t else "-"


def transactions(store: Any, limit: int = 50, txn_id: str | None = None, app: str | None = None) -> list[dict]:
    """Newest first; with `app`, those whose apps include it or that name no app (whole-repo syncs)."""
    journal = Journal(store)
    try:
        rows = [journal.txn(txn_id)] if txn_id else journal.history(limit)
    except Exception:   # an older store without the journal tables
        return []
    out = []
    for row in rows:
        if row is None:
            continue
        apps = json.loads(row.apps or "[]")
        if app and apps and app not in apps:
            continue
        targets = sorted(journal.targets(row.txn_id), key=lambda t: (Layer(t.layer).create_rank, t.target))
        out.append({"txn_id": row.txn_id, "state": row.state, "trigger": row.trigger, "revision": row.revision,
                    "started": row.started, "finished": row.finished, "deadline": row.deadline,
                    "reverts": row.reverts, "error": row.error, "apps": apps,
                    "timings": json.loads(row.timings or "{}"),
                    "findings": [{"change": f.change, "kind": f.kind, "source": f.source, "dest": f.dest,
                                  "line": f.line} for f in _findings(journal, row.txn_id)],
                    "targets": [{"layer": t.layer, "target": t.target, "status": t.status, "changes": t.changes,
                                 "writes": t.writes, "message": t.message} for t in targets]})
    return out


def _findings(journal: Journal, txn_id: str) -> list[Any]:
    try:
        return journal.findings(txn_id)
    except Exception:   # an older store without the findings table
        return []


def print_transactions(store: Any, limit: int = 50, txn_id: str | None = None) -> None:
    txns = transactions(store, limit, txn_id)
    if not txns:
        return
    print(f"\n{'STARTED':<20} {'TRANSACTION':<16} {'TRIGGER':<10} {'STATE':<16} REVISION")
    for t in txns:
        extra = f" reverts {t['reverts']}" if t["reverts"] else ""
        if t["state"] == "pending-confirm" and t["deadline"]:
            extra += f" (rolls back at {_ts(t['deadline'])} unless confirmed)"
        print(f"{_ts(t['started']):<20} {t['txn_id']:<16} {t['trigger']:<10} {t['state']:<16} "
              f"{t['revision'][:12]}{extra}")
        for tg in t["targets"]:
            msg = f"  {tg['message'][:100]}" if tg["message"] else ""
            print(f"{'':<20}   {tg['layer']:<10} {tg['target']:<14} {tg['status']:<12} "
                  f"{tg['changes']:>3} change(s) {tg['writes']:>3} write(s){msg}")
        for f in t["findings"]:
            print(f"{'':<20}   reachability {f['change']}: {f['line'][:200]}")
        if t["error"]:
            print(f"{'':<20}   {t['error'].splitlines()[0][:200]}")
