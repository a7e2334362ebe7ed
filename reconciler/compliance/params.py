"""Parameters a report request carries (CLI and `GET /report`), checked once (pure).

Contract: `parse_since(text)` accepts an ISO 8601 date or date-time (`2026-12-01`,
`2026-12-01T10:00`, `2026-12-01T10:00:00Z`, with an offset or without: then UTC) and returns
UNIX seconds; `check_format(text)` returns a known format. Both raise `BadParameter` with a
one-line message naming the parameter and what it accepts.
"""
from __future__ import annotations

from datetime import datetime, timezone

from reconciler.compliance.render import FORMATS


class BadParameter(ValueError):
    """A request parameter the user can fix (one line)."""


def parse_since(text: str) -> float:
    raw = text.strip()
    try:
        when = datetime.fromisoformat(raw[:-1] + "+00:00" if raw.endswith(("Z", "z")) else raw)
    except ValueError:
        raise BadParameter(f"since: {text!r} is not a date (YYYY-MM-DD or ISO 8601 date-time)") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when.timestamp()


def check_format(text: str) -> str:
    fmt = text.strip().lower()
    if fmt not in FORMATS:
        raise BadParameter(f"format: {text!r} is not one of {', '.join(FORMATS)}")
    return fmt
