"""JSON and CSV forms of a `ComplianceReport` (pure), and the one dispatcher over every format.

Contract: `render(report, fmt)` returns (text, media type) for fmt in `FORMATS`; an unknown
format raises `ValueError` naming the known ones. JSON is `report.to_json()` (sorted keys, compact).
CSV has one row per application, layer and target (an application with no recorded resources
gets one row with empty layer and target) under the header `CSV_COLUMNS`; the application's own
figures repeat on each of its rows so any row stands alone in a spreadsheet. A cell that a
spreadsheet would read as a formula (starting with = + - @ or a control character) is prefixed
with an apostrophe.
"""
from __future__ import annotations

import csv
import io
import json
from typing import Any

from reconciler.compliance.model import AppCompliance, ComplianceReport, iso
from reconciler.verify.addr import no_gc

FORMATS = ("json", "csv", "html")
MEDIA_TYPES = {"json": "application/json", "csv": "text/csv; charset=utf-8", "html": "text/html; charset=utf-8"}
CSV_COLUMNS = ("app", "app_status", "layer", "target", "status", "in_sync", "drifted", "unknown", "unreachable",
               "revision", "last_change_at", "last_change_commit", "last_change_run", "changes",
               "seconds_since_converged", "violations")
_FORMULA = ("=", "+", "-", "@", "\t", "\r")


def render(report: ComplianceReport, fmt: str) -> tuple[str, str]:
    with no_gc():   # the JSON form is ~1,000,000 small dicts and lists, none in a cycle
        return _render(report, fmt)


def _render(report: ComplianceReport, fmt: str) -> tuple[str, str]:
    if fmt == "json":
        # compact: at 10,000 apps an indented form is 35 MB and Python's slow encoder (jq indents)
        return json.dumps(report.to_json(), sort_keys=True, separators=(",", ":")) + "\n", MEDIA_TYPES[fmt]
    if fmt == "csv":
        return render_csv(report), MEDIA_TYPES[fmt]
    if fmt == "html":
        from reconciler.compliance.html import render_html
        return render_html(report), MEDIA_TYPES[fmt]
    raise ValueError(f"unknown format {fmt!r} (known: {', '.join(FORMATS)})")


def _cell(v: Any) -> Any:
    if isinstance(v, str) and v.startswith(_FORMULA):
        return "'" + v
    return v


def _app_cells(a: AppCompliance) -> dict[str, Any]:
    lc = a.last_change
    return {"app": a.app, "app_status": a.status.value, "revision": a.revision,
            "last_change_at": iso(lc.at) if lc else "", "last_change_commit": lc.revision if lc else "",
            "last_change_run": lc.run_id if lc else "", "changes": a.changes,
            "seconds_since_converged": "" if a.seconds_since_converged is None else a.seconds_since_converged,
            "violations": "" if a.violations is None else len(a.violations)}


def render_csv(report: ComplianceReport) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for a in report.apps:
        base = _app_cells(a)
        rows = [{"layer": t.layer.value, "target": t.target, "status": t.status.value,
                 "in_sync": t.counts.in_sync, "drifted": t.counts.drifted, "unknown": t.counts.unknown,
                 "unreachable": t.counts.unreachable} for t in a.targets] or \
               [{"layer": "", "target": "", "status": a.status.value, "in_sync": 0, "drifted": 0, "unknown": 0,
                 "unreachable": 0}]
        for r in rows:
            merged = {**base, **r}
            w.writerow([_cell(merged[c]) for c in CSV_COLUMNS])
    return buf.getvalue()
