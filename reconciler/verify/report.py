"""Printable and JSON forms of a verification (pure).

Contract: `render_text(cmp, ...)` gives per application its counts, then every finding with the
hops that decide it (the blocking hop first for a violation; every permitting hop for a leak;
the undecided hops and their reasons for an unknown) and, with `witness=True`, the whole
path hop by hop. `to_json(cmp, ...)` gives the same as data: summary, per-app counts, findings
with their hops and every evaluated pair with its verdict (hops included when `hops=True`).
`render_probe` / `probe_json` show model-versus-probe disagreements as model defects.
"""
from __future__ import annotations

from typing import Any, Iterable

from reconciler.verify.compare import LEAK, UNKNOWN_KIND, VIOLATION, Comparison, Finding
from reconciler.verify.model import Hop

_TITLE = {VIOLATION: "VIOLATION", LEAK: "LEAK", UNKNOWN_KIND: "UNKNOWN"}


def _hop_line(h: Hop) -> str:
    detail = f" — {h.detail}" if h.detail else ""
    return f"{h.leg:<7} {h.layer:<10} {h.device:<8} {h.what} {h.rule}: {h.decision}{detail}"


def _finding_lines(f: Finding, witness: bool) -> list[str]:
    port = f"{f.dest.port}/{f.dest.proto} ({f.dest.port_name})"
    v = f.verdict
    rpc = f", rpc {v.rpc}" if v.rpc is not None else ""
    allowed = "allowed" if f.allowed else "not allowed"
    extent = f" [{f.extent}]" if f.extent else ""
    out = [f"  {_TITLE[f.kind]}{extent} {f.source.id} -> {f.dest.id} {port}: {allowed}, l4 {v.l4}{rpc}"]
    if f.kind == VIOLATION:
        out.append(f"    blocked at: {_hop_line(f.hops[0])}")
        out += [f"    also:       {_hop_line(h)}" for h in f.hops[1:]]
    elif f.kind == LEAK:
        out += [f"    permitted:  {_hop_line(h)}" for h in f.hops]
        out += [f"    blocked:    {_hop_line(h)}" for h in f.blocking if h.decision != "permit"]
    else:
        shown = f.hops if witness else f.hops[:1]
        out += [f"    undecided:  {_hop_line(h)}" for h in shown]
        if len(f.hops) > len(shown):
            out.append(f"    ... and {len(f.hops) - len(shown)} more undecided hop(s) (--witness)")
    if witness:
        out.append("    witness:")
        out += [f"      {_hop_line(h)}" for h in v.hops]
    return out


def render_text(cmp: Comparison, witness: bool = False, title: str = "") -> str:
    lines = [title] if title else []
    by_app: dict[str, list[Finding]] = {}
    for f in cmp.findings:
        by_app.setdefault(f.app, []).append(f)
    for app in sorted(cmp.apps):
        c = cmp.apps[app]
        lines.append(f"{app}: {c.pairs} pair(s): {c.delivered} delivered, {c.dropped} dropped, {c.unknown} unknown; "
                     f"{c.others} other source(s) dropped at the destination; "
                     f"{c.violations} violation(s), {c.leaks} leak(s), {c.unknowns} unknown")
        for f in by_app.get(app, ()):
            lines += _finding_lines(f, witness)
    t = cmp.totals()
    verdict = {0: "verified: the network does what the intents allow, and nothing more",
               1: "NOT verified: violations or leaks", 2: "NOT verified: some verdicts are unknown"}[cmp.exit_code()]
    lines.append(f"{len(cmp.apps)} application(s), {t.pairs} pair(s) traced, {t.others} covered at their "
                 f"destination; {t.violations} violation(s), {t.leaks} leak(s), {t.unknowns} unknown: {verdict}")
    return "\n".join(lines) + "\n"


def to_json(cmp: Comparison, hops: bool = False) -> dict[str, Any]:
    pairs = []
    for r in cmp.results:
        for src, allowed, v in r.pairs:
            item: dict[str, Any] = {"app": r.dest.app, "source": src.id, "dest": r.dest.id, "port": r.dest.port,
                                    "allowed": allowed, "outcome": v.outcome, "l4": v.l4, "rpc": v.rpc}
            if hops:
                item["hops"] = [h.to_json() for h in v.hops]
            pairs.append(item)
        if r.others_verdict is not None:
            pairs.append({"app": r.dest.app, "source": f"({r.others} other sources)", "dest": r.dest.id,
                          "port": r.dest.port, "allowed": False, "outcome": r.others_verdict.outcome,
                          "l4": r.others_verdict.l4, "rpc": r.others_verdict.rpc,
                          "hops": [h.to_json() for h in r.others_verdict.hops]})
    t = cmp.totals()
    return {"summary": {**t.to_json(), "exit_code": cmp.exit_code()},
            "apps": {a: c.to_json() for a, c in sorted(cmp.apps.items())},
            "findings": [f.to_json() for f in cmp.findings], "pairs": pairs}


def render_probe(defects: Iterable[Any], probed: int) -> str:
    defects = list(defects)
    lines = [f"probe: {probed} pair(s) checked with TCP from inside the lab, {len(defects)} model defect(s)"]
    for d in defects:
        lines.append(f"  MODEL DEFECT {d.source} -> {d.dest}: model says {d.model}, probe {d.probe} ({d.detail})")
    return "\n".join(lines) + "\n"


def probe_json(defects: Iterable[Any], probed: int) -> dict[str, Any]:
    return {"probed": probed, "defects": [d._asdict() for d in defects]}
