"""Compliance reports: which applications and devices match their intents (see docs/report.md).

Modules: model (frozen report values and the status vocabulary), records (bulk read of the
store), observe (a fresh read-only observation against the intents), build (the pure stage:
records + observation -> ComplianceReport), render (json, csv and the format dispatcher), html
(one self-contained file), params (since/format), serve (`GET /report`), cli (`reconciler report`).
"""
