"""Pure parts of the TUI: row conversion from store records, search, status filter,
the event-fed read model, redaction and the per-resource diff lines."""
from __future__ import annotations

import pytest

from reconciler.events import Event, EventKind
from reconciler.model import Layer, ResourceKey
from reconciler.service.store_models import AppStatus, DriftEventRow, ResourceStateRow
from reconciler.service.store_models import RunRow as StoreRun
from reconciler.status import Health, Outcome, Phase, Sync
from tui.data import AppRow, ResourceRow, ResState, group_tree, redact, row_app, row_drift, row_resource, row_run, worst
from tui.eventmodel import EventModel
from tui.format import age, app_matches, duration, short_rev
from tui.screens.apps import StatusFilter
from tui.widgets.diff_view import diff_lines

KEY = "host/h1/nft-set/netintent_shop/local"


def test_rows_from_store_records():
    a = row_app(AppStatus(app="shop", revision="abc", sync=Sync.OUT_OF_SYNC, health=Health.DEGRADED, last_sync=10.0,
                          drift_count=3, self_heal=None, held_revision="", message="h1 down"))
    assert a == AppRow("shop", Sync.OUT_OF_SYNC, Health.DEGRADED, "abc", 10.0, 3, None, "h1 down")
    r = row_run(StoreRun(run_id="r1", revision="abc", trigger="commit", phase="failed", dry_run=False, started=5.0,
                         duration=1.5, apps='["shop", "billing"]', writes=4, error="boom"))
    assert (r.phase, r.duration_s, r.apps, r.message, r.outcome_label) == (Phase.FAILED, 1.5, ("shop", "billing"),
                                                                          "boom", "failed")
    assert row_run(StoreRun(run_id="r2", phase="running")).outcome_label == "running"
    assert row_run(StoreRun(run_id="r3", phase="succeeded", dry_run=True)).outcome_label == "dry-run"
    d = row_drift(DriftEventRow(run_id="r1", app="shop", key=KEY, action="update", executed=False, ts=7.0))
    assert (d.ts, d.action, d.executed) == (7.0, "update", False)
    res = row_resource(ResourceStateRow(key=KEY, app="shop", status="update", desired='{"elements": ["a"]}',
                                        observed='{"elements": []}'))
    assert res.key == ResourceKey(Layer.HOST, "h1", "nft-set", "netintent_shop/local")
    assert res.status is ResState.DIFFERS and res.desired == {"elements": ["a"]}
    # unknown values never crash: shown as unknown
    odd = row_app({"name": "x", "sync": "Weird", "health": None})
    assert odd.sync is Sync.UNKNOWN and odd.health is Health.UNKNOWN
    assert ResState.parse("nonsense") is ResState.UNKNOWN


@pytest.mark.parametrize("query,expected", [
    ("", {"shop", "billing", "analytics"}),
    ("sho", {"shop"}),
    ("SHOP", {"shop"}),
    ("sync:out", {"shop", "billing"}),
    ("health:deg", {"billing"}),
    ("heal:on", {"analytics"}),
    ("heal:off", {"shop", "billing"}),
    ("drift:>0", {"shop", "billing"}),
    ("drift:0", {"analytics"}),
    ("deadbe", {"billing"}),           # revision prefix
    ("unreachable", {"billing"}),       # message
    ("sync:out bill", {"billing"}),
])
def test_search(query, expected):
    rows = [AppRow("shop", Sync.OUT_OF_SYNC, Health.HEALTHY, "abc123", None, 2, False),
            AppRow("billing", Sync.OUT_OF_SYNC, Health.DEGRADED, "deadbeef", None, 1, None, "h6 unreachable"),
            AppRow("analytics", Sync.SYNCED, Health.HEALTHY, "abc123", None, 0, True)]
    assert {r.name for r in rows if app_matches(r, query)} == expected


def test_status_filter_cycle():
    rows = [AppRow("a", Sync.SYNCED, Health.HEALTHY), AppRow("b", Sync.UNKNOWN, Health.DEGRADED),
            AppRow("c", Sync.OUT_OF_SYNC, Health.HEALTHY, drift_count=2)]
    f, seen = StatusFilter.ALL, []
    for _ in range(4):
        seen.append((f, [r.name for r in rows if f.keep(r)]))
        f = f.next()
    assert f is StatusFilter.ALL
    assert seen == [(StatusFilter.ALL, ["a", "b", "c"]), (StatusFilter.OUT_OF_SYNC, ["b", "c"]),
                    (StatusFilter.DEGRADED, ["b"]), (StatusFilter.DRIFTED, ["c"])]


def test_formatting():
    assert [age(None, 100), age(95, 100), age(100 - 120, 100), age(100 - 7200, 100), age(100 - 2 * 86400, 100)] == \
        ["never", "5s ago", "2m ago", "2h ago", "2d ago"]
    assert [duration(None), duration(0.25), duration(3.04), duration(300)] == ["—", "250ms", "3.0s", "5.0m"]
    assert short_rev("4f9c2e71d0a8b35c6e21f7a90d4b8c13e5f60a27") == "4f9c2e71" and short_rev("") == "—"


def _state(model: EventModel, run: str, rows: list[dict], dry_run: bool = False, apps=None, observed=()) -> None:
    model.observer(Event(EventKind.RUN_STARTED, run, message="test", data={"dry_run": dry_run, "revision": "rev1",
                                                                           "apps": apps}))
    for layer, target, outcome in observed:
        model.observer(Event(EventKind.OBSERVED, run, layer=layer, target=target, outcome=outcome))
    model.observer(Event(EventKind.STATE, run, data={"resources": rows}))


def test_event_model_follows_a_run():
    m = EventModel({"shop": True})
    rows = [{"key": KEY, "app": "shop", "status": "update", "desired": {"elements": ["a"]}, "observed": {"elements": []}},
            {"key": "host/h2/route/10.0.0.0/24", "app": "shop", "status": "create", "desired": {"gw": "x"}, "observed": None},
            {"key": "host/h1/route/x", "app": "shop", "status": "synced", "desired": {}, "observed": {}}]
    _state(m, "r1", rows, observed=[(Layer.HOST, "h1", Outcome.NOOP), (Layer.HOST, "h2", Outcome.UNREACHABLE)])
    m.observer(Event(EventKind.DRIFT, "r1", app="shop", key=KEY, data={"action": "update", "executed": True}))
    assert m.apps()[0].health is Health.PROGRESSING
    res = {str(r.key): r.status for r in m.resources("shop")}
    assert res == {KEY: ResState.DIFFERS, "host/h2/route/10.0.0.0/24": ResState.UNREACHABLE,
                   "host/h1/route/x": ResState.SYNCED}
    m.observer(Event(EventKind.RESOURCE_RESULT, "r1", app="shop", key=KEY, outcome=Outcome.APPLIED))
    m.observer(Event(EventKind.RUN_FINISHED, "r1", ts=50.0, data={
        "phase": "failed", "duration_s": 1.0, "revision": "rev1", "writes": 1, "apps": ["shop"], "drift": {"shop": 2},
        "targets": [{"layer": "host", "target": "h2", "outcome": "unreachable", "apps": ["shop"]}]}))
    app = m.apps()[0]
    assert (app.sync, app.health, app.drift_count, app.self_heal) == (Sync.UNKNOWN, Health.DEGRADED, 0, True)
    assert app.last_sync is None and "h2" in app.message          # a failed target: not a successful sync
    assert {str(r.key): r.status for r in m.resources("shop")}[KEY] is ResState.SYNCED
    run = m.runs("shop")[0]
    assert (run.phase, run.writes, run.drift, run.duration_s) == (Phase.FAILED, 1, 2, 1.0)
    assert [d.key for d in m.drift_events("shop")] == [KEY]
    m.set_self_heal("shop", False)
    assert m.apps()[0].self_heal is False
    ro = EventModel(["x"], read_only=True)
    with pytest.raises(PermissionError):
        ro.set_self_heal("x", True)


def test_redaction():
    spec = {"neighbors": [{"ip": "10.0.0.2", "password": "hunter2hunter2"}], "auth": {"api_key": "k-123456"},
            "cert": "-----BEGIN RSA PRIVATE KEY-----\nabc", "key": "host/h1/x", "name": "web"}
    out = redact(spec)
    text = repr(out)
    assert "hunter2" not in text and "k-123456" not in text and "BEGIN" not in text
    assert out["neighbors"][0]["ip"] == "10.0.0.2" and out["key"] == "host/h1/x" and out["name"] == "web"
    row = row_resource({"key": KEY, "status": "update", "desired": {"password": "abcdefgh"}, "observed": {}})
    assert "abcdefgh" not in repr(row)


def test_diff_lines_per_status():
    key = ResourceKey.parse(KEY)
    upd = ResourceRow(key, ResState.DIFFERS, "shop", {"elements": ["a", "b"], "type": "ipv4_addr"},
                      {"elements": ["b", "c"], "type": "ipv4_addr", "handle": 7})
    assert diff_lines(upd) == [("-", "elements: c"), ("+", "elements: a")]      # handle is volatile
    new = ResourceRow(key, ResState.MISSING, "shop", {"type": "ipv4_addr"}, None)
    assert diff_lines(new) == [("+", 'type: "ipv4_addr"')]
    gone = ResourceRow(key, ResState.ORPHAN, "shop", None, {"type": "ipv4_addr"})
    assert diff_lines(gone) == [("-", 'type: "ipv4_addr"')]
    same = ResourceRow(key, ResState.SYNCED, "shop", {"type": "x"}, {"type": "x"})
    assert diff_lines(same) == []


def test_tree_grouping_and_worst():
    rows = [ResourceRow(ResourceKey.parse(k), s) for k, s in [
        ("host/h2/route/a", ResState.SYNCED), ("switch/leaf1/vxlan/v", ResState.DIFFERS),
        ("host/h1/route/b", ResState.FAILED), ("sidecar/h1/cluster/c", ResState.SYNCED)]]
    tree = group_tree(rows)
    assert list(tree) == [Layer.SWITCH, Layer.HOST, Layer.SIDECAR] and list(tree[Layer.HOST]) == ["h1", "h2"]
    assert worst([r.status for r in rows]) is ResState.FAILED and worst([]) is ResState.SYNCED
