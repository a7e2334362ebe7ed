"""Reachability verification inside a transaction: what the change ADDED, not what was already wrong.

Contract: `ReachCheck(repo, layers, on_unknown)` is used once per transaction.
- `before(observed, targets)` is given the observation the transaction's first write starts
  from (every target of the run, unfiltered) and builds the verification model over it
  (`reconciler.verify.incremental.Incremental`) with the intents being applied. A target of
  the run with no resource observed is `unobserved` (its decisions are `unknown`).
- `after(changed, unobserved)` is given what the written targets look like after the apply,
  observed again; only the destinations that read one of them are re-evaluated (the
  incremental mode), then every pair's finding is compared with its finding before.
- A `ReachOutcome` lists the pairs whose violation or leak the change ADDED (none before, or a
  less severe leak before), the pairs that were decided before and are `unknown` now, the pairs
  `unknown` before with a violation or leak now (`unproven`: maybe there before), and how many
  findings the change fixed. `problem()` is the reason to roll back: any added violation or
  leak; `unknown` and `unproven` pairs only with `OnUnknown.ROLLBACK`;
  it names the pair and the hop that decides it. Findings present before are never the
  change's fault (docs/transactions.md says why), and pure: no device is read here.
"""
from __future__ import annotations

import enum
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Mapping, Sequence

from reconciler.intents.models import IntentRepo
from reconciler.model import Layer, Resource
from reconciler.verify.compare import LEAK, UNKNOWN_KIND, VIOLATION, Finding
from reconciler.verify.incremental import Incremental

TargetId = tuple[Layer, str]
ENV_ON_UNKNOWN = "RECONCILER_TXN_ON_UNKNOWN"
_LEAK_RANK = {"masked": 1, "l4": 2, "end-to-end": 3}


class OnUnknown(str, enum.Enum):
    """What a pair that the change leaves `unknown` (decided before) does to the transaction."""

    KEEP = "keep"            # reported in the transaction record; does not roll back by itself
    ROLLBACK = "rollback"    # rolls back like an added violation

    @classmethod
    def of(cls, value: str | None) -> "OnUnknown":
        return cls(value) if value else cls.KEEP


def finding_line(f: Finding) -> str:
    """`violation shop/web@10.50.1.11 -> shop/api@10.50.1.21:8080 at host h3: nftables ...: deny (...)`."""
    what = f"{f.kind}{' ' + f.extent if f.extent else ''} {f.source.id} -> {f.dest.id}"
    hops = f.hops[:1] if f.kind == VIOLATION else f.hops[:2]
    return what + (" at " + "; ".join(str(h) for h in hops) if hops else "")


@dataclass
class ReachOutcome:
    added: list[Finding] = field(default_factory=list)       # violations and leaks the change caused
    unknown: list[Finding] = field(default_factory=list)     # decided before, unknown after
    unproven: list[Finding] = field(default_factory=list)    # unknown before, violation/leak after
    fixed: int = 0                                           # findings before that are gone after
    recomputed: int = 0
    seconds: float = 0.0
    on_unknown: OnUnknown = OnUnknown.KEEP

    def problem(self) -> str:
        bad = list(self.added) + (self.unknown + self.unproven if self.on_unknown is OnUnknown.ROLLBACK else [])
        if not bad:
            return ""
        more = f" (+{len(bad) - 5} more)" if len(bad) > 5 else ""
        return "reachability: the change added " + "; ".join(finding_line(f) for f in bad[:5]) + more

    def rows(self) -> list[tuple[str, Finding]]:
        """(change, finding) for the transaction record."""
        return ([("added", f) for f in self.added] + [("unknown", f) for f in self.unknown]
                + [("unproven", f) for f in self.unproven])


def _pair(f: Finding) -> tuple[str, str]:
    return f.source.id, f.dest.id


def _worse(after: Finding, before: Finding | None) -> bool:
    """Whether `after` (a violation or a leak) is new or worse than what the pair had before."""
    if before is None or before.kind != after.kind:
        return True
    return after.kind == LEAK and _LEAK_RANK.get(after.extent, 0) > _LEAK_RANK.get(before.extent, 0)


# () -> (resources, {(layer, target): why unobserved}) of the targets a run did not observe itself
Baseline = Callable[[], tuple[list[Resource], Mapping[tuple[str, str], str]]]


class ReachCheck:
    def __init__(self, repo: IntentRepo, layers: Iterable[Layer | str] | None = None,
                 on_unknown: OnUnknown = OnUnknown.KEEP, baseline: Baseline | None = None) -> None:
        self.repo = repo
        # the latest observation of targets this run does not observe (the daemon's cache): a sync
        # that reads only the targets its change touches still judges pairs that cross the others
        self.baseline = baseline
        self.layers = [l.value if isinstance(l, Layer) else l for l in layers] if layers is not None else None
        self.on_unknown = on_unknown
        self.inc: Incremental | None = None
        self.unobserved: dict[tuple[str, str], str] = {}
        self._before: dict[tuple[str, str], Finding] = {}

    @property
    def ready(self) -> bool:
        return self.inc is not None

    def before(self, observed: Iterable[Resource], targets: Iterable[TargetId]) -> float:
        """Model the pre-transaction observation; the seconds it took."""
        t0 = time.perf_counter()
        resources = list(observed)
        seen = {(r.key.layer, r.key.target) for r in resources}
        cached: dict[tuple[str, str], str] = {}
        if self.baseline is not None:
            base, base_unobserved = self.baseline()
            resources += [r for r in base if (r.key.layer, r.key.target) not in seen]
            cached = {k: v for k, v in base_unobserved.items() if (Layer(k[0]), k[1]) not in seen}
            seen |= {(r.key.layer, r.key.target) for r in base}
        self.unobserved = {**cached, **{(l.value, n): "not observed before the transaction" for l, n in targets
                                        if (l, n) not in seen}}
        self.inc = Incremental(self.repo, resources, self.unobserved, self.layers)
        self._before = {_pair(f): f for f in self.inc.findings()}
        return time.perf_counter() - t0

    def after(self, changed: Mapping[TargetId, Sequence[Resource]],
              unreachable: Mapping[TargetId, str] = {}) -> ReachOutcome:
        """Compare with the pre-transaction findings once `changed` targets were observed again
        (targets in `unreachable` could not be: their decisions become `unknown`)."""
        assert self.inc is not None, "before() first"
        t0 = time.perf_counter()
        unobserved = {k: v for k, v in self.unobserved.items()
                      if (Layer(k[0]), k[1]) not in changed or (Layer(k[0]), k[1]) in unreachable}
        for (l, n), why in unreachable.items():
            unobserved[(l.value, n)] = f"not observed after the change: {why}"
        delta = self.inc.update_targets({t: list(rs) for t, rs in changed.items() if t not in unreachable},
                                        unobserved)
        out = ReachOutcome(recomputed=delta.recomputed, on_unknown=self.on_unknown)
        now = {_pair(f): f for f in self.inc.findings()}
        for key, f in sorted(now.items()):
            was = self._before.get(key)
            if f.kind in (VIOLATION, LEAK) and was is not None and was.kind == UNKNOWN_KIND:
                out.unproven.append(f)
            elif f.kind in (VIOLATION, LEAK) and _worse(f, was):
                out.added.append(f)
            elif f.kind == UNKNOWN_KIND and was is None:
                out.unknown.append(f)
        out.fixed = sum(1 for k in self._before if k not in now)
        out.seconds = time.perf_counter() - t0
        return out
