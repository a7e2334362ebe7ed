"""Shapes of the compliance report's csv and html forms (pure renderers).

The html must be one self-contained file (no external asset, no network fetch), with sortable
tables and a drill-down whose data is every target of every application, and must escape
every text: names below are chosen to break out of markup, attributes and the script element.
"""
from __future__ import annotations

import csv
import io
import json
import re
from html.parser import HTMLParser

import pytest

from reconciler.compliance.model import (
    AppCompliance,
    ComplianceReport,
    Counts,
    LastChange,
    TargetCompliance,
    Verification,
    Violation,
)
from reconciler.compliance.render import CSV_COLUMNS, render
from reconciler.model import Layer

EVIL_APP = '<img src=x onerror="alert(1)">&amp;'
EVIL_TARGET = "</script><script>alert(2)</script>"
EVIL_NOTE = "h1: error <b>bold</b> & 'quoted'"


def _report() -> ComplianceReport:
    shop = AppCompliance(
        app="shop", counts=Counts(10, 2, 0, 0),
        targets=(TargetCompliance(Layer.SWITCH, "leaf1", Counts(4, 0, 0, 0)),
                 TargetCompliance(Layer.HOST, "h3", Counts(6, 2, 0, 0))),
        revision="a" * 40, last_change=LastChange("run-9", "b" * 40, 1_764_000_000.0, "self-heal", 2), changes=7,
        converged_at=1_763_990_000.0, seconds_since_converged=10_000.0,
        violations=(Violation("violation", "billing/invoicer@10.50.2.11", "shop/api@10.50.1.21:8080", 8080),))
    evil = AppCompliance(app=EVIL_APP, counts=Counts(0, 0, 0, 3),
                         targets=(TargetCompliance(Layer.SIDECAR, EVIL_TARGET, Counts(0, 0, 0, 3)),),
                         note=EVIL_NOTE, violations=None)
    empty = AppCompliance(app="=HYPERLINK(\"x\")", counts=Counts(), targets=(), note="no per-resource state")
    return ComplianceReport(generated_at=1_764_000_100.0, source="store", apps=(shop, evil, empty),
                            applied_revision="c" * 40, verification=Verification(True, "store", ""))


class _Collect(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []
        self.scripts: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self._in_script = tag == "script"

    def handle_endtag(self, tag):
        self._in_script = False

    def handle_data(self, data):
        (self.scripts if self._in_script else self.text).append(data)


def test_json_is_the_report_data():
    report = _report()
    text, ctype = render(report, "json")
    assert ctype == "application/json" and json.loads(text) == json.loads(json.dumps(report.to_json()))


def test_csv_one_row_per_app_and_target_formulas_neutralised():
    text, ctype = render(_report(), "csv")
    assert ctype.startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert tuple(csv.reader(io.StringIO(text)).__next__()) == CSV_COLUMNS
    assert [(r["app"], r["layer"], r["target"], r["status"]) for r in rows] == [
        ("shop", "switch", "leaf1", "in-sync"), ("shop", "host", "h3", "drifted"),
        (EVIL_APP, "sidecar", EVIL_TARGET, "unreachable"), ("'=HYPERLINK(\"x\")", "", "", "unknown")]
    h3 = rows[1]
    assert (h3["in_sync"], h3["drifted"], h3["app_status"], h3["last_change_commit"], h3["last_change_run"],
            h3["changes"], h3["violations"]) == ("6", "2", "drifted", "b" * 40, "run-9", "7", "1")
    assert h3["last_change_at"] == "2025-11-24T16:00:00Z" and h3["seconds_since_converged"] == "10000.0"
    assert rows[2]["violations"] == ""   # not verified is empty, not 0


def test_html_is_self_contained_sortable_and_escaped():
    report = _report()
    text, ctype = render(report, "html")
    assert ctype.startswith("text/html") and text.startswith("<!DOCTYPE html>")
    p = _Collect()
    p.feed(text)
    # self-contained: no element loads anything, every link is an anchor in the page
    assert not any("src" in attrs for _, attrs in p.tags)
    assert not any(tag == "link" for tag, _ in p.tags)
    assert all(attrs["href"].startswith("#") for tag, attrs in p.tags if tag == "a")
    assert not re.search(r"https?://|@import|url\(", text)
    # escaped: no hostile text survives as markup
    for evil in (EVIL_APP, EVIL_TARGET, "<b>bold</b>", "<img"):
        assert evil not in text
    assert text.count("<script") == 2 and text.count("</script>") == 2
    assert EVIL_APP in "".join(p.text)     # shown as text
    # sortable tables: the application table has a typed header per column
    assert ("table", {"id": "apps", "class": "sortable"}) in p.tags
    assert "data-t" in text and "addEventListener(\"click\"" in text


def test_html_drill_down_data_has_every_target_of_every_app():
    report = _report()
    text, _ = render(report, "html")
    p = _Collect()
    p.feed(text)
    data = json.loads(next(s for s in p.scripts if s.lstrip().startswith("{")))
    assert set(data["apps"]) == {a.app for a in report.apps}
    for a in report.apps:
        got = data["apps"][a.app]
        assert [(data["layers"][t[0]], t[1], t[2:]) for t in got["t"]] == [
            (t.layer.value, t.target, [t.counts.in_sync, t.counts.drifted, t.counts.unknown, t.counts.unreachable])
            for t in a.targets]
    assert "v" not in data["apps"][EVIL_APP] and data["apps"]["shop"]["v"] == [
        "violation billing/invoicer@10.50.2.11 -> shop/api@10.50.1.21:8080"]
    run, n = data["apps"]["shop"]["lc"]
    assert data["runs"][run] == ["run-9", "b" * 40, "2025-11-24T16:00:00Z", "self-heal"] and n == 2
    assert data["apps"][EVIL_APP]["n"] == EVIL_NOTE
    # each application's row links to its drill-down
    assert {attrs["href"] for tag, attrs in p.tags if tag == "a"} == {f"#app={a.app}" for a in report.apps}


def test_unknown_format_is_refused():
    with pytest.raises(ValueError, match="unknown format 'xml'"):
        render(_report(), "xml")
