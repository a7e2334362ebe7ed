"""Command line of the transactions: `apply` as a transaction, `confirm TXID`, `recover`,
`rollback TXID` (revert as a new transaction), and the transaction part of `history`.

Contract:
- `reconciler.txn.apply.transactional_apply(...)` is what `reconciler apply` runs
  (not for --dry-run; for --observed only when a store is named): it opens the store named by
  `--store` / RECONCILER_STORE / .reconciler/state.db, first finishes what earlier runs left
  (`recover`), then applies as one transaction. With `--confirm-within S` it leaves a
  detached watcher (`python -m reconciler.txn.watch`) that rolls back at the deadline unless
  confirmed; the daemon, when one runs on the same store, does the same (first claim wins).
- The journal's `context` holds how to rebuild the drivers (repo, inventory path, layers,
  timeout), never inventory variables or secrets.
- Exit codes: 0 committed (or pending confirm), 1 rolled back / not converged, 2 error
  (journal unavailable, target busy, nothing applied).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any, Mapping

from reconciler.txn.apply import DEFAULT_STORE, open_journal, store_url, txn_exit, txn_line
from reconciler.txn.models import TxnState
from reconciler.txn.reach import OnUnknown
from reconciler.txn.txn import Refused, Transactions


# ---- commands --------------------------------------------------------------------------
def cmd_confirm(args: argparse.Namespace) -> int:
    journal = open_journal(store_url(args) or DEFAULT_STORE)
    row = journal.txn(args.txn_id)
    if row is None:
        print(f"error: {args.txn_id}: no such transaction", file=sys.stderr)
        return 2
    ok = journal.claim(args.txn_id, [TxnState.PENDING_CONFIRM], TxnState.COMMITTED, owner="confirm",
                       not_after=time.time())
    if ok:
        print(f"transaction {args.txn_id}: committed")
        return 0
    row = journal.txn(args.txn_id)
    print(f"error: {args.txn_id} is {row.state if row else '?'}; only a pending transaction within its "
          "confirm window can be confirmed", file=sys.stderr)
    return 1


def engine_from_context(ctx: Mapping[str, Any]) -> tuple[Any, Any, Any]:
    """(engine, targets, repo) rebuilt from a journalled context."""
    from reconciler.assembly import build_engine, layer_targets
    from reconciler.loading import load
    repo = load(ctx["repo"], ctx.get("inventory"))
    ns = argparse.Namespace(timeout=ctx.get("timeout") or 60.0, attempts=ctx.get("attempts") or 3,
                            inventory_path=ctx.get("inventory"), layers=ctx.get("layers") or None,
                            observed=ctx.get("observed"), driver_factory=ctx.get("factory"))
    targets = layer_targets(repo)
    engine, _ = build_engine(ns, targets)
    return engine, targets, repo


def cmd_recover(args: argparse.Namespace) -> int:
    journal = open_journal(store_url(args) or DEFAULT_STORE)
    rows = [r for r in journal.unfinished() if not args.txn_id or r.txn_id == args.txn_id]
    bad = 0
    for row in rows:
        engine, targets, repo = engine_from_context(json.loads(row.context or "{}"))
        for res in Transactions(engine, journal).recover(targets, repo.config.ignore, only=row.txn_id):
            print(txn_line(res))
            bad += res.state is not TxnState.ROLLED_BACK
    return 1 if bad else 0


def cmd_revert(args: argparse.Namespace) -> int:
    """`reconciler rollback TXID`: undo a committed transaction as a new transaction."""
    journal = open_journal(store_url(args) or DEFAULT_STORE)
    row = journal.txn(args.revision)
    if row is None:
        print(f"error: {args.revision}: no such transaction", file=sys.stderr)
        return 2
    engine, targets, repo = engine_from_context(json.loads(row.context or "{}"))
    tx = Transactions(engine, journal, context=json.loads(row.context or "{}"))
    try:
        res = tx.revert(args.revision, targets, repo.config.ignore)
    except Refused as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(txn_line(res))
    return txn_exit(res)


def add_cli(sub: argparse._SubParsersAction) -> None:
    apply = sub.choices.get("apply")
    if apply is not None:   # the transaction's options of `reconciler apply` (its parser is reconciler/cli.py's)
        apply.add_argument("--on-unknown", choices=[o.value for o in OnUnknown], default=None,
                           help="a pair the change leaves unknown (decided before): keep (default: reported in "
                                "the transaction) or rollback (env RECONCILER_TXN_ON_UNKNOWN)")
    p = sub.add_parser("confirm", help="confirm a transaction applied with --confirm-within")
    p.add_argument("txn_id", metavar="TXID")
    p.add_argument("--store", help=f"database URL or SQLite file (env RECONCILER_STORE; default {DEFAULT_STORE})")
    p.set_defaults(func=cmd_confirm)
    p = sub.add_parser("recover", help="finish transactions a dead process or a lapsed confirm window left")
    p.add_argument("txn_id", metavar="TXID", nargs="?")
    p.add_argument("--store", help=f"database URL or SQLite file (env RECONCILER_STORE; default {DEFAULT_STORE})")
    p.set_defaults(func=cmd_recover)
