"""The daemon's `GET /report`: the compliance report from the store, in json, csv or html.

Contract: `report_endpoint(store)` returns the callable the HTTP server hands a request's raw
query string to; it answers (status, body, media type). Query: `format` (json, csv, html;
default json), `app` (repeatable), `since` (ISO 8601). The report is built from the store only
(the daemon's drift scans keep it current; a GET never touches a device). A bad parameter is
400 and an unknown application 404, each with a one-line JSON `error`; a store that cannot be
read is 503. Authentication is the HTTP server's (signed requests), not this module's.
"""
from __future__ import annotations

import json
import logging
import time
import urllib.parse
from typing import Any, Callable

from sqlalchemy.exc import DBAPIError, OperationalError

from reconciler.compliance.build import UnknownApp, build_report
from reconciler.compliance.params import BadParameter, check_format, parse_since
from reconciler.compliance.records import read_store
from reconciler.compliance.render import render

log = logging.getLogger("reconciler.compliance.serve")

ReportHandler = Callable[[str], tuple[int, bytes, str]]
_MAX_FIELDS = 64


def _error(code: int, msg: str) -> tuple[int, bytes, str]:
    return code, (json.dumps({"error": msg}) + "\n").encode(), "application/json"


def report_endpoint(store: Any, clock: Callable[[], float] = time.time) -> ReportHandler:
    def handle(query: str) -> tuple[int, bytes, str]:
        try:
            params = urllib.parse.parse_qs(query, keep_blank_values=True, strict_parsing=False,
                                           max_num_fields=_MAX_FIELDS)
            unknown = sorted(set(params) - {"format", "app", "since"})
            if unknown:
                raise BadParameter(f"unknown parameter(s) {', '.join(unknown)} (known: format, app, since)")
            fmt = check_format(params.get("format", ["json"])[-1])
            since = parse_since(params["since"][-1]) if "since" in params else None
            records = read_store(store, since)
            report = build_report(records, now=clock(), since=since, apps=params.get("app"))
        except UnknownApp as exc:
            return _error(404, str(exc))
        except BadParameter as exc:
            return _error(400, str(exc))
        except ValueError as exc:   # parse_qs: too many fields
            return _error(400, f"bad query: {exc}")
        except (OperationalError, DBAPIError) as exc:
            log.warning("report: store unreadable: %s", exc.__class__.__name__)
            return _error(503, "store unavailable")
        text, ctype = render(report, fmt)
        return 200, text.encode(), ctype
    return handle
