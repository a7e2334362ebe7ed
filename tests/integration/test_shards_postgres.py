"""Shard membership and the write fence against a real PostgreSQL server started by the test.

A member is "paused" by a hook that blocks it right before its write batch (after it observed
and planned) and by stopping its heartbeats; another member takes its slots over; when the
paused one goes on, its write is refused by the fence and the device (a snapshot file) keeps
the new owner's state. Skips when the PostgreSQL server binaries are not installed.
"""
from __future__ import annotations

import json
import shutil
import threading
import time
from pathlib import Path

import pytest
import yaml
from pg_helpers import PgServer, available
from svc_helpers import EXAMPLE, empty_snapshot

from reconciler.compile import Compiler
from reconciler.drivers.registry import targets_of
from reconciler.drivers.snapshot import SnapshotDriver, read_snapshot
from reconciler.engine import Engine
from reconciler.intents.validate import load_repo
from reconciler.model import Layer
from reconciler.service.shard_fence import fence_drivers
from reconciler.service.shard_lease import Fence, Fenced, Membership
from reconciler.service.shards import ShardSettings, owner_of, owners_of_slots
from reconciler.service.store import Store

pytestmark = pytest.mark.skipif(bool(available()), reason=available() or "ok")
SETTINGS = ShardSettings(lease_s=2.0, slots=64, batch_max_s=20.0)


@pytest.fixture
def pg():
    server = PgServer()
    try:
        Store(server.url).close()   # the tables
        yield server
    finally:
        server.destroy()


def _wait(m: Membership, pred, timeout: float, what: str) -> None:
    """Wait on the member's heartbeat notifications (bounded) until `pred()` holds."""
    end = time.monotonic() + timeout
    with m.changed:
        while not pred():
            left = end - time.monotonic()
            if left <= 0:
                raise AssertionError(f"timed out after {timeout}s waiting for {what}")
            m.changed.wait(left)


def _name_owning(app: str, other: str) -> str:
    """A member name that owns `app` when it and `other` are the members (pure function)."""
    for i in range(200):
        name = f"a{i}"
        if owner_of(app, owners_of_slots(tuple(sorted((name, other))), SETTINGS)) == name:
            return name
    raise AssertionError("no name found")


def _desired(tmp: Path, port: int):
    work = tmp / f"intents-{port}"
    shutil.copytree(EXAMPLE, work)
    p = work / "apps" / "shop.yaml"
    d = yaml.safe_load(p.read_text())
    d["spec"]["services"]["web"]["ports"][0]["port"] = port
    p.write_text(yaml.safe_dump(d, sort_keys=False))
    repo = load_repo(str(work))
    return Compiler().compile(repo), targets_of(repo.inventory)


def _batches(url: str) -> list[tuple]:
    import psycopg
    with psycopg.connect(url.replace("+psycopg", "")) as c:
        return c.execute("SELECT member, epoch, apps, started, finished, outcome, reason FROM shard_batches "
                         "ORDER BY id").fetchall()


def _member(url: str, name: str) -> Membership:
    m = Membership(url, name, SETTINGS)
    m.try_acquire()
    _wait(m, m.alive, 20, f"{name} holds a lease")
    return m


def test_members_split_the_apps_and_a_silent_member_is_taken_over_within_two_leases(pg):
    apps = ["", "shop", "billing", "analytics"] + [f"app{i}" for i in range(200)]
    a, b = _member(pg.url, "a"), _member(pg.url, "b")
    try:
        for m in (a, b):
            _wait(m, lambda m=m: m.view is not None and m.view.members == ("a", "b"), 20, "both see both")
        mine_a, mine_b = set(a.mine(apps)), set(b.mine(apps))
        assert mine_a | mine_b == set(apps) and not mine_a & mine_b and mine_a and mine_b
        a.pause.set()   # a stops renewing (a paused or partitioned daemon)
        t0 = time.monotonic()
        _wait(b, lambda: b.view is not None and b.view.members == ("b",), 4 * SETTINGS.lease_s, "b reaps a")
        took = time.monotonic() - t0
        assert took <= 2 * SETTINGS.lease_s, f"takeover took {took:.2f}s"
        assert set(b.mine(apps)) == set(apps)
        assert b.take_gained() is True
        # a's own clock told it first: it no longer believes in its lease
        assert not a.alive() and a.mine(apps) == []
        # a comes back: its lapsed lease is not renewed, it joins again with a new epoch
        old = a.epoch
        a.pause.clear()
        _wait(a, lambda: a.alive() and a.epoch > old, 20, "a joins again")
        _wait(b, lambda: b.view is not None and b.view.members == ("a", "b"), 20, "b sees a again")
    finally:
        a.release()
        b.release()


def test_a_paused_member_cannot_write_after_its_lease_lapsed(pg, tmp_path):
    """The stale-lock double leader: a decides to write shop, is paused past its lease, b takes
    shop over and writes a newer revision; when a goes on, its batch is refused."""
    a_name = _name_owning("shop", "b")
    snap = empty_snapshot(tmp_path / "devices.json")
    old_desired, targets = _desired(tmp_path, 8611)   # what a (stale) wants
    new_desired, _ = _desired(tmp_path, 8600)          # what b (new owner) wants
    a, b = _member(pg.url, a_name), _member(pg.url, "b")
    fa, fb = Fence(a), Fence(b)
    eng_a = Engine(fence_drivers({l: SnapshotDriver(l, snap) for l in Layer}, fa))
    eng_b = Engine(fence_drivers({l: SnapshotDriver(l, snap) for l in Layer}, fb))
    reached, resume = threading.Event(), threading.Event()
    out: dict = {}
    try:
        _wait(a, lambda: a.view is not None and len(a.view.members) == 2, 20, "a sees both")
        assert a.mine(["shop"]) == ["shop"]

        def paused_here() -> None:
            fa.before_check = None
            reached.set()
            assert resume.wait(60), "never resumed"
        fa.before_check = paused_here
        th = threading.Thread(target=lambda: out.update(report=eng_a.run(old_desired, targets, apps=["shop"])))
        th.start()
        assert reached.wait(30), "a never reached its write"
        a.pause.set()                           # ... and a's heartbeats stop with it
        _wait(b, lambda: b.view is not None and b.view.members == ("b",), 4 * SETTINGS.lease_s, "b takes over")
        rep_b = eng_b.run(new_desired, targets, apps=["shop"])
        assert rep_b.converged, rep_b.targets
        after_b = read_snapshot(snap)
        resume.set()                            # a goes on with its stale plan
        th.join(60)
        rep_a = out["report"]
        errors = [t.error for t in rep_a.targets.values() if t.error]
        assert errors and all(e.startswith("fenced:") for e in errors), errors
        assert read_snapshot(snap) == after_b, "the paused member wrote after its lease lapsed"
        rows = _batches(pg.url)
        assert any(r[0] == a_name and r[5] == "fenced" for r in rows)
        assert not any(r[0] == a_name and r[5] == "written" for r in rows)
        assert any(r[0] == "b" and r[5] == "written" and "shop" in json.loads(r[2]) for r in rows)
        with pytest.raises(Fenced):             # and a direct batch under its old epoch too
            with fa.batch(["shop"], "host"):
                pass
    finally:
        resume.set()
        a.release()
        b.release()


def test_the_ring_waits_for_a_batch_in_flight(pg):
    """A member set change (here: a join) cannot commit while a batch holds the ring."""
    a = _member(pg.url, "a")
    fa = Fence(a)
    c = Membership(pg.url, "c", SETTINGS)
    try:
        apps = a.mine(["shop", "billing", "analytics", ""])
        with fa.batch(apps, "host", 1):
            gen = a.view.generation if a.view else 0
            c.beat()                      # tries to join: its lock wait times out, no change
            assert c.epoch == 0 and "lock timeout" in c.last_error
            a.beat()
            assert a.view is not None and a.view.generation == gen
        c.beat()
        assert c.epoch > 0
        _wait(a, lambda: a.view is not None and a.view.members == ("a", "c"), 20, "a sees c")
    finally:
        c.release()
        a.release()


class _Fused(SnapshotDriver):
    """Shaped like the Ansible drivers: `apply` goes through the static fused `apply_together`,
    and the transaction prepare checks call `render` on drivers of the right class."""

    fuse_key = "snapshot"
    prestarted = 0

    def apply(self, plans, dry_run=False):  # noqa: ANN001
        return self.apply_together([(self, plans)], dry_run)[0]

    @staticmethod
    def apply_together(parts, dry_run=False):  # noqa: ANN001, ANN205
        return [SnapshotDriver.apply(d, plans, dry_run) for d, plans in parts]

    @staticmethod
    def observe_together(parts):  # noqa: ANN001, ANN205
        return [SnapshotDriver.observe(d, ts) for d, ts in parts]

    def render(self, plan):  # noqa: ANN001, ANN201
        return f"rendered {plan.target.name}"

    def prestart(self, parts):  # noqa: ANN001, ANN201
        _Fused.prestarted += 1
        raise AssertionError("prestart is not offered behind the fence")


def test_fenced_drivers_keep_their_class_and_one_fused_run_is_one_batch(pg, tmp_path):
    from reconciler.drivers.base import FusableApply, Prestartable
    snap = empty_snapshot(tmp_path / "devices.json")
    desired, targets = _desired(tmp_path, 8600)
    a = _member(pg.url, "solo")
    try:
        fenced = fence_drivers({l: _Fused(l, snap) for l in Layer}, Fence(a))
        host = fenced[Layer.HOST]
        assert isinstance(host, _Fused) and isinstance(host, FusableApply) and not isinstance(host, Prestartable)
        assert host.render(type("TP", (), {"target": type("T", (), {"name": "h1"})})()) == "rendered h1"
        rep = Engine(fenced).run(desired, targets)
        assert rep.converged, rep.targets
        rows = _batches(pg.url)
        written = [r for r in rows if r[0] == "solo" and r[5] == "written"]
        # one batch per fused run (apply -> apply_together did not open a second one, nor deadlock)
        assert written and len(written) <= len(Layer) * 2
        assert _Fused.prestarted == 0
    finally:
        a.release()
