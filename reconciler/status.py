"""Status vocabularies shared by engine, store, CLI and TUI.

Contract: every status is an enum with predicates; no stage compares status strings.
"""
from __future__ import annotations

import enum


class Action(str, enum.Enum):
    CREATE = "create"
    UPDATE = "update"
    DELETE = "delete"

    @property
    def symbol(self) -> str:
        return {"create": "+", "update": "~", "delete": "-"}[self.value]


class Outcome(str, enum.Enum):
    """Result of one target (or one resource) in one run."""

    NOOP = "noop"              # nothing to change
    APPLIED = "applied"        # changes written and verified
    DRY_RUN = "dry-run"        # changes computed, not written
    FAILED = "failed"          # device rejected the change or verification failed
    ROLLED_BACK = "rolled-back"  # failed, and the pre-change config was restored
    UNREACHABLE = "unreachable"  # could not connect / timed out
    SKIPPED = "skipped"        # not attempted (e.g. filtered out, sync window)

    @property
    def ok(self) -> bool:
        return self in (Outcome.NOOP, Outcome.APPLIED, Outcome.DRY_RUN, Outcome.SKIPPED)

    @property
    def wrote(self) -> bool:
        return self in (Outcome.APPLIED, Outcome.FAILED, Outcome.ROLLED_BACK)


class Sync(str, enum.Enum):
    SYNCED = "Synced"
    OUT_OF_SYNC = "OutOfSync"
    UNKNOWN = "Unknown"

    @property
    def in_sync(self) -> bool:
        return self is Sync.SYNCED


class Health(str, enum.Enum):
    HEALTHY = "Healthy"
    PROGRESSING = "Progressing"
    DEGRADED = "Degraded"
    UNKNOWN = "Unknown"

    @property
    def healthy(self) -> bool:
        return self is Health.HEALTHY


class Phase(str, enum.Enum):
    """Phase of a run."""

    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    INTERRUPTED = "interrupted"  # the process died mid-run; found on restart

    @property
    def finished(self) -> bool:
        return self is not Phase.RUNNING
