"""service/retries.py: per-app backoff doubles from the base up to the bound; success clears it;
apps gone from the repo are forgotten."""
from __future__ import annotations

from reconciler.service.retries import RetrySchedule


def test_delays_double_up_to_the_bound_and_a_success_clears():
    r = RetrySchedule(base_s=0.5, max_s=3.0)
    assert not r and r.apps() == []
    assert [r.fail("shop", 100.0) for _ in range(5)] == [(1, 0.5), (2, 1.0), (3, 2.0), (4, 3.0), (5, 3.0)]
    assert r.fail("billing", 100.0) == (1, 0.5)
    assert r and r.apps() == ["billing", "shop"]
    r.clear("shop")
    assert r.apps() == ["billing"] and r.fail("shop", 100.0) == (1, 0.5)   # counting starts again


def test_due_lists_apps_whose_time_came_and_forgets_unknown_ones():
    r = RetrySchedule(base_s=1.0, max_s=60.0)
    r.fail("a", 10.0)            # due at 11
    r.fail("b", 10.0)
    r.fail("b", 10.0)            # due at 12
    r.fail("gone", 0.0)
    known = {"a", "b"}.__contains__
    assert r.due(10.5, known) == []
    assert r.due(11.0, known) == ["a"]
    assert r.due(12.0, known) == ["a", "b"]
    assert r.apps() == ["a", "b"]   # "gone" left the repo: forgotten, never applied
