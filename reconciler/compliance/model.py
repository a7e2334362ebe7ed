"""Frozen values of a compliance report: per application, per layer and per target.

Contract: `ComplianceStatus` is the one vocabulary of the report (in-sync, drifted, unknown,
unreachable); `Counts` (fields in the order of `STATUSES`) counts resources by it and names the worst status they carry
(drifted > unreachable > unknown > in-sync: a proven difference outranks a target that could
not be seen). `ComplianceReport.to_json()` is the stable JSON form that the CLI, the daemon's
`GET /report` and the csv/html renderers read. Times are UNIX epoch seconds (UTC).
"""
from __future__ import annotations

import enum
import time
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from reconciler.model import Layer

FABRIC_LABEL = "(fabric)"   # resources no application claims (leaf BGP, uplink isolation)


class ComplianceStatus(str, enum.Enum):
    IN_SYNC = "in-sync"
    DRIFTED = "drifted"
    UNKNOWN = "unknown"
    UNREACHABLE = "unreachable"

    @property
    def severity(self) -> int:
        return _SEVERITY[self]

    @property
    def compliant(self) -> bool:
        return self is ComplianceStatus.IN_SYNC


_SEVERITY = {ComplianceStatus.IN_SYNC: 0, ComplianceStatus.UNKNOWN: 1, ComplianceStatus.UNREACHABLE: 2,
             ComplianceStatus.DRIFTED: 3}
STATUSES = tuple(ComplianceStatus)


class Counts(NamedTuple):
    """Resources by status; `status` is the worst one present (UNKNOWN when there are none).
    A named tuple, as `TargetCompliance`: a report holds one per (app, target), ~100,000 at
    10,000 apps, and a frozen dataclass sets each field in Python."""

    in_sync: int = 0
    drifted: int = 0
    unknown: int = 0
    unreachable: int = 0

    @property
    def total(self) -> int:
        return self.in_sync + self.drifted + self.unknown + self.unreachable

    def get(self, status: ComplianceStatus) -> int:
        return self[STATUSES.index(status)]

    @property
    def status(self) -> ComplianceStatus:
        if self.drifted:
            return ComplianceStatus.DRIFTED
        if self.unreachable:
            return ComplianceStatus.UNREACHABLE
        if self.unknown or not self.in_sync:
            return ComplianceStatus.UNKNOWN
        return ComplianceStatus.IN_SYNC

    def to_json(self) -> dict[str, int]:
        return {"in_sync": self.in_sync, "drifted": self.drifted, "unknown": self.unknown,
                "unreachable": self.unreachable, "total": self.total}


def add_counts(items: list[Counts]) -> Counts:
    return Counts(sum(c.in_sync for c in items), sum(c.drifted for c in items), sum(c.unknown for c in items),
                  sum(c.unreachable for c in items))


class TargetCompliance(NamedTuple):
    layer: Layer
    target: str
    counts: Counts

    @property
    def status(self) -> ComplianceStatus:
        return self.counts.status

    def to_json(self) -> dict[str, Any]:
        return {"target": self.target, "status": self.status.value, "resources": self.counts.to_json()}


@dataclass(frozen=True)
class LastChange:
    """The newest run that changed one of the app's resources on a device."""

    run_id: str
    revision: str
    at: float
    trigger: str
    resources: int          # the app's resources that run changed

    def to_json(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "commit": self.revision, "at": self.at, "trigger": self.trigger,
                "resources": self.resources}


@dataclass(frozen=True)
class Violation:
    """An allowed flow the network blocks (or, kind `leak`, a flow it lets through unasked)."""

    kind: str
    source: str
    dest: str
    port: int

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "source": self.source, "dest": self.dest, "port": self.port}

    def __str__(self) -> str:
        return f"{self.kind} {self.source} -> {self.dest}"   # a destination's id names its port


@dataclass(frozen=True)
class AppCompliance:
    app: str                                # FABRIC_LABEL for resources no application claims
    counts: Counts
    targets: tuple[TargetCompliance, ...]   # in layer order, then by target name
    revision: str = ""                      # last revision applied to the app (store)
    last_change: LastChange | None = None
    changes: int = 0                        # resources changed inside the report's window
    converged_at: float | None = None       # last time the app was seen in sync
    seconds_since_converged: float | None = None
    violations: tuple[Violation, ...] | None = None   # None: no verification covers this app
    note: str = ""                          # why figures are missing, what the store said

    @property
    def status(self) -> ComplianceStatus:
        return self.counts.status

    def layers(self) -> dict[Layer, list[TargetCompliance]]:
        out: dict[Layer, list[TargetCompliance]] = {}
        for t in self.targets:
            out.setdefault(t.layer, []).append(t)
        return out

    def to_json(self) -> dict[str, Any]:
        return {"app": self.app, "status": self.status.value, "resources": self.counts.to_json(),
                "revision": self.revision,
                "layers": {layer.value: {"status": add_counts([t.counts for t in ts]).status.value,
                                         "resources": add_counts([t.counts for t in ts]).to_json(),
                                         "targets": [t.to_json() for t in ts]}
                           for layer, ts in self.layers().items()},
                "last_change": None if self.last_change is None else self.last_change.to_json(),
                "changes": self.changes, "converged_at": self.converged_at,
                "seconds_since_converged": self.seconds_since_converged,
                "violations": None if self.violations is None else [v.to_json() for v in self.violations],
                "note": self.note}


@dataclass(frozen=True)
class Verification:
    """Where the reachability figures come from; `available` False leaves every app's
    `violations` empty (None) and `note` says why."""

    available: bool
    source: str = ""        # "observe" (verified on the fresh observation) or "store"
    note: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"available": self.available, "source": self.source, "note": self.note}


@dataclass(frozen=True)
class ComplianceReport:
    generated_at: float
    source: str                              # "store" (--cached) or "store+observe"
    apps: tuple[AppCompliance, ...]
    since: float | None = None
    applied_revision: str = ""               # what the daemon last applied (store)
    intents_revision: str = ""               # the intents a fresh observe compared with
    verification: Verification = field(default_factory=lambda: Verification(False))
    unobserved: tuple[tuple[str, str, str], ...] = ()   # (layer, target, reason) of a fresh observe

    def totals(self) -> Counts:
        return add_counts([a.counts for a in self.apps])

    def apps_by_status(self) -> dict[str, int]:
        out = {s.value: 0 for s in ComplianceStatus}
        for a in self.apps:
            out[a.status.value] += 1
        return out

    def to_json(self) -> dict[str, Any]:
        return {"generated_at": self.generated_at, "source": self.source, "since": self.since,
                "applied_revision": self.applied_revision, "intents_revision": self.intents_revision,
                "verification": self.verification.to_json(),
                "summary": {"apps": len(self.apps), "apps_by_status": self.apps_by_status(),
                            "resources": self.totals().to_json()},
                "unobserved": [{"layer": lay, "target": t, "reason": why} for lay, t, why in self.unobserved],
                "apps": [a.to_json() for a in self.apps]}


def iso(ts: float | None) -> str:
    """A timestamp as the report prints it (UTC, ISO 8601), or "" for none."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts)) if ts else ""
