"""Compare verdicts with the intents: violations, leaks, unknowns, per application (pure).

Contract: `classify(src, dst, allowed, verdict)` returns a `Finding` or None:
  violation  allowed, but `dropped` end to end; `hops` are the hops that deny, the first one is
             the blocking hop.
  leak       not allowed, yet something lets it through; `hops` name every permitting hop:
             extent `end-to-end`  delivered (the connect and, with a sidecar, the call);
             extent `l4`          the TCP connect reaches the port; the call is refused (`blocking`);
             extent `masked`      an enforcement point (the destination's nftables or the sidecar's
                                  RBAC) admits it, while another hop still drops it (`blocking`):
                                  default deny no longer holds at that layer.
  unknown    the verdict is `unknown` (an allowed pair that cannot be shown delivered, or a pair
             not allowed that cannot be shown dropped); `hops` are the undecided hops.
`compare(results)` gives a `Comparison`: findings, per-app counts and totals; `exit_code()` is
0 with neither violation nor leak nor unknown, 1 with a violation or a leak, 2 otherwise (the
network could not be verified: a target was not observed or a rule is not understood).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

from reconciler.verify.model import DENY, ENFORCE, L4_LAYERS, PERMIT, UNKNOWN, Hop
from reconciler.verify.pairs import Dest, Source
from reconciler.verify.verdict import DELIVERED, DROPPED, UNDECIDED, DestResult, Verdict

VIOLATION, LEAK, UNKNOWN_KIND = "violation", "leak", "unknown"


@dataclass(frozen=True)
class Finding:
    kind: str
    extent: str
    source: Source
    dest: Dest
    allowed: bool
    hops: tuple[Hop, ...]
    blocking: tuple[Hop, ...]
    verdict: Verdict

    @property
    def app(self) -> str:
        return self.dest.app

    def to_json(self) -> dict:
        return {"kind": self.kind, "extent": self.extent, "app": self.app, "source": self.source.id,
                "source_app": self.source.app, "dest": self.dest.id, "port": self.dest.port,
                "port_name": self.dest.port_name, "allowed": self.allowed,
                "hops": [h.to_json() for h in self.hops], "blocking": [h.to_json() for h in self.blocking],
                "verdict": self.verdict.to_json()}


def _permits(hops: Iterable[Hop]) -> tuple[Hop, ...]:
    hops = [h for h in hops if h.decision == PERMIT]
    return tuple(sorted(hops, key=lambda h: h.kind != ENFORCE))


def classify(src: Source, dst: Dest, allowed: bool, v: Verdict) -> Finding | None:
    denies = tuple(h for h in v.hops if h.decision == DENY)
    unknown = tuple(h for h in v.hops if h.decision == UNKNOWN)
    if allowed:
        if v.outcome == DROPPED:
            return Finding(VIOLATION, "", src, dst, True, denies, (), v)
        if v.outcome == UNDECIDED:
            return Finding(UNKNOWN_KIND, "", src, dst, True, unknown, (), v)
        return None
    if v.outcome == DELIVERED:
        return Finding(LEAK, "end-to-end", src, dst, False, _permits(v.hops), (), v)
    if v.l4 == DELIVERED:
        return Finding(LEAK, "l4", src, dst, False, _permits(h for h in v.hops if h.layer in L4_LAYERS),
                       tuple(h for h in v.hops if h.decision != PERMIT), v)
    if v.outcome == DROPPED:
        admitted = tuple(h for h in v.hops if h.kind == ENFORCE and h.decision == PERMIT)
        if admitted:
            return Finding(LEAK, "masked", src, dst, False, admitted, denies, v)
        return None
    return Finding(UNKNOWN_KIND, "", src, dst, False, unknown, (), v)


@dataclass
class AppCounts:
    pairs: int = 0
    delivered: int = 0
    dropped: int = 0
    unknown: int = 0
    others: int = 0                      # sources covered by a representative, all dropped
    violations: int = 0
    leaks: int = 0
    unknowns: int = 0

    def to_json(self) -> dict:
        return dict(self.__dict__)


@dataclass
class Comparison:
    findings: list[Finding] = field(default_factory=list)
    apps: dict[str, AppCounts] = field(default_factory=dict)
    results: list[DestResult] = field(default_factory=list)

    def count(self, kind: str) -> int:
        return sum(1 for f in self.findings if f.kind == kind)

    def exit_code(self) -> int:
        if self.count(VIOLATION) or self.count(LEAK):
            return 1
        return 2 if self.count(UNKNOWN_KIND) else 0

    def totals(self) -> AppCounts:
        t = AppCounts()
        for c in self.apps.values():
            for k in t.__dict__:
                setattr(t, k, getattr(t, k) + getattr(c, k))
        return t


def compare(results: Iterable[DestResult]) -> Comparison:
    out = Comparison(results=list(results))
    for r in out.results:
        counts = out.apps.setdefault(r.dest.app, AppCounts())
        counts.others += r.others
        for src, allowed, v in r.pairs:
            counts.pairs += 1
            setattr(counts, v.outcome, getattr(counts, v.outcome) + 1)
            f = classify(src, r.dest, allowed, v)
            if f is None:
                continue
            out.findings.append(f)
            if f.kind == VIOLATION:
                counts.violations += 1
            elif f.kind == LEAK:
                counts.leaks += 1
            else:
                counts.unknowns += 1
    return out
