"""Reachability results in the store (SQLModel tables on the store's metadata) and their reads.

Contract: two tables, created by `Store.check_schema` like every table of the metadata (new
tables within a schema version need no migration):
  reachability_summary  one row per application: pairs traced and per verdict, violations,
                        leaks, unknowns, the revision and when it was verified;
  reachability_findings the findings of an application (kind, extent, source, destination,
                        port, and the hops as JSON: the deciding ones and the whole witness
                        path), at most MAX_FINDINGS per application (the counts stay exact).
`save(store, revision, counts, findings, apps)` replaces the rows of `apps` in one transaction.
`summaries(store)` -> {app: ReachSummary}; `findings(store, app)` -> [ReachFinding]. Hops hold
only names of devices, rules and flows (no secrets); texts still pass through REDACTOR.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Optional

from sqlmodel import Field, Session, SQLModel, delete, select

from reconciler.redact import REDACTOR

MAX_FINDINGS = 200


class ReachabilitySummaryRow(SQLModel, table=True):
    __tablename__ = "reachability_summary"
    app: str = Field(primary_key=True, max_length=128)
    revision: str = Field(default="", max_length=64)
    pairs: int = 0
    delivered: int = 0
    dropped: int = 0
    unknown: int = 0
    violations: int = 0
    leaks: int = 0
    unknowns: int = 0
    verified: float = 0.0


class ReachabilityFindingRow(SQLModel, table=True):
    __tablename__ = "reachability_findings"
    id: Optional[int] = Field(default=None, primary_key=True)
    app: str = Field(index=True, max_length=128)
    kind: str = Field(max_length=16)              # violation | leak | unknown
    extent: str = Field(default="", max_length=16)
    source: str = Field(max_length=256)
    dest: str = Field(max_length=256)
    port: str = Field(default="", max_length=64)
    allowed: bool = False
    hops: str = "[]"                              # JSON: the deciding hops
    witness: str = "[]"                           # JSON: every hop of the path


@dataclass(frozen=True)
class ReachSummary:
    app: str
    revision: str
    pairs: int
    violations: int
    leaks: int
    unknowns: int
    verified: float


@dataclass(frozen=True)
class ReachFinding:
    kind: str
    extent: str
    source: str
    dest: str
    port: str
    allowed: bool
    hops: tuple[dict, ...]
    witness: tuple[dict, ...]


def _row(app: str, f: Any) -> ReachabilityFindingRow:
    hops = [h.to_json() for h in f.hops] + [dict(h.to_json(), blocking=True) for h in f.blocking]
    return ReachabilityFindingRow(app=app, kind=f.kind, extent=f.extent, source=f.source.id, dest=f.dest.id,
                                  port=f"{f.dest.port}/{f.dest.proto} ({f.dest.port_name})", allowed=f.allowed,
                                  hops=json.dumps(REDACTOR.value(hops)),
                                  witness=json.dumps(REDACTOR.value([h.to_json() for h in f.verdict.hops])))


def save(store: Any, revision: str, counts: Mapping[str, Any], findings: Mapping[str, Iterable[Any]],
         apps: Iterable[str]) -> None:
    apps = sorted(set(apps))
    if not apps:
        return
    now = time.time()
    with Session(store.engine) as s:
        for i in range(0, len(apps), 500):
            chunk = apps[i:i + 500]
            s.exec(delete(ReachabilityFindingRow).where(ReachabilityFindingRow.app.in_(chunk)))  # type: ignore[attr-defined]
            s.exec(delete(ReachabilitySummaryRow).where(ReachabilitySummaryRow.app.in_(chunk)))  # type: ignore[attr-defined]
        for app in apps:
            c = counts.get(app)
            if c is None:
                continue
            s.add(ReachabilitySummaryRow(app=app, revision=revision, pairs=c.pairs, delivered=c.delivered,
                                         dropped=c.dropped, unknown=c.unknown, violations=c.violations,
                                         leaks=c.leaks, unknowns=c.unknowns, verified=now))
            for n, f in enumerate(findings.get(app, ())):
                if n >= MAX_FINDINGS:
                    break
                s.add(_row(app, f))
        s.commit()


def summaries(store: Any) -> dict[str, ReachSummary]:
    with Session(store.engine) as s:
        rows = s.exec(select(ReachabilitySummaryRow)).all()
    return {r.app: ReachSummary(r.app, r.revision, r.pairs, r.violations, r.leaks, r.unknowns, r.verified)
            for r in rows}


def findings(store: Any, app: str) -> list[ReachFinding]:
    with Session(store.engine) as s:
        rows = s.exec(select(ReachabilityFindingRow).where(ReachabilityFindingRow.app == app)
                      .order_by(ReachabilityFindingRow.id)).all()  # type: ignore[arg-type]
    return [ReachFinding(r.kind, r.extent, r.source, r.dest, r.port, r.allowed,
                         tuple(json.loads(r.hops)), tuple(json.loads(r.witness))) for r in rows]
