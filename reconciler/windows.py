"""Sync windows: cron-like times when automatic sync is allowed or denied.

Contract: `window_verdict(windows, now) -> (allowed, reason)` is pure. A window is
`{kind: allow|deny, schedule: "<5-field cron>", duration: "1h30m", timezone?: "UTC"}`; it is
active at `now` when a start time of the schedule lies in (now - duration, now]. Any active
deny window denies; if allow windows exist, automatic sync is allowed only while one is
active. Manual syncs ignore windows (the caller decides). Bad windows never reach here
(the schema validates them), but a cron the trigger cannot parse denies with a reason.
"""
from __future__ import annotations

import datetime as dt
import re
from typing import Any, Mapping, Sequence

from apscheduler.triggers.cron import CronTrigger

_DUR = re.compile(r"^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")


def parse_duration(text: str) -> dt.timedelta:
    m = _DUR.match(text or "")
    if not m or not any(m.groups()):
        raise ValueError(f"invalid duration {text!r} (e.g. 1h, 30m, 1h30m)")
    h, mi, s = (int(x or 0) for x in m.groups())
    return dt.timedelta(hours=h, minutes=mi, seconds=s)


def active(window: Mapping[str, Any], now: dt.datetime) -> bool:
    trig = CronTrigger.from_crontab(str(window["schedule"]), timezone=str(window.get("timezone") or "UTC"))
    dur = parse_duration(str(window["duration"]))
    start = trig.get_next_fire_time(None, now - dur + dt.timedelta(microseconds=1))
    return start is not None and start <= now


def window_verdict(windows: Sequence[Mapping[str, Any]], now: dt.datetime | None = None) -> tuple[bool, str]:
    now = now or dt.datetime.now(dt.timezone.utc)
    allows = []
    for w in windows:
        try:
            on = active(w, now)
        except (ValueError, KeyError, TypeError) as exc:
            return False, f"sync window {dict(w)!r} is invalid: {exc}"
        if w.get("kind") == "deny" and on:
            return False, f"deny window '{w['schedule']}' for {w['duration']} is active"
        if w.get("kind") == "allow":
            allows.append(on)
    if allows and not any(allows):
        return False, "outside every allow window"
    return True, ""
