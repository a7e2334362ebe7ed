"""Read what a workload's xDS clients actually hold, through CSDS (grpc_csds).

Contract: `dump(address, timeout)` asks one workload's CSDS service and returns one
`CsdsEntry` per (client scope, type, resource name): the resource as the client holds it
(`config`: the last accepted version, also when a newer one was NACKed), the client's status
(ACKED, NACKED, REQUESTED, DOES_NOT_EXIST, ...), the version it accepted, and for a NACK
the error detail and the rejected version. Raises grpc.RpcError when the workload cannot be
reached within `timeout`; the caller turns that into data. `parse(response)` is the pure part.
"""
from __future__ import annotations

from dataclasses import dataclass

import grpc
from envoy.service.status.v3 import csds_pb2, csds_pb2_grpc
from google.protobuf import any_pb2

from reconciler.xds import resources as _resources  # noqa: F401  (registers the resource protos)

_STATUS = csds_pb2.ClientConfig.GenericXdsConfig.DESCRIPTOR.fields_by_name["client_status"].enum_type


@dataclass(frozen=True)
class CsdsEntry:
    node: str
    scope: str            # the channel target ("#server" for xDS servers)
    type_url: str
    name: str
    status: str           # ClientResourceStatus name: ACKED, NACKED, REQUESTED, DOES_NOT_EXIST
    version: str
    config: any_pb2.Any | None
    error: str = ""
    rejected_version: str = ""


def dump(address: str, timeout: float = 3.0) -> list[CsdsEntry]:
    with grpc.insecure_channel(address) as ch:
        stub = csds_pb2_grpc.ClientStatusDiscoveryServiceStub(ch)
        resp = stub.FetchClientStatus(csds_pb2.ClientStatusRequest(), timeout=timeout)
    return parse(resp)


def parse(resp: csds_pb2.ClientStatusResponse) -> list[CsdsEntry]:
    """Entries of one CSDS response (pure; fixtures are stored as its JSON form)."""
    out: list[CsdsEntry] = []
    for cfg in resp.config:
        for g in cfg.generic_xds_configs:
            status = _STATUS.values_by_number[g.client_status].name
            has_cfg = g.HasField("xds_config") and bool(g.xds_config.type_url)
            out.append(CsdsEntry(
                node=cfg.node.id, scope=cfg.client_scope, type_url=g.type_url, name=g.name,
                status=status, version=g.version_info,
                config=g.xds_config if has_cfg else None,
                error=g.error_state.details if g.HasField("error_state") else "",
                rejected_version=g.error_state.version_info if g.HasField("error_state") else ""))
    return out
