"""The daemon's configured health checks confirm a pending transaction (reconciler.txn.service):
real SQLite store and journal under test; the daemon's reachability status is given as data."""
import time
from types import SimpleNamespace

import pytest

from reconciler.service.store import Store
from reconciler.txn.journal import Journal
from reconciler.txn.models import TxnState
from reconciler.txn.service import CONFIRM_CHECKS_ENV, confirm_checks, confirm_healthy


class Status:
    """The daemon's `reach`: what its last reachability verification found."""
    def __init__(self, **st):
        self.st = {"ok": True, "error": "", "ts": time.time() + 1, "violations": 0, "leaks": 0, "unknowns": 0, **st}

    def status(self):
        return dict(self.st)


def daemon(checks=None, **status):
    cfg = SimpleNamespace(instance="test:1", **({} if checks is None else {"confirm_checks": checks}))
    return SimpleNamespace(cfg=cfg, reach=Status(**status))


@pytest.fixture
def journal(tmp_path):
    j = Journal(Store(str(tmp_path / "db.sqlite")))

    def pending(txn_id, window=60.0):
        j.begin(txn_id, run_id=txn_id, revision="r1", trigger="cli", owner="cli:1", context={})
        j.set_state(txn_id, TxnState.PENDING_CONFIRM, deadline=time.time() + window)
    j.pending = pending
    return j


def state(journal, txn_id):
    return journal.txn(txn_id).state


def test_without_configured_checks_nothing_is_confirmed(journal, monkeypatch):
    monkeypatch.delenv(CONFIRM_CHECKS_ENV, raising=False)
    journal.pending("tx-1")
    assert confirm_checks(daemon()) == ()
    assert confirm_healthy(daemon(), journal, journal.unfinished(), time.time()) == []
    assert state(journal, "tx-1") == TxnState.PENDING_CONFIRM.value


def test_clean_verify_confirms_a_pending_transaction(journal):
    journal.pending("tx-1")
    assert confirm_healthy(daemon(("verify",)), journal, journal.unfinished(), time.time()) == ["tx-1"]
    assert state(journal, "tx-1") == TxnState.COMMITTED.value
    assert journal.unfinished() == []


@pytest.mark.parametrize("status", [{"violations": 1}, {"leaks": 2}, {"unknowns": 1}, {"ok": False, "error": "off"},
                                    {"ts": 0.0}])   # ts 0: no verification since the change went live
def test_failing_or_stale_verify_leaves_it_pending(journal, status):
    journal.pending("tx-1")
    assert confirm_healthy(daemon(("verify",), **status), journal, journal.unfinished(), time.time()) == []
    assert state(journal, "tx-1") == TxnState.PENDING_CONFIRM.value


def test_lapsed_window_is_not_confirmed_and_unknown_check_never_passes(journal):
    journal.pending("tx-old", window=-1.0)
    journal.pending("tx-2")
    assert confirm_healthy(daemon(("verify",)), journal, journal.unfinished(), time.time()) == ["tx-2"]
    assert state(journal, "tx-old") == TxnState.PENDING_CONFIRM.value   # the deadline rollback owns it
    journal.pending("tx-3")
    assert confirm_healthy(daemon(("verify", "bogus")), journal, journal.unfinished(), time.time()) == []


def test_checks_from_the_environment_when_the_config_has_none(monkeypatch):
    monkeypatch.setenv(CONFIRM_CHECKS_ENV, " verify, ")
    assert confirm_checks(daemon()) == ("verify",)
    assert confirm_checks(daemon(())) == ()     # the daemon's own setting wins, even empty
