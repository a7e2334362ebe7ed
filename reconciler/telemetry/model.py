"""Values of the telemetry pipeline (frozen) and its vocabularies (enums).

Contract:
- `Raw` is one counter as a device reports it: the layer and target it was read from, a
  `key` naming the counter on that device (stable across reads, so resets can be detected),
  and its packets/bytes since the counter was created.
- `TargetRead` is one target's part of a round: `ok` with its raws, or not ok with an error
  (its share is unknown: never read as zero).
- `Labels` say what a counter means for an application; `Kind.TRAFFIC` counters become
  `netintent_app_packets_total`/`_bytes_total`, `Kind.DROP` ones `netintent_app_policy_drops_total`.
- `Point` is a labelled reading of one round (raw values; totals.py makes them monotonic).
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, field


class Verdict(str, enum.Enum):
    ACCEPT = "accept"     # host: new connections a policy rule let in; hypervisor: traffic an app's port sent
    DROP = "drop"         # refused by a policy rule (host) or the anti-spoofing guard (hypervisor)
    RX = "rx"             # switch: received on the app's VXLAN device (from the fabric)
    TX = "tx"             # switch: sent on the app's VXLAN device (to the fabric)


class Kind(str, enum.Enum):
    TRAFFIC = "traffic"   # packets/bytes by verdict
    DROP = "drop"         # policy drops by refused source


class ReadStatus(str, enum.Enum):
    OK = "ok"
    UNKNOWN = "unknown"   # the target could not be read: its share is unknown


UNKNOWN = ReadStatus.UNKNOWN.value
EXTERNAL = "external"     # a refused source that is no instance of any app


@dataclass(frozen=True)
class Raw:
    layer: str
    target: str
    key: tuple
    packets: int
    bytes: int


@dataclass(frozen=True)
class TargetRead:
    layer: str
    target: str
    ok: bool
    raws: tuple[Raw, ...] = ()
    error: str = ""
    duration_s: float = 0.0


@dataclass(frozen=True)
class Labels:
    app: str
    service: str = ""
    port: str = ""
    verdict: str = ""
    source_app: str = ""
    kind: Kind = Kind.TRAFFIC


@dataclass(frozen=True)
class Point:
    labels: Labels
    layer: str
    target: str
    key: tuple             # the device counter (layer, target, key) the value comes from
    packets: int
    bytes: int


@dataclass(frozen=True)
class Unknown:
    """An app's share on a target that could not be read."""

    app: str
    layer: str
    target: str
    error: str


@dataclass(frozen=True)
class Sample:
    """One collection round, aggregated: labelled points, unknown shares, per-target status."""

    ts: float
    points: tuple[Point, ...] = ()
    unknown: tuple[Unknown, ...] = ()
    targets: tuple[TargetRead, ...] = field(default=(), repr=False)
    duration_s: float = 0.0
