"""Journal tables of the transactions (on the store's SQLModel metadata) and their vocabularies.

Contract:
- Imported by `service/store.py`, so `Store` creates these tables with its own (they are
  additive: a store of the same `SCHEMA_VERSION` gets them through `create_all`).
- `TxnRow` is one transaction; `TxnTargetRow` one target it touches (status per target);
  `TxnResourceRow` one resource of a target's journalled pre-state (spec JSON, redacted);
  `TxnLockRow` holds a target for one unfinished transaction: its primary key is the
  target, so the database itself refuses a second transaction on that target.
- `TxnOwnerRow` is the heartbeat of a process driving transactions; `TxnFindingRow` one
  reachability finding of a transaction's verify step (what the change added or left unknown).
- `TxnState` and `TargetStatus` are the only words these rows use.
"""
from __future__ import annotations

import enum
from typing import Optional

from sqlmodel import Field, SQLModel


class TxnState(str, enum.Enum):
    """Where a transaction is. The last five are final; the others are resumed after a crash."""

    PREPARED = "prepared"                # pre-state journalled, tools' checks passed, nothing written
    APPLYING = "applying"                # devices being written
    APPLIED = "applied"                  # written, not yet verified
    VERIFIED = "verified"                # observed == desired (+ checks)
    PENDING_CONFIRM = "pending-confirm"  # live and verified; rolls back at `deadline` unless confirmed
    ROLLING_BACK = "rolling-back"        # a rollback owns it now
    ROLLBACK_PENDING = "rollback-pending"  # rolled back except targets left `unknown` (unreachable)
    COMMITTED = "committed"
    ROLLED_BACK = "rolled-back"
    ROLLBACK_FAILED = "rollback-failed"
    ABORTED = "aborted"                  # refused before any write (prepare, lock, journal, fence)
    NOOP = "noop"                        # nothing to change

    @property
    def final(self) -> bool:
        return self in _FINAL


_FINAL = {TxnState.COMMITTED, TxnState.ROLLED_BACK, TxnState.ROLLBACK_FAILED, TxnState.ABORTED, TxnState.NOOP}


class TargetStatus(str, enum.Enum):
    """One target within one transaction."""

    PLANNED = "planned"          # pre-state journalled, not written yet
    WRITTEN = "written"
    ROLLED_BACK = "rolled-back"  # observed == pre-state again
    DIFFERS = "differs"          # rollback verified and still different (ROLLBACK_FAILED)
    UNKNOWN = "unknown"          # unreachable mid-transaction; repaired to pre-state on return


class TxnRow(SQLModel, table=True):
    __tablename__ = "txn"
    txn_id: str = Field(primary_key=True, max_length=64)
    run_id: str = Field(default="", max_length=64)
    revision: str = Field(default="", max_length=64)
    trigger: str = Field(default="", max_length=32)
    state: str = Field(default=TxnState.PREPARED.value, max_length=20, index=True)
    started: float = Field(default=0.0, index=True)
    updated: float = 0.0
    finished: Optional[float] = None
    deadline: Optional[float] = None        # commit-confirm: roll back at this time unless confirmed
    owner: str = Field(default="", max_length=160)   # host:pid of the process driving it
    reverts: str = Field(default="", max_length=64)  # txn this one reverts (`rollback TXID`)
    context: str = "{}"                     # JSON: how to rebuild drivers (repo, inventory, layers)
    apps: str = "[]"
    error: str = ""
    timings: str = "{}"                     # JSON: seconds per step (apply, verify, rollback, recover)


class TxnTargetRow(SQLModel, table=True):
    __tablename__ = "txn_targets"
    id: Optional[int] = Field(default=None, primary_key=True)
    txn_id: str = Field(index=True, max_length=64)
    layer: str = Field(max_length=16)
    target: str = Field(max_length=128)
    status: str = Field(default=TargetStatus.PLANNED.value, max_length=16)
    changes: int = 0
    writes: int = 0
    message: str = ""


class TxnResourceRow(SQLModel, table=True):
    __tablename__ = "txn_resources"
    id: Optional[int] = Field(default=None, primary_key=True)
    txn_id: str = Field(index=True, max_length=64)
    layer: str = Field(max_length=16)
    target: str = Field(max_length=128)
    resource: str = ""                      # Resource.to_json() as JSON text


class TxnLockRow(SQLModel, table=True):
    __tablename__ = "txn_locks"
    target: str = Field(primary_key=True, max_length=160)   # "layer/target"
    txn_id: str = Field(index=True, max_length=64)
    since: float = 0.0


class TxnOwnerRow(SQLModel, table=True):
    """The heartbeat of a process that drives transactions: refreshed while it applies or rolls
    back, so a dead owner on any host is found by its expiry (txn.owner_alive)."""
    __tablename__ = "txn_owners"
    owner: str = Field(primary_key=True, max_length=160)
    beat: float = 0.0


class TxnFindingRow(SQLModel, table=True):
    """A reachability finding of a transaction's verify step: a violation or leak the change
    added (`added`), or a pair decided before that the change left `unknown` (`unknown`)."""
    __tablename__ = "txn_findings"
    id: Optional[int] = Field(default=None, primary_key=True)
    txn_id: str = Field(index=True, max_length=64)
    change: str = Field(max_length=16)
    kind: str = Field(max_length=16)
    source: str = Field(default="", max_length=200)
    dest: str = Field(default="", max_length=200)
    line: str = ""                          # the pair and the hop that decides it (reach.finding_line)
