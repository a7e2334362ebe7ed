"""Structured logs: one JSON object per line, secrets masked.

Contract: `setup_json_logging(stream_or_path, level)` installs a handler on the root logger
whose formatter writes `{"ts", "level", "logger", "msg", ...extra}`; `extra={"ctx": {...}}`
fields are merged in. Every line passes through `redact.REDACTOR.text` last, so a secret
value known to the redactor never reaches the log, whatever code logged it.
"""
from __future__ import annotations

import json
import logging
import sys
import time
from typing import IO

from .redact import REDACTOR


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
