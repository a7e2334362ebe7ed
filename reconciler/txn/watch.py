"""The commit-confirm watcher: `python -m reconciler.txn.watch --store URL TXID`.

Contract: left behind, detached, by `reconciler apply --confirm-within S`. It waits (in steps of
at most 1 s, bounded by the deadline) while the transaction is PENDING_CONFIRM; once the
deadline passes it claims the rollback in the journal (a compare-and-set: if the daemon or a
`confirm` got there first it does nothing) and rolls every target back to the journalled
pre-state with drivers rebuilt from the journalled context. It exits when the transaction is
no longer pending. Everything it knows comes from the journal.
"""
from __future__ import annotations

import argparse
import json
import sys
import time

from reconciler.txn.models import TxnState


def watch(url: str, txn_id: str, max_wait_s: float = 7 * 24 * 3600) -> int:
    from reconciler.txn.apply import open_journal, txn_line
    from reconciler.txn.cli import engine_from_context
    from reconciler.txn.txn import Transactions
    journal = open_journal(url)
    give_up = time.time() + max_wait_s
    while time.time() < give_up:
        row = journal.txn(txn_id)
        if row is None or TxnState(row.state) is not TxnState.PENDING_CONFIRM:
            return 0
        left = (row.deadline or 0) - time.time()
        if left > 0:
            time.sleep(min(1.0, left))
            continue
        engine, targets, repo = engine_from_context(json.loads(row.context or "{}"))
        for res in Transactions(engine, journal).recover(targets, repo.config.ignore, only=txn_id):
            print(txn_line(res), flush=True)
        return 0
    return 1


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m reconciler.txn.watch")
    p.add_argument("--store", required=True)
    p.add_argument("txn_id")
    args = p.parse_args(argv)
    return watch(args.store, args.txn_id)


if __name__ == "__main__":
    sys.exit(main())
