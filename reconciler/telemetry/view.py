"""Per-application views of the totals for people (`reconciler top`, the TUI) (pure).

Contract: `series_json(totals)` is the exported series as JSON rows ({metric, labels, value});
`app_rows(totals, apps)` gives one row per app: packet rates by verdict, drop rate, byte rate, and
the layers whose share is unknown (a rate of None means unknown, never 0); `refused(totals, app)`
the refused sources of one app with the refusing layer and target, most refused first;
`service_rates(totals, app)` per-service rates.
"""
from __future__ import annotations

from typing import Any, Iterable

from reconciler.telemetry.model import Kind
from reconciler.telemetry.totals import Totals


def series_json(totals: Totals, apps: Iterable[str] | None = None) -> list[dict[str, Any]]:
    want = set(apps) if apps else None
    rows = []
    for (lab, layer, target), (p, b) in sorted(totals.series().items(), key=lambda kv: repr(kv[0])):
        if want is not None and lab.app not in want:
            continue
        if lab.kind is Kind.DROP:
            rows.append({"metric": "netintent_app_policy_drops_total", "value": p,
                         "labels": {"app": lab.app, "service": lab.service, "port": lab.port, "layer": layer,
                                    "source_app": lab.source_app, "target": target}})
            continue
        labels = {"app": lab.app, "service": lab.service, "port": lab.port, "verdict": lab.verdict, "layer": layer,
                  "target": target}
        rows.append({"metric": "netintent_app_packets_total", "labels": labels, "value": p})
        rows.append({"metric": "netintent_app_bytes_total", "labels": dict(labels), "value": b})
    return rows


def app_rows(totals: Totals, apps: Iterable[str]) -> dict[str, dict[str, Any]]:
    rates = totals.rates()
    out: dict[str, dict[str, Any]] = {a: {"pps": {}, "drops_ps": 0.0, "bps": 0.0, "unknown": []} for a in apps}
    for (lab, layer, _target), (pps, bps) in rates.items():
        row = out.get(lab.app)
        if row is None:
            continue
        if lab.kind is Kind.DROP:
            row["drops_ps"] += pps
        else:
            key = f"{layer}:{lab.verdict}"
            row["pps"][key] = row["pps"].get(key, 0.0) + pps
            if layer == "switch":
                row["bps"] += bps
    for u in totals.unknown:
        if u.app in out:
            out[u.app]["unknown"].append(f"{u.layer}/{u.target}")
    for row in out.values():
        if not rates:                  # one round only: no rate yet
            row["pps"], row["drops_ps"], row["bps"] = None, None, None
        elif any(u.startswith("switch/") for u in row["unknown"]) and not row["bps"]:
            row["bps"] = None          # no leaf of the app read: unknown, not 0
    return out


def refused(totals: Totals, app: str, limit: int = 10) -> list[dict[str, Any]]:
    rates = totals.rates()
    rows: list[dict[str, Any]] = []
    for (lab, layer, target), (p, _b) in totals.series().items():
        if lab.app == app and lab.kind is Kind.DROP:
            r = rates.get((lab, layer, target))
            rows.append({"source_app": lab.source_app, "service": lab.service, "port": lab.port, "layer": layer,
                         "target": target, "packets": p, "rate": r[0] if r else None})
    rows.sort(key=lambda r: (-(r["rate"] or 0.0), -r["packets"], r["source_app"]))
    return rows[:limit]


def service_rates(totals: Totals, app: str) -> dict[str, dict[str, float]]:
    """service ('' = the app as a whole) -> {'<layer>:<verdict>': packets/s}."""
    out: dict[str, dict[str, float]] = {}
    for (lab, layer, _t), (pps, _bps) in totals.rates().items():
        if lab.app == app and lab.kind is Kind.TRAFFIC:
            d = out.setdefault(lab.service, {})
            d[f"{layer}:{lab.verdict}"] = d.get(f"{layer}:{lab.verdict}", 0.0) + pps
    return out
