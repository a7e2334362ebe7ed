"""Formatting helpers shared by the widgets (pure): ages, revisions, styled status labels.

Contract: functions of their arguments only (the clock is passed in), so snapshot tests
that pin the clock render the same pixels every time.
"""
from __future__ import annotations

from rich.text import Text

from reconciler.status import Health, Phase, Sync
from tui.data import HEALTH_STYLES, PHASE_STYLES, SYNC_STYLES, AppRow, ResState

SYNC_ICONS = {Sync.SYNCED: "✔", Sync.OUT_OF_SYNC: "✘", Sync.UNKNOWN: "?"}
HEALTH_ICONS = {Health.HEALTHY: "♥", Health.PROGRESSING: "◌", Health.DEGRADED: "!", Health.UNKNOWN: "?"}


def age(ts: float | None, now: float) -> str:
    if ts is None:
        return "never"
    s = max(0.0, now - ts)
    if s < 60:
        return f"{int(s)}s ago"
    if s < 3600:
        return f"{int(s // 60)}m ago"
    if s < 86400:
        return f"{int(s // 3600)}h ago"
    return f"{int(s // 86400)}d ago"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 120:
        return f"{seconds:.1f}s"
    return f"{seconds / 60:.1f}m"


def short_rev(rev: str) -> str:
    if not rev:
        return "—"
    return rev[:8] if len(rev) >= 40 or all(c in "0123456789abcdef" for c in rev) else rev[:12]


def sync_text(s: Sync) -> Text:
    return Text(f"{SYNC_ICONS[s]} {s.value}", style=SYNC_STYLES[s])


def health_text(h: Health) -> Text:
    return Text(f"{HEALTH_ICONS[h]} {h.value}", style=HEALTH_STYLES[h])


def phase_text(label: str, phase: Phase) -> Text:
    return Text(label, style=PHASE_STYLES.get(phase, ""))


def state_text(s: ResState) -> Text:
    return Text(s.label, style=s.style)


def drift_text(n: int) -> Text:
    return Text(str(n), style="yellow bold" if n else "green")


def heal_text(v: bool | None) -> Text:
    if v is None:
        return Text("policy", style="dim")
    return Text("on", style="green") if v else Text("off", style="dim")


def app_matches(row: AppRow, query: str) -> bool:
    """Search: free words match name/revision/message (substring, case-insensitive);
    `sync:X`, `health:X`, `heal:on|off`, `drift:>0` narrow further."""
    for tok in query.lower().split():
        field, sep, val = tok.partition(":")
        if sep and field == "sync":
            if not row.sync.value.lower().startswith(val):
                return False
        elif sep and field == "health":
            if not row.health.value.lower().startswith(val):
                return False
        elif sep and field in ("heal", "self-heal", "selfheal"):
            if (val in ("on", "yes", "true")) != bool(row.self_heal):
                return False
        elif sep and field == "drift":
            if val in (">0", "yes", "y") and row.drift_count == 0:
                return False
            if val in ("0", "no", "n") and row.drift_count != 0:
                return False
        elif (tok not in row.name.lower() and not row.revision.lower().startswith(tok)
              and tok not in row.message.lower()):
            return False
    return True
