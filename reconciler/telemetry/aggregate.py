"""Raw readings of a round + the index -> labelled points and unknown shares (pure).

Contract: `aggregate(reads, index, ts)` returns a `Sample`. A raw becomes a point only when the
index attributes it (a counter of something the reconciler wants and marks as its own); anything
else is dropped, never given to an app. A target that could not be read (`TargetRead.ok` false)
gives an `Unknown` for every app with counters on it, and no points: its share is unknown, not
zero. A switch device is attributed only when its alias names the same app the desired state
gives that device.
"""
from __future__ import annotations

from typing import Iterable

from reconciler.telemetry.index import Index
from reconciler.telemetry.model import Labels, Point, Raw, Sample, TargetRead, Unknown


def labels_of(raw: Raw, ix: Index) -> tuple[Labels, ...]:
    kind = raw.key[0]
    if kind == "counter":
        lab = ix.host_counters.get((raw.target, raw.key[1], raw.key[2]))
        return (lab,) if lab is not None else ()
    if kind == "refused":
        _, table, saddr, daddr, dport = raw.key
        lab = ix.refused_labels(raw.target, table, saddr, daddr, dport)
        return (lab,) if lab is not None else ()
    if kind == "flow":
        return ix.flows.get((raw.target, raw.key[1], raw.key[2]), ())
    if kind == "link":
        _, ifname, app, direction = raw.key
        return (Labels(app, verdict=direction),) if ix.vxlans.get((raw.target, ifname)) == app else ()
    return ()


def aggregate(reads: Iterable[TargetRead], ix: Index, ts: float, duration_s: float = 0.0) -> Sample:
    points: list[Point] = []
    unknown: list[Unknown] = []
    reads = tuple(reads)
    for read in reads:
        if not read.ok:
            unknown.extend(Unknown(app, read.layer, read.target, read.error)
                           for app in sorted(ix.apps_on.get((read.layer, read.target), ())))
            continue
        for raw in read.raws:
            for lab in labels_of(raw, ix):
                points.append(Point(lab, raw.layer, raw.target, raw.key, raw.packets, raw.bytes))
    return Sample(ts, tuple(points), tuple(unknown), reads, duration_s)
