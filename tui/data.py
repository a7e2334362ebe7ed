"""Read side of the TUI: the `ReadModel` protocol and the row types the screens render.

Contract: screens only see the frozen row types below (`AppRow`, `RunRow`, `DriftRow`,
`ResourceRow`), never store or engine objects. A `ReadModel` answers
`apps()`, `runs(app, limit)`, `drift_events(app, limit)`, `resources(app)` and
`set_self_heal(app, on)`; `read_only` says whether writes (self-heal) are possible and
`source` names where the data comes from (shown in the header). Implementations:
- `StoreReadModel` (tui/storemodel.py): over the service's SQLModel store, read by
  polling; the store's records are mapped by the `row_*` functions below, tolerant of
  missing fields (shown as unknown, never a crash).
- `EventModel` (tui/eventmodel.py): in memory, fed by engine events; used for read-only
  mode over a snapshot and for in-process runs when no store is given.
Spec values are passed through `redact()` before any screen sees them: secrets never shown.
"""
from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Protocol, Sequence, runtime_checkable

from reconciler.model import Layer, ResourceKey
from reconciler.status import Health, Outcome, Phase, Sync


class ResState(str, enum.Enum):
    """Status of one resource as the TUI shows it."""

    SYNCED = "synced"
    MISSING = "create"        # wanted, absent on the device
    DIFFERS = "update"        # present, fields differ
    EXTRA = "delete"          # present, not wanted; will be pruned
    ORPHAN = "orphan"         # present, not wanted; kept (prune off)
    FAILED = "failed"         # last apply failed
    UNREACHABLE = "unreachable"
    UNKNOWN = "unknown"

    @classmethod
    def parse(cls, value: Any) -> "ResState":
        if isinstance(value, ResState):
            return value
        text = str(getattr(value, "value", value) or "").lower()
        for s in cls:
            if s.value == text:
                return s
        return _RES_ALIASES.get(text, cls.UNKNOWN)

    @property
    def drifted(self) -> bool:
        return self not in (ResState.SYNCED, ResState.UNKNOWN)

    @property
    def label(self) -> str:
        return _RES_LABELS[self]

    @property
    def style(self) -> str:
        return _RES_STYLES[self]

    @property
    def icon(self) -> str:
        return _RES_ICONS[self]


_RES_ALIASES = {"in-sync": ResState.SYNCED, "insync": ResState.SYNCED, "ok": ResState.SYNCED,
                "missing": ResState.MISSING, "differs": ResState.DIFFERS, "drift": ResState.DIFFERS,
                "extra": ResState.EXTRA, "rolled-back": ResState.FAILED}
_RES_LABELS = {ResState.SYNCED: "synced", ResState.MISSING: "missing", ResState.DIFFERS: "differs",
               ResState.EXTRA: "extra (prune)", ResState.ORPHAN: "orphan (kept)", ResState.FAILED: "failed",
               ResState.UNREACHABLE: "unreachable", ResState.UNKNOWN: "unknown"}
_RES_STYLES = {ResState.SYNCED: "green", ResState.MISSING: "yellow", ResState.DIFFERS: "yellow",
               ResState.EXTRA: "red", ResState.ORPHAN: "magenta", ResState.FAILED: "bold red",
               ResState.UNREACHABLE: "bold red", ResState.UNKNOWN: "dim"}

_RES_ICONS = {ResState.SYNCED: "✔", ResState.MISSING: "+", ResState.DIFFERS: "~", ResState.EXTRA: "-",
              ResState.ORPHAN: "?", ResState.FAILED: "✘", ResState.UNREACHABLE: "!", ResState.UNKNOWN: "·"}

SYNC_STYLES = {Sync.SYNCED: "green", Sync.OUT_OF_SYNC: "yellow", Sync.UNKNOWN: "dim"}
HEALTH_STYLES = {Health.HEALTHY: "green", Health.PROGRESSING: "cyan", Health.DEGRADED: "bold red",
                 Health.UNKNOWN: "dim"}
PHASE_STYLES = {Phase.RUNNING: "cyan", Phase.SUCCEEDED: "green", Phase.FAILED: "bold red",
                Phase.INTERRUPTED: "magenta"}


@dataclass(frozen=True)
class AppRow:
    name: str
    sync: Sync = Sync.UNKNOWN
    health: Health = Health.UNKNOWN
    revision: str = ""
    last_sync: float | None = None
    drift_count: int = 0
    self_heal: bool | None = False   # None: the repo's sync policy decides
    message: str = ""          # e.g. "h3 unreachable"
    reach: tuple[int, int, int] | None = None   # reachability (violations, leaks, unknown); None: not verified
    # (accepted pkt/s, drops/s, a share unknown); None: no telemetry (tui/telemetrymodel.py)
    traffic: tuple[float | None, float | None, bool] | None = None


@dataclass(frozen=True)
class RunRow:
    run_id: str
    revision: str = ""
    trigger: str = ""
    phase: Phase = Phase.RUNNING
    started: float | None = None
    duration_s: float | None = None
    dry_run: bool = False
    writes: int = 0
    drift: int = 0
    apps: tuple[str, ...] = ()
    message: str = ""

    @property
    def outcome_label(self) -> str:
        if self.phase is Phase.RUNNING:
            return "running"
        if self.dry_run:
            return "dry-run" if self.phase is Phase.SUCCEEDED else f"dry-run {self.phase.value}"
        return self.phase.value


@dataclass(frozen=True)
class DriftRow:
    ts: float | None
    run_id: str
    app: str
    key: str
    action: str
    executed: bool = True


@dataclass(frozen=True)
class ResourceRow:
    key: ResourceKey
    status: ResState
    app: str = ""
    desired: Any = None      # JSON spec (redacted) or None when not wanted
    observed: Any = None     # JSON spec (redacted) or None when absent
    message: str = ""


@runtime_checkable
class ReadModel(Protocol):
    source: str
    read_only: bool

    def apps(self) -> list[AppRow]: ...

    def runs(self, app: str | None = None, limit: int = 50) -> list[RunRow]: ...

    def drift_events(self, app: str | None = None, limit: int = 100) -> list[DriftRow]: ...

    def resources(self, app: str) -> list[ResourceRow]: ...

    def set_self_heal(self, app: str, on: bool) -> None: ...


# ---- secrets ----------------------------------------------------------------------------
HIDDEN = "***"
SECRET_VALUE = re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----")


def redact(value: Any) -> Any:
    """Copy of a JSON value with secret fields/values masked (the service's `Redactor` rules,
    plus PEM private keys anywhere)."""
    from reconciler.redact import REDACTOR
    return _pem(REDACTOR.value(value))


def _pem(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _pem(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_pem(v) for v in value]
    if isinstance(value, str) and SECRET_VALUE.search(value):
        return HIDDEN
    return value


# ---- conversion helpers (tolerant of the store's record shapes) ---------------------------
def _get(obj: Any, *names: str, default: Any = None) -> Any:
    for n in names:
        if isinstance(obj, Mapping):
            if n in obj:
                return obj[n]
        elif hasattr(obj, n):
            return getattr(obj, n)
    return default


def _enum(cls: type[enum.Enum], value: Any, default: Any) -> Any:
    if isinstance(value, cls):
        return value
    try:
        return cls(getattr(value, "value", value))
    except ValueError:
        return default


def _ts(value: Any) -> float | None:
    if value is None or value == "":
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if hasattr(value, "timestamp"):
        from datetime import timezone
        if getattr(value, "tzinfo", None) is None:
            value = value.replace(tzinfo=timezone.utc)
        return value.timestamp()
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _opt_bool(value: Any) -> bool | None:
    return None if value is None else bool(value)


def _json(value: Any) -> Any:
    if isinstance(value, (str, bytes)) and value and str(value)[:1] in "[{":
        import json
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def row_app(obj: Any) -> AppRow:
    return AppRow(name=str(_get(obj, "name", "app", default="")),
                  sync=_enum(Sync, _get(obj, "sync", "sync_status"), Sync.UNKNOWN),
                  health=_enum(Health, _get(obj, "health"), Health.UNKNOWN),
                  revision=str(_get(obj, "revision", default="") or ""),
                  last_sync=_ts(_get(obj, "last_sync", "last_synced")),
                  drift_count=int(_get(obj, "drift_count", "drift", default=0) or 0),
                  self_heal=_opt_bool(_get(obj, "self_heal", default=False)),
                  message=str(_get(obj, "message", default="") or ""))


def row_run(obj: Any) -> RunRow:
    apps = _json(_get(obj, "apps", default=()))
    if isinstance(apps, str):
        apps = [a for a in apps.split(",") if a]
    outcome = _get(obj, "phase", "outcome", "status")
    return RunRow(run_id=str(_get(obj, "run_id", "id", default="")),
                  revision=str(_get(obj, "revision", default="") or ""),
                  trigger=str(_get(obj, "trigger", default="") or ""),
                  phase=_enum(Phase, outcome, Phase.FAILED if outcome else Phase.RUNNING),
                  started=_ts(_get(obj, "started", "started_at", "ts")),
                  duration_s=_get(obj, "duration_s", "duration"),
                  dry_run=bool(_get(obj, "dry_run", default=False)),
                  writes=int(_get(obj, "writes", default=0) or 0),
                  drift=int(_get(obj, "drift", "drift_count", default=0) or 0),
                  apps=tuple(apps or ()),
                  message=str(_get(obj, "message", "error", default="") or ""))


def row_drift(obj: Any) -> DriftRow:
    return DriftRow(ts=_ts(_get(obj, "ts", "time", "detected_at", "created")),
                    run_id=str(_get(obj, "run_id", default="") or ""),
                    app=str(_get(obj, "app", default="") or ""),
                    key=str(_get(obj, "key", default="")),
                    action=str(getattr(_get(obj, "action", default=""), "value", _get(obj, "action", default=""))),
                    executed=bool(_get(obj, "executed", default=True)))


def row_resource(obj: Any, app: str = "") -> ResourceRow:
    key = _get(obj, "key")
    if not isinstance(key, ResourceKey):
        try:
            key = ResourceKey.parse(str(key))
        except (ValueError, KeyError):
            key = ResourceKey(_enum(Layer, _get(obj, "layer"), Layer.HOST), str(_get(obj, "target", default="?")),
                              str(_get(obj, "kind", default="?")), str(_get(obj, "name", default=str(key))))
    desired = _json(_get(obj, "desired", "desired_spec"))
    observed = _json(_get(obj, "observed", "observed_spec"))
    return ResourceRow(key=key, status=ResState.parse(_get(obj, "status", "state")),
                       app=str(_get(obj, "app", default=app) or app),
                       desired=None if desired is None else redact(desired),
                       observed=None if observed is None else redact(observed),
                       message=str(_get(obj, "message", "error", default="") or ""))


def group_tree(rows: Iterable[ResourceRow]) -> dict[Layer, dict[str, list[ResourceRow]]]:
    """layer -> target -> resources, layers in creation order, targets sorted."""
    out: dict[Layer, dict[str, list[ResourceRow]]] = {}
    for r in sorted(rows, key=lambda r: r.key.sort_key()):
        out.setdefault(r.key.layer, {}).setdefault(r.key.target, []).append(r)
    return out


def worst(states: Sequence[ResState]) -> ResState:
    order = [ResState.UNREACHABLE, ResState.FAILED, ResState.EXTRA, ResState.DIFFERS, ResState.MISSING,
             ResState.ORPHAN, ResState.UNKNOWN, ResState.SYNCED]
    for s in order:
        if s in states:
            return s
    return ResState.SYNCED


__all__ = ["AppRow", "RunRow", "DriftRow", "ResourceRow", "ResState", "ReadModel",
           "redact", "group_tree", "worst", "row_app", "row_run", "row_drift", "row_resource", "Outcome"]
