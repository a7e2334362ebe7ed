"""jsonlog.log_event: which engine events the daemon's log carries, at which level; the
per-target ones only under --verbose (DEBUG)."""
from __future__ import annotations

import logging

import pytest

from reconciler.events import Event, EventKind
from reconciler.model import Layer
from reconciler.service.jsonlog import log_event
from reconciler.status import Outcome

OK = Event(EventKind.APPLIED, "r1", layer=Layer.HOST, target="h1", outcome=Outcome.APPLIED)
BAD = Event(EventKind.APPLIED, "r1", layer=Layer.HOST, target="h1", outcome=Outcome.FAILED, message="nft: error")
SEEN = Event(EventKind.OBSERVED, "r1", layer=Layer.HOST, target="h1", outcome=Outcome.NOOP)
START = Event(EventKind.RUN_STARTED, "r1", message="webhook")
DRIFT = Event(EventKind.DRIFT, "r1", app="shop", key="host/h1/route/10.0.0.0/24")


@pytest.mark.parametrize("level, expected", [
    (logging.INFO, [("applied: nft: error", logging.WARNING), ("run-started", logging.INFO)]),
    (logging.DEBUG, [("applied", logging.DEBUG), ("applied: nft: error", logging.WARNING),
                     ("observed", logging.DEBUG), ("run-started", logging.INFO), ("drift", logging.DEBUG)]),
])
def test_levels_and_what_verbose_adds(caplog, level, expected):
    log = logging.getLogger("reconciler.daemon")
    old = log.level
    log.setLevel(level)
    try:
        with caplog.at_level(level, logger="reconciler.daemon"):
            for ev in (OK, BAD, SEEN, START, DRIFT):
                log_event(ev)
    finally:
        log.setLevel(old)
    assert [(r.getMessage(), r.levelno) for r in caplog.records if r.levelno >= level] == expected
