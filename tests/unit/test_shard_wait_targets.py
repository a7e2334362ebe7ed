"""A shard member waits, bounded, while another process's transaction holds a target of its apps
(service/shard_fence.py `held_targets`, `wait_targets_free`), instead of observing, planning and
being refused at its first write. Real SQLite store (the journal's tables)."""
from __future__ import annotations

import threading
import time
from types import SimpleNamespace

from sqlmodel import Session, delete

from reconciler.model import DesiredState, Layer, Resource, ResourceKey
from reconciler.service.shard_fence import held_targets, wait_targets_free
from reconciler.service.store import Store
from reconciler.txn.heartbeat import this_owner
from reconciler.txn.models import TxnLockRow, TxnRow


def _desired() -> DesiredState:
    return DesiredState.of([
        Resource(ResourceKey(Layer.HOST, "h1", "address", "eth1:10.0.0.1"), {"address": "10.0.0.1"}, "shop"),
        Resource(ResourceKey(Layer.HYPERVISOR, "hv1", "ovs-port", "eth2"), {"tag": 101}, "shop"),
        Resource(ResourceKey(Layer.HOST, "h2", "address", "eth1:10.0.0.2"), {"address": "10.0.0.2"}, "billing")])


def _hold(store: Store, txn: str, owner: str, *targets: str) -> None:
    with Session(store.engine) as s:
        s.add(TxnRow(txn_id=txn, owner=owner, state="applying"))
        for t in targets:
            s.add(TxnLockRow(target=t, txn_id=txn))
        s.commit()


def test_held_targets_are_other_processes_locks_on_the_apps_targets(tmp_path):
    store = Store(str(tmp_path / "db.sqlite"))
    try:
        _hold(store, "tx-other", "elsewhere:1", "host/h1", "host/h2")
        _hold(store, "tx-mine", this_owner(), "hypervisor/hv1")
        assert held_targets(store, _desired(), ["shop"]) == ["host/h1"]   # h2 is billing's; hv1 is our own
        assert held_targets(store, _desired(), ["billing"]) == ["host/h2"]
        assert held_targets(store, _desired(), ["nobody"]) == []
    finally:
        store.close()


def test_a_member_waits_until_the_other_transaction_ends_and_no_longer(tmp_path):
    store = Store(str(tmp_path / "db.sqlite"))
    daemon = SimpleNamespace(store=store, stopping=threading.Event())
    loaded = SimpleNamespace(desired=_desired())
    try:
        _hold(store, "tx-other", "elsewhere:1", "host/h1")
        assert wait_targets_free(daemon, loaded, ["shop"], timeout_s=0.3, poll_s=0.05) >= 0.3   # bounded
        released = threading.Event()

        def finish_other() -> None:   # the other member's transaction ends (its locks go with it)
            released.wait(5)
            with Session(store.engine) as s:
                s.exec(delete(TxnLockRow))  # type: ignore[arg-type]
                s.commit()
        t = threading.Thread(target=finish_other)
        t.start()
        t0 = time.monotonic()
        released.set()
        waited = wait_targets_free(daemon, loaded, ["shop"], timeout_s=30, poll_s=0.05)
        t.join(5)
        assert waited < 10 and time.monotonic() - t0 < 10
        assert wait_targets_free(daemon, loaded, ["billing"], timeout_s=30) < 1   # nothing held: no wait
    finally:
        store.close()
