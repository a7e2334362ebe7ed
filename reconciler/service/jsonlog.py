"""Structured logs: one JSON object per line, secrets masked.

Contract: `setup_json_logging(stream_or_path, level)` installs a handler on the root logger
whose formatter writes `{"ts", "level", "logger", "msg", ...extra}`; `extra={"ctx": {...}}`
fields are merged in. `log_event` is an engine-event observer that turns run, drift and
failed-apply events into such lines (logger `reconciler.daemon`). Every line passes through
`redact.REDACTOR.text` last, so a secret value known to the redactor never reaches the log, whatever code logged it.
"""
from __future__ import annotations

import json
import logging
import sys
import time
from typing import IO, Any

from reconciler.events import Event, EventKind
from reconciler.redact import REDACTOR

log = logging.getLogger("reconciler.daemon")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {"ts": round(record.created, 3),
               "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + "Z",
               "level": record.levelname.lower(), "logger": record.name, "msg": record.getMessage()}
        ctx = getattr(record, "ctx", None)
        if isinstance(ctx, dict):
            for k, v in ctx.items():
                out.setdefault(k, v)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return REDACTOR.text(json.dumps(REDACTOR.value(out), default=str, sort_keys=False))


def setup_json_logging(target: str | IO[str] | None = None, level: int = logging.INFO) -> logging.Handler:
    if target is None or target == "-":
        handler: logging.Handler = logging.StreamHandler(sys.stderr)
    elif isinstance(target, str):
        handler = logging.FileHandler(target, encoding="utf-8")
    else:
        handler = logging.StreamHandler(target)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.addHandler(handler)
    root.setLevel(level)
    logging.getLogger("apscheduler").setLevel(logging.ERROR)  # "skipped: max instances" is by design
    return handler


_LOGGED = {EventKind.RUN_STARTED, EventKind.RUN_FINISHED, EventKind.DRIFT, EventKind.APPLIED}
# per-target timing, logged only under --verbose (where a run's seconds go)
_TRACED = {EventKind.OBSERVED, EventKind.APPLY_STARTED, EventKind.APPLIED}


def log_event(ev: Event) -> None:
    failed = ev.kind is EventKind.APPLIED and ev.outcome is not None and not ev.outcome.ok
    traced = ev.kind in _TRACED and log.isEnabledFor(logging.DEBUG)
    if not (failed or traced or ev.kind in _LOGGED - {EventKind.APPLIED}):
        return
    ctx: dict[str, Any] = {"event": ev.kind.value, "run_id": ev.run_id}
    if ev.app:
        ctx["app"] = ev.app
    if ev.target:
        ctx["target"] = f"{ev.layer.value if ev.layer else ''}/{ev.target}"
    if ev.key:
        ctx["key"] = ev.key
    if ev.outcome is not None:
        ctx["outcome"] = ev.outcome.value
    if ev.kind is EventKind.RUN_FINISHED:
        ctx.update({k: ev.data.get(k) for k in ("phase", "duration_s", "revision", "converged", "writes")})
    if ev.kind is EventKind.RUN_STARTED:
        ctx.update({"trigger": ev.message, "revision": ev.data.get("revision"), "dry_run": ev.data.get("dry_run")})
    level = (logging.WARNING if failed else
             logging.DEBUG if traced or ev.kind is EventKind.DRIFT else logging.INFO)
    log.log(level, "%s%s", ev.kind.value, f": {ev.message}" if ev.message and ev.kind is EventKind.APPLIED else "",
            extra={"ctx": ctx})
