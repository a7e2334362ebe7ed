"""Confirm the model with real traffic from inside the lab namespaces.

Contract: `probe(lab, results, sample=None, seed=0)` picks TCP pairs whose L4 verdict is decided
(delivered or dropped) and whose source is an instance (OUTSIDE has no namespace): all of them,
or `sample` of them (every allowed pair first, then a seeded random choice of the rest, so a run
is repeatable). It connects with reconciler.lab.probe.probe_tcp (a bounded listener inside the
destination node bound to the destination address, a client inside the source node bound to
the source address) and returns the number of pairs probed and one `Defect` per pair where the
model and the probe disagree, with both verdicts: a defect of the model, not of the network.
The probe sees what a TCP connect sees, so it is compared with the `l4` verdict.
Pairs with an RPC plane (a sidecar on the destination) are also confirmed with real gRPC calls
from the source's workload to the service's `xds:///` target (grpc_probe.py, bounded in count and
deadline), and callers the intents do not allow but L4 delivers by a direct dial with their own
certificate (grpc_direct.py); both compared with the `rpc` verdict. `grpc=False`: TCP alone.
"""
from __future__ import annotations

import random
from typing import Iterable, NamedTuple, Sequence

from reconciler.lab.probe import Flow, probe_tcp
from reconciler.verify.pairs import Dest, Source
from reconciler.verify.verdict import DELIVERED, DROPPED, DestResult, Verdict


class Defect(NamedTuple):
    source: str
    dest: str
    model: str
    probe: str
    detail: str


def pick(results: Iterable[DestResult], sample: int | None = None, seed: int = 0
         ) -> list[tuple[Source, Dest, bool, Verdict]]:
    pairs = [(s, r.dest, a, v) for r in results for s, a, v in r.pairs
             if s.host is not None and r.dest.proto == "tcp" and v.l4 in (DELIVERED, DROPPED)]
    if sample is None or sample >= len(pairs):
        return pairs
    first = [p for p in pairs if p[2]][:sample]
    rest = [p for p in pairs if not p[2]]
    random.Random(seed).shuffle(rest)
    return first + rest[:sample - len(first)]


def probe(lab, results: Iterable[DestResult], sample: int | None = None, seed: int = 0,
          timeout: float = 1.0, grpc: bool = True) -> tuple[int, list[Defect]]:
    chosen = pick(results, sample, seed)
    flows = [Flow(s.host or "", s.address, d.host, d.address, d.port, f"{s.id} -> {d.id}") for s, d, _, _ in chosen]
    got = _run(lab, flows, timeout)
    defects = []
    for (s, d, _, v), r in zip(chosen, got):
        model_says = v.l4 == DELIVERED
        if r.connected != model_says:
            defects.append(Defect(s.id, d.id, v.l4, "connected" if r.connected else "not connected",
                                  r.detail or ""))
    if grpc and any(v.rpc is not None for _, _, _, v in chosen):
        from reconciler.verify.grpc_direct import probe_direct
        from reconciler.verify.grpc_probe import probe_rpc
        defects += [Defect(*d) for d in probe_rpc(lab, chosen)[1]]
        defects += [Defect(*d) for d in probe_direct(lab, chosen)[1]]
    return len(chosen), defects


def _run(lab, flows: Sequence[Flow], timeout: float):
    """probe_tcp binds one listener per destination; pairs sharing a destination run in one call."""
    return probe_tcp(lab, list(flows), timeout=timeout) if flows else []
