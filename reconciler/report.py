"""Reports of an engine run: one `TargetReport` per target and the `RunReport` of the run.

Contract: plain data the engine fills in and hands to its callers (CLI, daemon, tests);
`RunReport.converged` is true only when nothing is left to change and every target ended ok;
`to_json()` gives the stable JSON form the CLI prints.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from reconciler.model import Layer
from reconciler.plan import Plan
from reconciler.status import Outcome, Phase


@dataclass
class TargetReport:
    layer: Layer
    target: str
    outcome: Outcome = Outcome.NOOP
    writes: int = 0
    error: str = ""
    rolled_back: bool = False
    apps: set[str] = field(default_factory=set)
    details: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.outcome.ok

    def to_json(self) -> dict:
        return {"layer": self.layer.value, "target": self.target, "outcome": self.outcome.value,
                "writes": self.writes, "error": self.error, "rolled_back": self.rolled_back,
                "apps": sorted(self.apps)}


@dataclass
class RunReport:
    run_id: str
    revision: str
    phase: Phase
    started: float
    duration_s: float
    initial: Plan
    residual: Plan
    targets: dict[tuple[Layer, str], TargetReport]
    attempts: int
    dry_run: bool
    # (layer, target) -> {(key, app)} of desired resources on targets that were never observed
    unknown: dict = field(default_factory=dict)

    @property
    def converged(self) -> bool:
        return self.residual.empty and all(t.ok for t in self.targets.values())

    @property
    def writes(self) -> int:
        return sum(t.writes for t in self.targets.values())

    def apps(self) -> list[str]:
        return sorted({c.app for c in self.initial.drift} | {a for t in self.targets.values() for a in t.apps})

    def to_json(self) -> dict:
        return {"run_id": self.run_id, "revision": self.revision, "phase": self.phase.value,
                "duration_s": round(self.duration_s, 3), "attempts": self.attempts, "dry_run": self.dry_run,
                "converged": self.converged, "writes": self.writes,
                "initial": self.initial.to_json(), "residual": self.residual.to_json(),
                "targets": [self.targets[k].to_json()
                            for k in sorted(self.targets, key=lambda k: (k[0].create_rank, k[1]))]}
