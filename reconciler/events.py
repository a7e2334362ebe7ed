"""Engine events and the bus that fans them out to observers.

Contract: the engine publishes `Event`s; the store, metrics, logs and the TUI subscribe.
None of them calls a driver. Publishing never raises: an observer that fails is logged
and detached from nothing else (the other observers still get the event).
"""
from __future__ import annotations

import enum
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from reconciler.model import Layer
from reconciler.status import Outcome

log = logging.getLogger(__name__)


class EventKind(str, enum.Enum):
    RUN_STARTED = "run-started"
    OBSERVED = "observed"            # one target observed (data: resources count)
    DRIFT = "drift"                  # one resource differs (key, app, action)
    APPLY_STARTED = "apply-started"  # one target about to be written
    APPLIED = "applied"              # one target done (outcome)
    RESOURCE_RESULT = "resource-result"  # one resource's outcome in a run
    DRIVER_LOG = "driver-log"        # streamed driver output (e.g. ansible-runner events)
    STATE = "state"                  # once per run (if enabled): every resource with status,
                                     # desired and observed spec (data: resources=[...])
    RUN_FINISHED = "run-finished"    # data: phase, duration_s, counts


@dataclass(frozen=True)
class Event:
    kind: EventKind
    run_id: str = ""
    app: str = ""
    layer: Layer | None = None
    target: str = ""
    key: str = ""
    outcome: Outcome | None = None
    message: str = ""
    data: dict[str, Any] = field(default_factory=dict)
    ts: float = field(default_factory=time.time)


Observer = Callable[[Event], None]


class EventBus:
    def __init__(self) -> None:
        self._observers: list[Observer] = []
        self._lock = threading.Lock()

    def subscribe(self, observer: Observer) -> Callable[[], None]:
        with self._lock:
            self._observers.append(observer)

        def unsubscribe() -> None:
            with self._lock:
                if observer in self._observers:
                    self._observers.remove(observer)
        return unsubscribe

    def publish(self, event: Event) -> None:
        with self._lock:
            observers = list(self._observers)
        for obs in observers:
            try:
                obs(event)
            except Exception:  # an observer must never break the run
                log.exception("event observer %r failed on %s", obs, event.kind)
