"""Engine behaviour with in-memory drivers (the engine, not a device, is under test here)."""
import json

from reconciler.drivers.base import Target
from reconciler.drivers.snapshot import SnapshotDriver
from reconciler.engine import Engine
from reconciler.events import EventKind
from reconciler.model import Layer, Resource, ResourceKey, State
from reconciler.status import Action, Outcome, Phase


def R(layer, target, name, app="shop", spec=None):
    return Resource(ResourceKey(layer, target, "thing", name), spec or {"v": 1}, app)


class Recording(SnapshotDriver):
    calls: list = []

    def apply(self, plans, dry_run=False):
        for tp in plans:
            for c in tp.changes:
                Recording.calls.append((c.action, c.key.layer))
        return super().apply(plans, dry_run)


def engine_for(tmp_path, snapshot, **kw):
    path = tmp_path / "snap.json"
    path.write_text(json.dumps(snapshot))
    Recording.calls = []
    drivers = {l: Recording(l, path) for l in Layer}
    targets = {l: [Target(n, l) for n in ("t1", "t2")] for l in Layer}
    return Engine(drivers, sleep=lambda s: None, **kw), targets, path


def test_creates_underlay_first_and_prunes_in_reverse(tmp_path):
    old = [R(l, "t1", "old", app="gone").to_json() for l in Layer]
    eng, targets, _ = engine_for(tmp_path, {"resources": old})
    desired = State.of(R(l, "t1", "new") for l in Layer)
    report = eng.run(desired, targets, prune=True)
    assert report.converged and report.phase is Phase.SUCCEEDED
    creates = [l for a, l in Recording.calls if a is not Action.DELETE]
    deletes = [l for a, l in Recording.calls if a is Action.DELETE]
    assert creates == [Layer.SWITCH, Layer.HYPERVISOR, Layer.HOST, Layer.SIDECAR]
    assert deletes == [Layer.SIDECAR, Layer.HOST, Layer.HYPERVISOR, Layer.SWITCH]
    assert Recording.calls.index((Action.CREATE, Layer.SIDECAR)) < Recording.calls.index((Action.DELETE, Layer.SIDECAR))


def test_converged_state_makes_no_apply_call(tmp_path):
    desired = State.of([R(Layer.HOST, "t1", "a")])
    eng, targets, _ = engine_for(tmp_path, {"resources": desired.to_json()})
    report = eng.run(desired, targets)
    assert report.converged and report.writes == 0 and Recording.calls == []


def test_unreachable_target_is_reported_and_others_converge(tmp_path):
    eng, targets, path = engine_for(tmp_path, {"resources": [], "unreachable": ["t2"]})
    events = []
    eng.bus.subscribe(events.append)
    desired = State.of([R(Layer.HOST, "t1", "a"), R(Layer.HOST, "t2", "b")])
    report = eng.run(desired, targets)
    assert not report.converged and report.phase is Phase.FAILED
    assert report.targets[(Layer.HOST, "t2")].outcome is Outcome.UNREACHABLE
    assert report.targets[(Layer.HOST, "t1")].outcome is Outcome.APPLIED
    stored = {r["key"] for r in json.loads(path.read_text())["resources"]}
    assert stored == {"host/t1/thing/a"}
    kinds = [e.kind for e in events]
    assert kinds[0] is EventKind.RUN_STARTED and kinds[-1] is EventKind.RUN_FINISHED
    results = {e.key: e.outcome for e in events if e.kind is EventKind.RESOURCE_RESULT}
    assert results == {"host/t1/thing/a": Outcome.APPLIED, "host/t2/thing/b": Outcome.UNREACHABLE}


def test_rejected_change_fails_after_bounded_attempts(tmp_path):
    eng, targets, _ = engine_for(tmp_path, {"resources": [], "reject": ["host/t1/thing/a"]}, attempts=3)
    desired = State.of([R(Layer.HOST, "t1", "a"), R(Layer.SWITCH, "t2", "s")])
    report = eng.run(desired, targets)
    assert report.attempts == 3
    assert report.targets[(Layer.HOST, "t1")].outcome is Outcome.FAILED
    assert "rejected" in report.targets[(Layer.HOST, "t1")].error
    assert report.targets[(Layer.SWITCH, "t2")].outcome is Outcome.APPLIED


def test_driver_exception_is_data(tmp_path):
    class Broken(SnapshotDriver):
        def observe(self, targets):
            raise RuntimeError("boom")
    eng, targets, path = engine_for(tmp_path, {"resources": []})
    eng.drivers[Layer.SIDECAR] = Broken(Layer.SIDECAR, path)
    desired = State.of([R(Layer.HOST, "t1", "a"), R(Layer.SIDECAR, "t1", "x")])
    report = eng.run(desired, targets)
    assert report.targets[(Layer.SIDECAR, "t1")].outcome is Outcome.FAILED
    assert "boom" in report.targets[(Layer.SIDECAR, "t1")].error
    assert report.targets[(Layer.HOST, "t1")].outcome is Outcome.APPLIED


def test_app_filter_touches_only_that_app(tmp_path):
    other = R(Layer.HOST, "t1", "o", app="billing", spec={"v": 9})
    eng, targets, path = engine_for(tmp_path, {"resources": [other.to_json()]})
    desired = State.of([R(Layer.HOST, "t1", "a"), R(Layer.HOST, "t1", "o", app="billing", spec={"v": 1})])
    report = eng.run(desired, targets, apps=["shop"], prune=True)
    assert report.converged
    stored = {r["key"]: r["spec"] for r in json.loads(path.read_text())["resources"]}
    assert stored["host/t1/thing/o"] == {"v": 9}  # billing untouched
    assert "host/t1/thing/a" in stored


def test_driver_readback_replaces_the_verify_observe(tmp_path):
    """A driver that reads its state back after writing saves the engine an observe round."""
    eng, targets, path = engine_for(tmp_path, {"resources": []})
    calls = []
    for l, d in eng.drivers.items():
        orig = d.observe
        d.observe = lambda ts, _o=orig, _l=l: (calls.append(_l), _o(ts))[1]
    desired = State.of([R(Layer.HOST, "t1", "a"), R(Layer.SWITCH, "t1", "s")])
    report = eng.run(desired, targets)
    assert report.converged and report.writes == 2
    assert sorted(calls) == sorted(Layer)  # one observe per layer: the initial one

    # a readback that still differs is retried and finally reported, bounded by attempts
    class Liar(SnapshotDriver):
        def apply(self, plans, dry_run=False):
            res = super().apply(plans, dry_run)
            return {k: r.__class__(**{**r.__dict__, "observed": ()}) for k, r in res.items()}
    eng2, targets2, path2 = engine_for(tmp_path / "x" if (tmp_path / "x").mkdir() is None else tmp_path, {"resources": []},
                                       attempts=2)
    eng2.drivers[Layer.HOST] = Liar(Layer.HOST, path2)
    report = eng2.run(State.of([R(Layer.HOST, "t1", "a")]), targets2)
    assert not report.converged
    assert report.targets[(Layer.HOST, "t1")].outcome is Outcome.FAILED
    assert "still differs" in report.targets[(Layer.HOST, "t1")].error


def test_fused_and_prestarted_layers_keep_the_create_order(tmp_path):
    """Hypervisor and host share a fuse_key: one apply_together call, prestarted while the switch
    layer applies, and told `go` only after the switch apply returned."""
    eng, targets, path = engine_for(tmp_path, {"resources": []})
    log = []

    class Fused(Recording):
        fuse_key = ("fake",)

        @staticmethod
        def apply_together(parts, dry_run=False):
            log.append(("together", [d.layer for d, _ in parts]))
            return [d.apply(plans, dry_run) for d, plans in parts]

        @staticmethod
        def prestart(parts):
            log.append(("prestart", [d.layer for d, _ in parts]))

            class Handle:
                def go(self, ok=True):
                    log.append(("go", ok))

                def result(self):
                    log.append(("result",))
                    return Fused.apply_together(parts)
            return Handle()

    class Switch(Recording):
        def apply(self, plans, dry_run=False):
            log.append(("switch-apply",))
            return super().apply(plans, dry_run)

    eng.drivers = {Layer.SWITCH: Switch(Layer.SWITCH, path), Layer.HYPERVISOR: Fused(Layer.HYPERVISOR, path),
                   Layer.HOST: Fused(Layer.HOST, path)}
    desired = State.of(R(l, "t1", "new") for l in (Layer.SWITCH, Layer.HYPERVISOR, Layer.HOST))
    report = eng.run(desired, {l: targets[l] for l in eng.drivers})
    assert report.converged
    assert log == [("prestart", [Layer.HYPERVISOR, Layer.HOST]), ("switch-apply",), ("go", True), ("result",),
                   ("together", [Layer.HYPERVISOR, Layer.HOST])]
    creates = [l for a, l in Recording.calls if a is not Action.DELETE]
    assert creates == [Layer.SWITCH, Layer.HYPERVISOR, Layer.HOST]


class PushUnreachable(Recording):
    """Observes fine (like a workload's CSDS) but cannot be written (like no ADS stream)."""

    def apply(self, plans, dry_run=False):
        from reconciler.drivers.base import ApplyResult
        Recording.calls.extend((c.action, c.key.layer) for tp in plans for c in tp.changes)
        return {tp.target.name: ApplyResult(tp.target.name, Outcome.UNREACHABLE, error="no stream via 10.9.9.9:18001")
                for tp in plans}


def test_a_target_its_apply_cannot_reach_is_retried_and_reported_unreachable_with_the_reason(tmp_path):
    eng, targets, path = engine_for(tmp_path, {"resources": []}, attempts=3)
    eng.drivers[Layer.SIDECAR] = PushUnreachable(Layer.SIDECAR, path)
    desired = State.of([R(Layer.SIDECAR, "t1", "a"), R(Layer.HOST, "t1", "h")])
    report = eng.run(desired, targets)
    side = report.targets[(Layer.SIDECAR, "t1")]
    assert side.outcome is Outcome.UNREACHABLE and "10.9.9.9:18001" in side.error   # not "still differs"
    assert Recording.calls.count((Action.CREATE, Layer.SIDECAR)) == 3   # tried in every attempt
    assert report.targets[(Layer.HOST, "t1")].outcome is Outcome.APPLIED and report.phase is Phase.FAILED
