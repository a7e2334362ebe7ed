"""Confirm the sidecar (RPC) verdicts with real gRPC calls from the lab's workloads (verify --probe).

Contract:
- `rpc_groups(chosen, servers)` keeps the chosen pairs (probe.pick) whose verdict has an RPC plane
  (`rpc` delivered or dropped), whose witness path goes through the caller's xDS client (an
  `xds-client` hop: the model follows the caller node's listener for `xds:///<authority>`), whose
  destination the traffic split selects and that a lab workload serves (`servers`: (ip, port) ->
  server name, from the topology's workload labels). One group per (source host, authority): the
  calls a workload makes to that target reach every selected instance of the service.
- `probe_rpc(lab, chosen, calls, timeout_s, concurrency)` asks each group's source workload (its
  admin `/netintent.lab.Admin/Run`, reconciler.lab.grpc_checks.calls) for `calls` calls, each with
  deadline `timeout_s` (the admin call itself is bounded by grpc_checks), and returns (pairs probed,
  defects): a pair is reached when its server answered at least one call; a disagreement with the
  `rpc` verdict is a `Defect` (probe.py) with both verdicts. A Run that fails is a defect of every
  pair of its group (the probe could not confirm the model), with the error.
- Pairs whose RPC verdict the model decides without the caller's xDS client (a caller the intents
  do not allow dials the server directly with its own certificate) are not probed with gRPC: the
  lab's workloads only dial `xds:///` targets. Their L4 verdict is still probed with TCP.
"""
from __future__ import annotations

from typing import Any, Mapping, NamedTuple, Sequence

from reconciler.verify.pairs import Dest, Source
from reconciler.verify.verdict import DELIVERED, DROPPED, Verdict

CALLS, TIMEOUT_S, CONCURRENCY = 100, 1.0, 20
Pair = tuple[Source, Dest, bool, Verdict]


class RpcDefect(NamedTuple):
    source: str
    dest: str
    model: str
    probe: str
    detail: str


class Group(NamedTuple):
    host: str
    target: str
    pairs: tuple[tuple[Pair, str], ...]      # (pair, server name that answers for its destination)


def servers_of(lab: Any) -> dict[tuple[str, int], str]:
    """(ip, port) -> workload server name, from the lab topology's workload labels."""
    from reconciler.lab.workloads import specs
    return {(ip, port): name for spec in specs(lab.topo).values() for name, ip, port in spec.serve}


def callers_of(lab: Any) -> set[str]:
    from reconciler.lab.workloads import specs
    return set(specs(lab.topo))


def _via_client(v: Verdict) -> bool:
    return any(h.what == "xds-client" for h in v.hops)


def rpc_groups(chosen: Sequence[Pair], servers: Mapping[tuple[str, int], str],
               callers: set[str] | None = None) -> tuple[list[Group], int]:
    """The gRPC groups, and how many pairs with an RPC verdict stay unprobed by gRPC."""
    groups: dict[tuple[str, str], list[tuple[Pair, str]]] = {}
    skipped = 0
    for p in chosen:
        s, d, _, v = p
        if v.rpc not in (DELIVERED, DROPPED):
            continue
        name = servers.get((d.address, d.port))
        if (not _via_client(v) or not d.selected or name is None or s.host is None
                or (callers is not None and s.host not in callers)):
            skipped += 1
            continue
        groups.setdefault((s.host, d.authority), []).append((p, name))
    return [Group(h, f"xds:///{a}", tuple(ps)) for (h, a), ps in sorted(groups.items())], skipped


def judge(group: Group, tally: Mapping[str, Any]) -> list[RpcDefect]:
    """Defects of one group from its Run tally {"servers": {name: n}, "errors": {code: n}}."""
    answered = tally.get("servers") or {}
    errors = tally.get("errors") or {}
    out = []
    for (s, d, _, v), name in group.pairs:
        n = int(answered.get(name, 0))
        if (n > 0) != (v.rpc == DELIVERED):
            seen = f"{n} of the calls answered by {name}" if n else f"no call answered by {name}"
            err = f"; errors {dict(errors)}, first: {tally.get('first_error') or ''}" if errors else ""
            out.append(RpcDefect(s.id, d.id, f"rpc {v.rpc}", "gRPC answered" if n else "gRPC not answered",
                                 f"grpc {group.host} -> {group.target}: {seen}{err}"))
    return out


def probe_rpc(lab: Any, chosen: Sequence[Pair], calls: int = CALLS, timeout_s: float = TIMEOUT_S,
              concurrency: int = CONCURRENCY) -> tuple[int, list[RpcDefect], int]:
    """(pairs probed with gRPC, defects, pairs with an RPC verdict left to TCP only)."""
    from reconciler.lab import grpc_checks
    groups, skipped = rpc_groups(chosen, servers_of(lab), callers_of(lab))
    defects: list[RpcDefect] = []
    for g in groups:
        try:
            tally = grpc_checks.calls(lab, g.host, g.target, n=calls, timeout_s=timeout_s, concurrency=concurrency)
        except Exception as exc:    # grpc.RpcError, OSError, bad JSON: the probe could not run
            defects += [RpcDefect(s.id, d.id, f"rpc {v.rpc}", "gRPC probe failed",
                                  f"grpc {g.host} -> {g.target}: {type(exc).__name__}: {str(exc)[:200]}")
                        for (s, d, _, v), _ in g.pairs]
            continue
        defects += judge(g, tally)
    return sum(len(g.pairs) for g in groups), defects, skipped
