"""service/touched.py: a commit's sync is narrowed to the targets its change touches, on the
real compile of examples/intents, and only from a base revision known to be in place."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from reconciler.drivers.registry import targets_of
from reconciler.model import Layer
from reconciler.plan import Plan
from reconciler.report import RunReport
from reconciler.revision import load_revision
from reconciler.service.config import Loaded
from reconciler.service.store import Store
from reconciler.service.touched import (
    carry_unchanged,
    journal_settled,
    narrow,
    touched_targets,
    unchanged_apps,
    went_live,
)
from reconciler.status import Phase
from reconciler.txn.journal import Journal
from reconciler.txn.models import TxnState

ROOT = Path(__file__).resolve().parents[2]
ENV = dict(os.environ, GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@example.org", GIT_COMMITTER_NAME="t",
           GIT_COMMITTER_EMAIL="t@example.org")


def git(cwd: Path, *a: str) -> str:
    return subprocess.run(["git", *a], cwd=cwd, env=ENV, capture_output=True, text=True, check=True,
                          timeout=60).stdout.strip()


@pytest.fixture
def work(tmp_path) -> Path:
    w = tmp_path / "work"
    shutil.copytree(ROOT / "examples" / "intents", w)
    git(w, "init", "-q", "-b", "main")
    git(w, "add", "-A")
    git(w, "commit", "-qm", "initial")
    return w


def change(w: Path, rel: str, fn) -> Loaded:
    doc = yaml.safe_load((w / rel).read_text())
    fn(doc)
    (w / rel).write_text(yaml.safe_dump(doc, sort_keys=False))
    git(w, "commit", "-qam", f"edit {rel}")
    return loaded(w)


def loaded(w: Path) -> Loaded:
    sha = git(w, "rev-parse", "HEAD")
    rev = load_revision(w, sha)
    return Loaded(sha, rev.repo, rev.desired, "inventory.yml", targets_of(rev.repo.inventory))


def names(ld: Loaded) -> dict[Layer, list[str]]:
    return {layer: sorted(t.name for t in ts) for layer, ts in ld.targets.items()}


def test_a_split_change_touches_only_the_callers_sidecars(work):
    base = loaded(work)
    new = change(work, "apps/shop.yaml", lambda d: d["spec"]["traffic"]["api"].update(split={"v1": 50, "v2": 50}))
    got = narrow(base, new)
    assert got is not None and set(got.targets) == {Layer.SIDECAR}
    assert got.targets[Layer.SIDECAR] and len(got.targets[Layer.SIDECAR]) < len(new.targets[Layer.SIDECAR])
    assert got.desired is new.desired and got.revision == new.revision   # only the targets are cut
    full = touched_targets(base.desired, new.desired)
    assert {(Layer.SIDECAR, n) for n in names(got)[Layer.SIDECAR]} == full


def test_a_segment_move_touches_every_layer_and_is_symmetric(work):
    def move(vni: int, vlan: int):
        return lambda d: d["spec"]["segment"].update(vni=vni, vlan=vlan)
    base = loaded(work)
    moved = change(work, "apps/shop.yaml", move(5011, 111))
    there = narrow(base, moved)
    assert there is not None and {Layer.SWITCH, Layer.HYPERVISOR}.issubset(there.targets)
    back = narrow(moved, change(work, "apps/shop.yaml", move(5001, 101)))
    assert back is not None and names(back) == names(there)


def test_no_change_touches_nothing_and_a_config_or_inventory_change_is_full(work):
    base = loaded(work)
    (work / "NOTES.md").write_text("no intent here\n")
    git(work, "add", "-A")
    git(work, "commit", "-qm", "notes")
    same = narrow(base, loaded(work))
    assert same is not None and same.targets == {}
    cfg = change(work, "reconciler.yaml", lambda d: d.setdefault("sync", {}).update(prune=not d["sync"].get("prune")))
    assert narrow(base, cfg) is None
    assert narrow(None, cfg) is None
    assert narrow(base, base) is not None
    other_inv = Loaded(cfg.revision, cfg.repo, cfg.desired, "elsewhere.yml", cfg.targets)
    assert narrow(cfg, other_inv) is None


def report(run_id: str, phase: Phase = Phase.SUCCEEDED) -> RunReport:
    return RunReport(run_id, "r", phase, 0.0, 0.0, Plan(), Plan(), {}, 1, False)


@pytest.mark.parametrize("state, live", [(TxnState.COMMITTED, True), (TxnState.NOOP, True),
                                         (TxnState.ROLLED_BACK, False), (TxnState.PENDING_CONFIRM, False)])
def test_only_a_committed_transaction_makes_a_base(tmp_path, state, live):
    store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    journal = Journal(store)
    assert journal_settled(store)
    journal.begin("tx-run1", run_id="run1", revision="r", trigger="webhook", owner="t:1", context={})
    assert not journal_settled(store)   # mid-flight: a sync must recover it on every target
    journal.set_state("tx-run1", state)
    assert journal_settled(store) is (state is not TxnState.PENDING_CONFIRM)
    assert went_live(store, report("run1")) is live
    assert went_live(store, report("run1", Phase.FAILED)) is False
    assert went_live(store, report("no-such-run")) is False


def test_narrowing_can_be_turned_off(work, monkeypatch):
    base = loaded(work)
    monkeypatch.setenv("RECONCILER_NARROW_SYNC", "0")
    assert narrow(base, base) is None


def test_apps_a_narrowed_revision_did_not_change_are_recorded_at_it(work, tmp_path):
    from sqlmodel import Session

    from reconciler.service.store_models import AppStateRow
    base = loaded(work)
    new = change(work, "apps/shop.yaml", lambda d: d["spec"]["traffic"]["api"].update(split={"v1": 50, "v2": 50}))
    apps = {r.app for r in new.desired.resources.values() if r.app}
    assert unchanged_apps(base.desired, new.desired) == apps - {"shop"}
    assert unchanged_apps(base.desired, base.desired) == apps
    store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    lagging = sorted(apps - {"shop"})[0]     # recorded at an older revision: not in place, stays
    with Session(store.engine) as s:
        for app in apps:
            s.add(AppStateRow(app=app, revision="older" if app == lagging else base.revision, sync="OutOfSync"))
        s.commit()
    carry_unchanged(store, base, new)
    got = {a.app: a for a in store.apps()}
    assert {a for a, st in got.items() if st.revision == new.revision} == apps - {"shop", lagging}
    assert got["shop"].revision == base.revision        # the run's own event records shop
    assert got[lagging].revision == "older"
    assert all(st.sync.value == "OutOfSync" for st in got.values())   # sync is the runs' business
