"""Tables of shard membership and fencing (same SQLModel metadata as the store).

Contract: created by `Store.check_schema` with the other tables (a database of the current
schema version gets them added on open: tables added within a version). Times are UNIX
epoch seconds read from the DATABASE clock (`clock_timestamp()`), never a daemon's clock,
so lease expiry means the same to every member.
- `shard_ring` (one row, id 1): `generation` is bumped in the same transaction as every
  change of the member set (join, leave, reap of a lapsed lease); `next_epoch` hands out
  fencing epochs, strictly increasing across all members and rejoins.
- `shard_members`: one lease per live member: its fencing `epoch`, `expires` (renewed by
  heartbeats; a lapsed lease is never renewed, its holder must join again with a new epoch).
- `shard_batches`: every write batch a member started, with the apps it wrote and whether
  it committed (`written`) or was refused by the fence (`fenced`).
"""
from __future__ import annotations

from typing import Optional

from sqlmodel import Field, SQLModel


class ShardRingRow(SQLModel, table=True):
    __tablename__ = "shard_ring"
    id: int = Field(default=1, primary_key=True)
    generation: int = 0
    next_epoch: int = 1
    updated: float = 0.0
    # how apps map to members: fixed when the ring is created; a daemon with other values refuses to join
    slots: int = 0
    eps: float = 0.0
    vnodes: int = 0


class ShardMemberRow(SQLModel, table=True):
    __tablename__ = "shard_members"
    member: str = Field(primary_key=True, max_length=128)   # the daemon's instance name
    epoch: int = Field(default=0, index=True)
    joined: float = 0.0
    heartbeat: float = 0.0
    expires: float = 0.0
    lease_s: float = 0.0
    info: str = ""                                            # JSON: host, pid, listen


class ShardBatchRow(SQLModel, table=True):
    __tablename__ = "shard_batches"
    id: Optional[int] = Field(default=None, primary_key=True)
    member: str = Field(default="", index=True, max_length=128)
    epoch: int = 0
    generation: int = 0
    layer: str = Field(default="", max_length=64)
    apps: str = "[]"                                          # JSON list of app names ("" = fabric)
    targets: int = 0
    started: float = Field(default=0.0, index=True)
    finished: float = 0.0
    outcome: str = Field(default="", max_length=16)          # written / fenced
    reason: str = ""
