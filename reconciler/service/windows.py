"""Sync windows: cron-like times when automatic sync is allowed or denied.

Contract: `window_verdict(windows, now) -> (allowed, reason)` is pure. A window is
`{kind: allow|deny, schedule: "<5-field cron>", duration: "1h30m", timezone?: "UTC"}`; it is
active at `now` when a start time of the schedule lies in (now - duration, now].
Day-of-week numbers follow cron (0 and 7 are Sunday), not APScheduler (0 is Monday). Any active
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


_DOW = ("sun", "mon", "tue", "wed", "thu", "fri", "sat", "sun")


def _dow(field: str) -> str:
    """Cron day-of-week numbers (0/7 = Sunday) as names: APScheduler counts 0 = Monday."""
    out = []
    for part in field.split(","):
        m = re.fullmatch(r"(\d)(?:-(\d))?", part)
        if not m:
            out.append(part)  # *, */n and names mean the same in both
            continue
        a, b = int(m.group(1)), int(m.group(2) if m.group(2) is not None else m.group(1))
        if a > 7 or b > 7 or a > b:
            raise ValueError(f"invalid day of week {part!r}")
        out.extend(_DOW[i] for i in range(a, b + 1))
    return ",".join(dict.fromkeys(out))


def cron_trigger(schedule: str, timezone: str = "UTC") -> CronTrigger:
    """A standard five-field cron expression as an APScheduler trigger."""
    f = schedule.split()
    if len(f) != 5:
        raise ValueError(f"cron schedule {schedule!r} needs 5 fields")
    return CronTrigger(minute=f[0], hour=f[1], day=f[2], month=f[3], day_of_week=_dow(f[4]), timezone=timezone)


def active(window: Mapping[str, Any], now: dt.datetime) -> bool:
    trig = cron_trigger(str(window["schedule"]), str(window.get("timezone") or "UTC"))
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
