"""Compliance report on a store filled by REAL engine runs (snapshot driver, SQLite store).

Every figure is checked against what the engine's own RunReports say about the same runs:
resources per application and target, drift found by the scan, unreachable targets, the run
and commit of the last change, and the time since the last converged state.
"""
from __future__ import annotations

import json
from collections import Counter
from typing import Iterator

import pytest
from compliance_runs import FIREWALL_SET, REV1, REV2, UNREACHABLE_HOST, Runs

from reconciler.cli import main
from reconciler.compliance.build import UnknownApp, build_report
from reconciler.compliance.model import FABRIC_LABEL, ComplianceStatus
from reconciler.compliance.observe import observe_now
from reconciler.compliance.records import read_store
from reconciler.service.store import Store, sqlite_url


@pytest.fixture
def runs(tmp_path) -> Iterator[Runs]:
    r = Runs(tmp_path)
    yield r
    r.store.close()


def _report(runs: Runs, **kw):
    now = kw.pop("now", None) or max(r.finished or 0 for r in runs.store.runs(limit=10)) + 10.0
    return build_report(read_store(runs.store, kw.pop("since", None)), now=now, **kw)


def _by_app(report) -> dict:
    return {a.app: a for a in report.apps}


def _target_counts(app) -> Counter:
    return Counter({(t.layer.value, t.target): t.counts.total for t in app.targets})


def test_first_sync_every_resource_in_sync_with_its_run_and_commit(runs):
    r1 = runs.first()
    assert r1.converged
    report = _report(runs)
    apps = _by_app(report)
    want = runs.desired_counts()
    for name in runs.repo.apps:
        a = apps[name]
        assert a.status is ComplianceStatus.IN_SYNC
        assert _target_counts(a) == Counter({(lay, t): n for (app, lay, t), n in want.items() if app == name})
        assert a.counts.in_sync == a.counts.total == sum(n for (app, _, _), n in want.items() if app == name)
        n_changes = len(r1.initial.for_app(name).changes)
        assert a.last_change is not None and a.last_change.run_id == "run-1" and a.last_change.revision == REV1
        assert a.last_change.resources == a.changes == n_changes
        assert a.converged_at == runs.finished("run-1")
        assert a.seconds_since_converged == pytest.approx(report.generated_at - runs.finished("run-1"), abs=1e-3)
    assert report.totals().total == sum(want.values())
    assert report.verification.available is False and "no reachability results" in report.verification.note
    assert all(a.violations is None for a in report.apps)


def test_drift_scan_figures_match_the_scan(runs):
    runs.first()
    runs.drift()
    r2 = runs.scan()
    apps = _by_app(_report(runs))
    shop = apps["shop"]
    assert shop.status is ComplianceStatus.DRIFTED
    assert shop.counts.drifted == len(r2.initial.for_app("shop").drift) == 1
    h3 = next(t for t in shop.targets if (t.layer.value, t.target) == ("host", "h3"))
    assert h3.status is ComplianceStatus.DRIFTED and h3.counts.drifted == 1
    unknown = [k for (layer, target), keys in r2.unknown.items() for k, app in keys if app == "analytics"]
    analytics = apps["analytics"]
    assert analytics.counts.unreachable == len(unknown) > 0
    assert {(t.layer.value, t.target) for t in analytics.targets if t.status is ComplianceStatus.UNREACHABLE} == \
        {("host", UNREACHABLE_HOST), ("sidecar", UNREACHABLE_HOST)}
    assert analytics.status is ComplianceStatus.UNREACHABLE
    assert apps["billing"].status is ComplianceStatus.IN_SYNC
    # a scan changes nothing: the last change and the last converged state are still the first sync's
    for a in (shop, analytics):
        assert a.last_change is not None and a.last_change.run_id == "run-1"
        assert a.converged_at == runs.finished("run-1")


def test_self_heal_is_the_last_change_with_its_commit(runs):
    r1 = runs.first()
    runs.drift()
    runs.scan()
    r3 = runs.heal()
    apps = _by_app(_report(runs))
    shop = apps["shop"]
    assert shop.status is ComplianceStatus.IN_SYNC and shop.counts.drifted == 0
    healed = len(r3.initial.for_app("shop").changes)
    assert healed == 1
    assert shop.last_change is not None
    assert (shop.last_change.run_id, shop.last_change.revision, shop.last_change.trigger) == ("run-3", REV2, "self-heal")
    assert shop.last_change.resources == healed
    assert shop.changes == len(r1.initial.for_app("shop").changes) + healed
    assert shop.converged_at == runs.finished("run-3")
    assert shop.revision == REV2
    # analytics was not part of the heal: still as the scan left it
    assert apps["analytics"].status is ComplianceStatus.UNREACHABLE
    assert apps["analytics"].last_change.run_id == "run-1"


def test_since_limits_the_changes_to_the_window(runs):
    runs.first()
    runs.drift()
    runs.scan()
    r3 = runs.heal()
    apps = _by_app(_report(runs, since=r3.started))
    assert apps["shop"].last_change.run_id == "run-3" and apps["shop"].changes == 1
    assert apps["billing"].last_change is None and apps["billing"].changes == 0
    assert apps["billing"].status is ComplianceStatus.IN_SYNC   # the state is the current one, whatever the window


def test_fresh_observe_finds_what_the_drift_scan_records(runs):
    runs.first()
    runs.drift()
    fresh = observe_now(str(runs.repo_dir), observed=str(runs.snapshot))
    live = _by_app(_report(runs, fresh=fresh))
    runs.scan()
    cached = _by_app(_report(runs))
    for name in runs.repo.apps:
        assert live[name].counts == cached[name].counts, name
        assert _target_counts(live[name]) == _target_counts(cached[name]), name
    assert live["shop"].counts.drifted == 1
    assert {f"{lt[0]}/{lt[1]}" for lt in ((u[0], u[1]) for u in fresh.unobserved)} == \
        {f"host/{UNREACHABLE_HOST}", f"sidecar/{UNREACHABLE_HOST}"}
    # reachability verified on the same observation: the lost firewall element blocks an allowed flow
    assert FIREWALL_SET.startswith("host/h3/")
    assert live["shop"].violations and all(v.dest.startswith("shop/") for v in live["shop"].violations)
    assert live["billing"].violations == ()


def test_fresh_observe_in_sync_is_converged_now(runs):
    runs.first()
    fresh = observe_now(str(runs.repo_dir), observed=str(runs.snapshot))
    report = _report(runs, fresh=fresh, now=2_000_000_000.0)
    assert report.source == "store+observe" and report.verification.available
    for name in runs.repo.apps:
        a = _by_app(report)[name]
        assert a.status is ComplianceStatus.IN_SYNC and a.seconds_since_converged == 0.0
        assert a.violations == ()


def test_app_filter_and_unknown_app(runs):
    runs.first()
    report = _report(runs, apps=["billing", FABRIC_LABEL])
    assert [a.app for a in report.apps] == ["billing", FABRIC_LABEL]
    with pytest.raises(UnknownApp, match="no application nope"):
        _report(runs, apps=["nope"])


# ---- the command ----------------------------------------------------------------------------
def test_cli_json_figures_and_exit_codes(runs, capsys):
    runs.first()
    db = str(runs.store.url)
    assert main(["report", "--cached", "--store", db]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["summary"]["apps_by_status"]["in-sync"] == out["summary"]["apps"] == len(runs.repo.apps) + 1
    assert {a["app"] for a in out["apps"]} == set(runs.repo.apps) | {FABRIC_LABEL}
    shop = next(a for a in out["apps"] if a["app"] == "shop")
    assert shop["last_change"]["commit"] == REV1 and shop["layers"]["host"]["status"] == "in-sync"
    runs.drift()
    assert main(["report", str(runs.repo_dir), "--observed", str(runs.snapshot), "--store", db,
                 "--app", "shop"]) == 1
    out = json.loads(capsys.readouterr().out)
    assert [a["app"] for a in out["apps"]] == ["shop"] and out["apps"][0]["resources"]["drifted"] == 1


@pytest.mark.parametrize("args, message", [
    (["--cached", "--app", "nope"], "error: --app: no application nope"),
    (["--cached", "--since", "last tuesday"], "error: --since: 'last tuesday' is not a date"),
    (["--cached", "--format", "xml"], "error: --format: 'xml' is not one of json, csv, html"),
    ([], "error: report needs REPO"),
])
def test_cli_bad_input_is_one_line_and_exit_2(tmp_path, capsys, args, message):
    Store(sqlite_url(tmp_path / "state.db")).close()
    assert main(["report", "--store", str(tmp_path / "state.db"), *args]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert len(captured.err.strip().splitlines()) == 1 and captured.err.startswith(message), captured.err


def test_cli_missing_store_is_an_error_and_creates_nothing(tmp_path, capsys):
    assert main(["report", "--cached", "--store", str(tmp_path / "none.db")]) == 2
    assert "no store at" in capsys.readouterr().err
    assert not (tmp_path / "none.db").exists()


def test_cached_report_reads_the_daemons_stored_verification(runs):
    """What service/reachability.py stores after a run (store_verify.save of a real verification
    of the observed state) is what the cached report shows as open violations."""
    from reconciler.service import store_verify
    from reconciler.verify.compare import compare
    from reconciler.verify.observe import model_of, observe
    from reconciler.verify.verdict import Verifier

    runs.first()
    report = _report(runs)
    assert not report.verification.available and all(a.violations is None for a in report.apps)
    runs.drift()
    resources, unobserved = observe(runs.repo, None, snapshot=str(runs.snapshot))
    m, scope = model_of(runs.repo, resources, unobserved)
    cmp = compare(Verifier(m, scope).run(()))
    by_app: dict = {}
    for f in cmp.findings:
        by_app.setdefault(f.app, []).append(f)
    store_verify.save(runs.store, REV1, cmp.apps, by_app, cmp.apps)
    report = _report(runs)
    assert report.verification.available and report.verification.source == "store"
    apps = _by_app(report)
    want = [(f.kind, f.source.id, f.dest.id, f.dest.port) for f in by_app.get("shop", ())
            if f.kind in ("violation", "leak")]
    assert want and [(v.kind, v.source, v.dest, v.port) for v in apps["shop"].violations] == want
    assert apps["billing"].violations == ()          # verified, nothing open
    # an application the daemon did not verify has no figure (None), not an empty list
    assert apps[FABRIC_LABEL].violations == (() if "" in cmp.apps else None)


def test_fresh_observe_of_some_layers_reports_only_those(runs):
    runs.first()
    fresh = observe_now(str(runs.repo_dir), observed=str(runs.snapshot), layers=["host"])
    report = _report(runs, fresh=fresh)
    assert {t.layer.value for a in report.apps for t in a.targets} == {"host"}
    assert all(a.status is ComplianceStatus.IN_SYNC for a in report.apps)
    assert not report.verification.available and "needs the switch, hypervisor and host" in report.verification.note
    assert all(a.violations is None for a in report.apps)
