"""Tables of the history store (SQLModel) and the read-model values the TUI/CLI get.

Contract: times are UNIX epoch seconds (float, UTC). JSON columns hold text (json.dumps,
already redacted). `SCHEMA_VERSION` is bumped with every change of these tables; the store
refuses a database of another version unless a migration in `store.MIGRATIONS` leads to it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from sqlmodel import Field, SQLModel

from reconciler.status import Health, Phase, Sync

SCHEMA_VERSION = 1


class SchemaVersion(SQLModel, table=True):
    __tablename__ = "schema_version"
    id: int = Field(default=1, primary_key=True)
    version: int
    app_name: str = "netintent-reconciler"


class RunRow(SQLModel, table=True):
    __tablename__ = "runs"
    run_id: str = Field(primary_key=True, max_length=64)
    revision: str = Field(default="", max_length=64, index=True)
    # trigger: commit, webhook, poll, drift-scan, self-heal, retry, rollback, manual
    trigger: str = Field(default="", max_length=32)
    phase: str = Field(default=Phase.RUNNING.value, max_length=16, index=True)
    dry_run: bool = False
    started: float = Field(default=0.0, index=True)
    finished: Optional[float] = None
    duration: Optional[float] = None
    apps: str = "[]"                                      # JSON list of application names
    writes: int = 0
    converged: Optional[bool] = None
    rollback: bool = False
    error: str = ""
    owner: str = Field(default="", max_length=128)        # daemon instance that ran it


class ResourceResultRow(SQLModel, table=True):
    __tablename__ = "resource_results"
    id: Optional[int] = Field(default=None, primary_key=True)
    run_id: str = Field(index=True, max_length=64)
    app: str = Field(default="", index=True, max_length=128)
    key: str = Field(max_length=512)
    layer: str = Field(default="", max_length=16)
    target: str = Field(default="", max_length=128)
    outcome: str = Field(default="", max_length=16)
    action: str = Field(default="", max_length=16)


class DriftEventRow(SQLModel, table=True):
    __tablename__ = "drift_events"
    id: Optional[int] = Field(default=None, primary_key=True)
    run_id: str = Field(index=True, max_length=64)
    app: str = Field(default="", index=True, max_length=128)
    key: str = Field(max_length=512)
    action: str = Field(default="", max_length=16)
    executed: bool = False
    diff: str = "[]"                                      # JSON list of field diffs
    ts: float = Field(default=0.0, index=True)


class ResourceStateRow(SQLModel, table=True):
    __tablename__ = "resource_state"
    key: str = Field(primary_key=True, max_length=512)
    app: str = Field(default="", index=True, max_length=128)
    status: str = Field(default="synced", max_length=16)  # synced/create/update/delete/orphan
    desired: Optional[str] = None                         # JSON spec or null
    observed: Optional[str] = None
    updated: float = 0.0


class AppStateRow(SQLModel, table=True):
    __tablename__ = "app_state"
    app: str = Field(primary_key=True, max_length=128)
    revision: str = Field(default="", max_length=64)      # last revision applied to this app
    sync: str = Field(default=Sync.UNKNOWN.value, max_length=16)
    health: str = Field(default=Health.UNKNOWN.value, max_length=16)
    last_sync: Optional[float] = None                     # last successful sync (apply converged)
    last_scan: Optional[float] = None
    drift_count: int = 0
    self_heal: Optional[bool] = None                      # None: the repo's sync policy decides
    held_revision: str = Field(default="", max_length=64) # rollback hold ("" = following the branch)
    message: str = ""
    last_run: str = Field(default="", max_length=64)


class TargetRevisionRow(SQLModel, table=True):
    __tablename__ = "target_revisions"
    target: str = Field(primary_key=True, max_length=160)  # "layer/target"
    revision: str = Field(default="", max_length=64)
    run_id: str = Field(default="", max_length=64)
    applied: float = 0.0


class ServiceStateRow(SQLModel, table=True):
    """Service-wide key/values: the rollback hold, the last good revision, refusals."""
    __tablename__ = "service_state"
    name: str = Field(primary_key=True, max_length=64)
    value: str = ""
    updated: float = 0.0


@dataclass(frozen=True)
class AppStatus:
    app: str
    revision: str
    sync: Sync
    health: Health
    last_sync: float | None
    drift_count: int
    self_heal: bool | None        # per-app override; None = repo policy
    held_revision: str            # non-empty while a rollback holds auto-sync
    message: str = ""
    last_scan: float | None = None
    last_run: str = ""

    @property
    def held(self) -> bool:
        return bool(self.held_revision)


@dataclass(frozen=True)
class Hold:
    revision: str                 # the rollback revision being held
    branch_head: str              # branch head when the hold began; a newer head releases it
    since: float
