"""SessionPool (pure bookkeeping; the real-session behaviour is in tests/lab/test_switch_driver.py):
reuse within the window, never after it, never across changed variables, unhealthy sessions
closed, close() closes what is idle."""
from __future__ import annotations

import pytest

from reconciler.drivers.base import Target
from reconciler.drivers.switch import pool as switch_pool
from reconciler.drivers.switch.pool import SessionPool
from reconciler.model import Layer


class FakeSession:
    def __init__(self, target):
        self.target, self.closed = target, False

    def close(self):
        self.closed = True


@pytest.fixture
def clock(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(switch_pool.time, "monotonic", lambda: now[0])
    return now


T = Target("leaf1", Layer.SWITCH, {"ansible_host": "192.0.2.1"})


@pytest.mark.parametrize("wait_s, target2, healthy, reused", [
    (1.0, T, True, True),                                                      # within the window
    (60.0, T, True, False),                                                    # expired
    (1.0, Target("leaf1", Layer.SWITCH, {"ansible_host": "192.0.2.9"}), True, False),  # vars changed
    (1.0, T, False, False),                                                    # given back unhealthy
])
def test_reuse_rules(clock, wait_s, target2, healthy, reused):
    pool = SessionPool(FakeSession, reuse_s=60.0)
    s1, was = pool.take(T)
    assert not was
    pool.give(T, s1, healthy)
    clock[0] += wait_s
    s2, was = pool.take(target2)
    assert was is reused and (s2 is s1) is reused
    if not reused:
        assert s1.closed or target2 is not T        # never leaked when it cannot be used again


def test_close_closes_idle_sessions_and_expired_ones_go_on_next_use(clock):
    pool = SessionPool(FakeSession, reuse_s=10.0)
    a, _ = pool.take(T)
    b, _ = pool.take(Target("leaf2", Layer.SWITCH, {}))
    pool.give(T, a, True)
    clock[0] += 11
    pool.give(Target("leaf2", Layer.SWITCH, {}), b, True)      # a has expired meanwhile
    assert a.closed and not b.closed
    pool.close()
    assert b.closed and pool._idle == {}
