"""Differential verification: the reachability a commit range adds or removes, per application.

Contract: `diff_range(repo_dir, from_rev, to_rev, inventory)` loads and compiles both revisions
through reconciler.revision.load_revision (no device is touched; the work tree is not read),
evaluates the model on each revision's *desired* state as if the network had converged to it,
and returns a `RangeDiff`: per application the pairs (source, destination, port) delivered after
and not before (`added`) and before and not after (`removed`), plus the comparison of each
revision with its own intents (a revision whose own desired state has a violation or a leak
is a compile or design defect worth seeing before merge).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from reconciler.revision import load_revision
from reconciler.verify.compare import Comparison, compare
from reconciler.verify.observe import model_of
from reconciler.verify.verdict import DELIVERED, Verifier

Pair = tuple[str, str, str]          # (source id, destination id, "port/proto")


@dataclass
class RangeDiff:
    from_rev: str
    to_rev: str
    added: dict[str, list[Pair]] = field(default_factory=dict)
    removed: dict[str, list[Pair]] = field(default_factory=dict)
    before: Comparison | None = None
    after: Comparison | None = None

    @property
    def changed(self) -> bool:
        return any(self.added.values()) or any(self.removed.values())

    def to_json(self) -> dict[str, Any]:
        apps = sorted(set(self.added) | set(self.removed))
        return {"from": self.from_rev, "to": self.to_rev,
                "apps": {a: {"added": [list(p) for p in self.added.get(a, [])],
                             "removed": [list(p) for p in self.removed.get(a, [])]} for a in apps},
                "before": self.before.totals().to_json() if self.before else None,
                "after": self.after.totals().to_json() if self.after else None}

    def render(self) -> str:
        lines = [f"reachability {self.from_rev[:12]}..{self.to_rev[:12]} (desired state of each revision, "
                 "no device touched)"]
        for app in sorted(set(self.added) | set(self.removed)):
            lines.append(f"{app}: +{len(self.added.get(app, []))} -{len(self.removed.get(app, []))}")
            lines += [f"  + {s} -> {d} {p}" for s, d, p in self.added.get(app, [])]
            lines += [f"  - {s} -> {d} {p}" for s, d, p in self.removed.get(app, [])]
        if not self.changed:
            lines.append("no reachability change")
        for name, c in (("before", self.before), ("after", self.after)):
            if c is not None:
                t = c.totals()
                lines.append(f"{name}: {t.violations} violation(s), {t.leaks} leak(s), {t.unknowns} unknown "
                             "against its own intents")
        return "\n".join(lines) + "\n"


def reachable(cmp: Comparison) -> dict[str, set[Pair]]:
    out: dict[str, set[Pair]] = {}
    for r in cmp.results:
        for src, _, v in r.pairs:
            if v.outcome == DELIVERED:
                out.setdefault(r.dest.app, set()).add((src.id, r.dest.id, f"{r.dest.port}/{r.dest.proto}"))
    return out


def verify_desired(compiled) -> Comparison:
    m, scope = model_of(compiled.repo, compiled.desired)
    return compare(Verifier(m, scope).run())


def diff_range(repo_dir: str, from_rev: str, to_rev: str, inventory: str | None = None) -> RangeDiff:
    before = load_revision(repo_dir, from_rev, inventory)
    after = load_revision(repo_dir, to_rev, inventory)
    cb, ca = verify_desired(before), verify_desired(after)
    rb, ra = reachable(cb), reachable(ca)
    out = RangeDiff(before.revision, after.revision, before=cb, after=ca)
    for app in sorted(set(rb) | set(ra)):
        add, rem = sorted(ra.get(app, set()) - rb.get(app, set())), sorted(rb.get(app, set()) - ra.get(app, set()))
        if add:
            out.added[app] = add
        if rem:
            out.removed[app] = rem
    return out
