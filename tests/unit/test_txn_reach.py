"""Reachability verification in a transaction's verify step (reconciler.txn.reach): only what the change
ADDS rolls back. Over the example intents compiled as the observed state (tests/unit/verify_cases.py), the
real verification model, and for the transaction itself the snapshot driver and a real SQLite store."""
from __future__ import annotations

import json

from test_verify_incremental import _accept, _foreign_drop
from verify_cases import L4, add, example, resources

from reconciler.drivers.registry import targets_of
from reconciler.drivers.snapshot import SnapshotDriver
from reconciler.engine import Engine
from reconciler.model import Layer, State
from reconciler.service.store import Store
from reconciler.txn.history import transactions
from reconciler.txn.journal import Journal
from reconciler.txn.models import TxnState
from reconciler.txn.reach import OnUnknown, ReachCheck
from reconciler.txn.txn import Transactions

H3 = (Layer.HOST, "h3")
WEB_TO_API = ("shop/web@10.50.1.11", "shop/api@10.50.1.21:8080")


def _targets():
    return [(l, t.name) for l, ts in targets_of(example()[0].inventory).items() for t in ts]


def _of(res, tid):
    return [r for r in res if (r.key.layer, r.key.target) == tid]


def _check(before, on_unknown=OnUnknown.KEEP):
    chk = ReachCheck(example()[0], L4, on_unknown)
    chk.before(before, _targets())
    return chk


def test_a_violation_the_change_adds_is_named_with_its_pair_and_hop():
    base = resources()
    out = _check(base).after({H3: _of(_foreign_drop(base), H3)})
    assert [(f.kind, f.source.id, f.dest.id) for f in out.added if (f.source.id, f.dest.id) == WEB_TO_API] == [
        ("violation", *WEB_TO_API)]
    why = out.problem()
    assert "violation shop/web@10.50.1.11 -> shop/api@10.50.1.21:8080 at host h3: nftables" in why
    assert "handmade" in why and "deny" in why


def test_findings_present_before_the_change_are_not_its_fault():
    broken = _foreign_drop(resources())               # already broken before the transaction
    chk = _check(broken)
    assert any(f.kind == "violation" for f in chk.inc.findings())
    out = chk.after({H3: _of(broken, H3)})            # the change leaves h3 as it was
    assert out.added == [] and out.problem() == ""


def test_a_leak_the_change_adds_rolls_back_and_a_fix_does_not():
    base = resources()
    out = _check(base).after({H3: _of(_accept(base), H3)})
    assert {f.kind for f in out.added} == {"leak"} and "reachability: the change added leak" in out.problem()
    fixed = _check(_accept(base)).after({H3: _of(base, H3)})   # the change closes the leak
    assert fixed.added == [] and fixed.fixed > 0


def test_pairs_that_become_unknown_are_reported_and_roll_back_only_when_asked():
    base = resources()
    keep = _check(base).after({}, unreachable={H3: "unreachable: ssh timed out"})
    assert keep.unknown and keep.added == [] and keep.problem() == ""
    rb = _check(base, OnUnknown.ROLLBACK).after({}, unreachable={H3: "unreachable: ssh timed out"})
    assert rb.problem().startswith("reachability: the change added unknown")


def test_a_run_that_observed_only_the_touched_target_judges_with_the_cached_rest():
    """A narrowed daemon sync observes only h3; the daemon's latest observation of every other
    target is the baseline, so the pair web -> api (which reads h1 and the fabric too) is decided
    before and after, and the violation the change adds on h3 is caught."""
    base = resources()
    cached = [r for r in base if (r.key.layer, r.key.target) != H3]
    with_cache = ReachCheck(example()[0], L4, baseline=lambda: (cached, {}))
    with_cache.before(_of(base, H3), [H3])
    assert not with_cache.unobserved
    out = with_cache.after({H3: _of(_foreign_drop(base), H3)})
    assert [(f.kind, f.source.id, f.dest.id) for f in out.added if (f.source.id, f.dest.id) == WEB_TO_API] == [
        ("violation", *WEB_TO_API)]
    # without the baseline every other target is missing from the model: the pairs are broken before
    # the change already, so the violation it adds is not blamed on it (what a narrowed sync used to see)
    blind = ReachCheck(example()[0], L4)
    blind.before(_of(base, H3), [H3])
    assert blind.after({H3: _of(_foreign_drop(base), H3)}).added == []


def test_a_target_the_cache_never_observed_is_unknown_not_absent():
    base = resources()
    h1 = (Layer.HOST, "h1")
    cached = [r for r in base if (r.key.layer, r.key.target) not in (H3, h1)]
    chk = ReachCheck(example()[0], L4, baseline=lambda: (cached, {("host", "h1"): "unreachable: ssh timed out"}))
    chk.before(_of(base, H3), [H3])
    assert chk.unobserved == {("host", "h1"): "unreachable: ssh timed out"}


class _ForeignRuleDuringApply(SnapshotDriver):
    """The snapshot host driver; while its apply runs (after the transaction observed the pre-state,
    before the driver writes and reads back) someone, not the reconciler, adds a drop on h3."""

    injected = False

    def apply(self, plans, dry_run=False):
        if not dry_run and not self.injected:   # once: the rollback's apply meets it already there
            self.injected = True
            data = json.loads(self.path.read_text())
            extra = [r for r in _foreign_drop([]) if r.key.target == "h3"]
            data["resources"] += State.of(extra).to_json()
            self.path.write_text(json.dumps(data))
        return super().apply(plans, dry_run=dry_run)


def test_plain_apply_rolls_back_a_clean_change_that_blocks_an_allowed_path(tmp_path):
    path = tmp_path / "snap.json"
    # before: converged but for one stray owned resource on h3 (a kind the model ignores): prune deletes it
    path.write_text(json.dumps({"resources": State.of(add(resources(), "host/h3/thing/stray", {"x": 1}, "shop", True))
                                .to_json()}))
    drivers = {l: SnapshotDriver(l, path) for l in Layer if l is not Layer.HOST}
    drivers[Layer.HOST] = _ForeignRuleDuringApply(Layer.HOST, path)
    repo = example()[0]
    tx = Transactions(Engine(drivers, sleep=lambda s: None, attempts=1), Journal(Store(str(tmp_path / "db.sqlite"))),
                      reach=lambda: ReachCheck(repo, list(Layer)))
    res = tx.apply(State.of(resources()), targets_of(repo.inventory), prune=True)
    assert res.state is TxnState.ROLLED_BACK, res.error
    assert res.report is not None and res.report.converged            # the apply itself was clean
    assert "verification failed: reachability: the change added violation shop/web@10.50.1.11 -> " in res.error
    rows = tx.journal.findings(res.txn_id)
    assert ("added", "violation", *WEB_TO_API) in {(r.change, r.kind, r.source, r.dest) for r in rows}
    assert [r for r in rows if r.dest == WEB_TO_API[1]][0].line.count("host h3: nftables") == 1
    shown = transactions(tx.journal.store, txn_id=res.txn_id)[0]["findings"]       # history and the TUI
    assert any(f["change"] == "added" and "host h3: nftables ip handmade" in f["line"] for f in shown)


def test_unknown_before_and_broken_after_is_unproven_not_added():
    base = resources()
    before = [r for r in base if (r.key.layer, r.key.target) != H3]          # h3 observed nothing before
    keep = _check(before).after({H3: _of(_foreign_drop(base), H3)})
    assert WEB_TO_API in {(f.source.id, f.dest.id) for f in keep.unproven}
    assert WEB_TO_API not in {(f.source.id, f.dest.id) for f in keep.added}
    strict = _check(before, OnUnknown.ROLLBACK).after({H3: _of(_foreign_drop(base), H3)})
    assert "violation shop/web@10.50.1.11 -> shop/api@10.50.1.21:8080" in strict.problem()
