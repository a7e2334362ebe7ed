"""Apply as a transaction, for `reconciler apply`: open the journal, prepare, apply, and leave a
watcher behind for commit-confirm.

Contract: `transactional_apply(args, repo, desired, targets, engine, revision)` runs the apply
through `Transactions` on the store named by `--store`/RECONCILER_STORE (default
`.reconciler/state.db`) and returns its `TxnResult`, or None when the apply is not a transaction
(dry run; offline `--observed` without a store). A store that cannot be opened gives an ABORTED
result and no device is written. The verify step includes reachability verification
(`--on-unknown keep|rollback`, env RECONCILER_TXN_ON_UNKNOWN). `txn_line`/`txn_exit` are the
CLI's line and exit code for a result. Nothing here imports the CLI module, which imports this one.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Mapping

from reconciler.txn.journal import Journal, JournalUnavailable
from reconciler.txn.models import TxnState
from reconciler.txn.reach import ENV_ON_UNKNOWN, OnUnknown, ReachCheck
from reconciler.txn.txn import Transactions, TxnResult

DEFAULT_STORE = ".reconciler/state.db"


def store_url(args: Any) -> str | None:
    return getattr(args, "store", None) or os.environ.get("RECONCILER_STORE") or None


def open_journal(url: str) -> Journal:
    """The journal on the store at `url`; JournalUnavailable when the database cannot be opened."""
    from sqlalchemy.exc import DBAPIError, OperationalError

    from reconciler.service.store import Store
    if "://" not in url:
        Path(url).parent.mkdir(parents=True, exist_ok=True)
    try:
        return Journal(Store(url))
    except (OperationalError, DBAPIError) as exc:
        first = str(getattr(exc, "orig", exc)).strip().splitlines()
        raise JournalUnavailable(f"transaction journal unavailable ({first[0] if first else exc!r}); "
                                 "no device was written") from None


def _context(args: Any, url: str) -> dict[str, Any]:
    observed = getattr(args, "observed", None)
    return {"repo": str(Path(args.repo).resolve()), "inventory": getattr(args, "inventory_path", None),
            "layers": list(getattr(args, "layers", None) or []), "timeout": args.timeout,
            "attempts": args.attempts, "observed": str(Path(observed).resolve()) if observed else None,
            "factory": getattr(args, "driver_factory", None), "store": url}


def transactional_apply(args: Any, repo: Any, desired: Any, targets: Mapping, engine: Any,
                        revision: str = "") -> TxnResult | None:
    """The apply as a transaction, or None when this apply is not one (dry run, offline without a store)."""
    url = store_url(args)
    if getattr(args, "dry_run", False) or (getattr(args, "observed", None) and not url):
        return None
    url = url or DEFAULT_STORE
    try:
        journal = open_journal(url)
        tx = Transactions(engine, journal, context=_context(args, url), prepare=_preparer(args, engine),
                          reach=_reach(args, repo, engine))
        for res in tx.recover(targets, repo.config.ignore):
            print(f"recovered {res.txn_id}: {res.state.value}{': ' + res.error if res.error else ''}",
                  file=sys.stderr)
        res = tx.apply(desired, targets, prune=args.prune, apps=args.app or None, ignore=repo.config.ignore,
                       revision=revision, trigger="cli", confirm_within=getattr(args, "confirm_within", None))
    except JournalUnavailable as exc:   # never apply without a journal
        return TxnResult("-", TxnState.ABORTED, error=str(exc))
    if res.state is TxnState.PENDING_CONFIRM:
        spawn_watcher(url, res.txn_id)
    return res


def _reach(args: Any, repo: Any, engine: Any) -> Callable[[], ReachCheck]:
    """Reachability verification in the verify step, over the layers this apply drives."""
    on_unknown = OnUnknown.of(getattr(args, "on_unknown", None) or os.environ.get(ENV_ON_UNKNOWN))
    layers = list(engine.drivers)
    return lambda: ReachCheck(repo, layers, on_unknown)


def _preparer(args: Any, engine: Any):
    if getattr(args, "observed", None):
        return None
    from reconciler.txn.prepare import make_preparer
    return make_preparer(engine.drivers)


def spawn_watcher(url: str, txn_id: str) -> int:
    """A detached process (own session, no terminal) that rolls back at the deadline."""
    log = Path(url if "://" not in url else ".reconciler/x").resolve().parent / f"watch-{txn_id}.log"
    with open(log, "ab") as out:
        p = subprocess.Popen([sys.executable, "-m", "reconciler.txn.watch", "--store", url, txn_id],
                             stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True,
                             close_fds=True)
    return p.pid


def txn_line(res: TxnResult) -> str:
    tail = ""
    if res.state is TxnState.PENDING_CONFIRM and res.deadline:
        tail = (f"; rolls back at {time.strftime('%H:%M:%S', time.gmtime(res.deadline))} UTC unless "
                f"`reconciler confirm {res.txn_id}`")
    err = f": {res.error}" if res.error else ""
    return f"transaction {res.txn_id}: {res.state.value}{err}{tail}"


def txn_exit(res: TxnResult) -> int:
    if res.ok:
        return 0
    return 2 if res.state is TxnState.ABORTED and res.report is None else 1
