"""Typed, frozen models of the intents repo after schema validation.

Contract: these models are built only from documents that already passed the JSON Schema
(`reconciler.intents.validate`), so they describe shape, not user-facing error reporting. They are
immutable (pydantic `frozen=True, extra="forbid"`) and carry `source` (file path) so later
stages can point back at the file an application came from.

Names used here (see schemas/application.schema.json for the documented contract):
  Application.spec.segment   the app's own network: VNI, VLAN (derived from VNI if absent), subnet
  Application.spec.services  services with identity, instances (host, address, version) and ports
  Application.spec.exports   services other applications may call
  Application.spec.policy    default deny; `allow` rules from a local service to a local or
                             exported remote service (`app/service`) on named ports
  Application.spec.traffic   per service: weighted split by version, mTLS mode, timeout, retries
Values IPAM allocates (docs/ipam.md) are "" / 0 / None in the file's model; the loader hands
semantics and compile the resolved models (reconciler.ipam.allocate), never those placeholders.
"""
from __future__ import annotations

import ipaddress
from typing import Literal, Mapping

from pydantic import BaseModel, ConfigDict, Field

from reconciler.model import IgnoreRule

FROZEN = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class Port(BaseModel):
    model_config = FROZEN
    name: str
    port: int
    protocol: Literal["tcp", "udp"] = "tcp"


class Instance(BaseModel):
    model_config = FROZEN
    host: str
    address: str = ""  # "" until reconciler.ipam allocates one: compile only sees resolved repos
    version: str = "v1"
    interface: str | None = None  # host interface; defaults to the inventory's netintent_interface
    name: str | None = None  # IPAM key within the service (default host[/interface], reconciler.ipam.model)


class Service(BaseModel):
    model_config = FROZEN
    identity: str | None = None
    instances: tuple[Instance, ...] = ()
    ports: tuple[Port, ...] = ()

    def port(self, name: str) -> Port | None:
        return next((p for p in self.ports if p.name == name), None)


class Segment(BaseModel):
    model_config = FROZEN
    vni: int = 0  # 0 until reconciler.ipam allocates one (a literal VNI is >= 1)
    subnet: str
    vlan: int | None = None
    gateway: str | None = None
    reserved: tuple[str, ...] = ()  # addresses / `a-b` ranges IPAM never allocates

    @property
    def vlan_id(self) -> int:
        # Default VLAN derives from the VNI so it is stable across commits; validate
        # reports a collision and asks for an explicit `vlan` then.
        return self.vlan if self.vlan is not None else (self.vni - 1) % 4094 + 1

    @property
    def network(self) -> ipaddress.IPv4Network:
        return ipaddress.ip_network(self.subnet, strict=False)  # type: ignore[return-value]

    @property
    def gateway_address(self) -> str:
        return self.gateway or str(next(self.network.hosts()))


class AllowRule(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)
    from_: str = Field(alias="from")
    to: str
    ports: tuple[str, ...] | None = None  # None: every port of `to`


class Policy(BaseModel):
    model_config = FROZEN
    allow: tuple[AllowRule, ...] = ()


class Traffic(BaseModel):
    model_config = FROZEN
    split: Mapping[str, int] | None = None
    mtls: Literal["strict", "permissive", "disable"] = "disable"
    timeout_ms: int | None = None
    retries: int | None = None


class Metadata(BaseModel):
    model_config = FROZEN
    name: str
    labels: Mapping[str, str] = {}


class ApplicationSpec(BaseModel):
    model_config = FROZEN
    segment: Segment
    services: Mapping[str, Service]
    exports: tuple[str, ...] = ()
    policy: Policy = Policy()
    traffic: Mapping[str, Traffic] = {}


class Application(BaseModel):
    model_config = FROZEN
    apiVersion: Literal["netintent/v1"]
    kind: Literal["Application"]
    metadata: Metadata
    spec: ApplicationSpec
    source: str = ""  # path of the file inside the repo, set by the loader

    @property
    def name(self) -> str:
        return self.metadata.name

    def identity_of(self, service: str, trust_domain: str) -> str:
        svc = self.spec.services[service]
        return svc.identity or f"spiffe://{trust_domain}/{self.name}/{service}"


class SyncPolicy(BaseModel):
    model_config = FROZEN
    interval_s: int = 60
    drift_interval_s: int = 30
    telemetry_interval_s: int = 15   # per-app counter collection (reconciler.telemetry)
    self_heal: bool = False
    prune: bool = False
    windows: tuple[Mapping[str, str], ...] = ()


class Pool(BaseModel):
    model_config = FROZEN
    start: int
    end: int


class IpamConfig(BaseModel):
    model_config = FROZEN
    vni: Pool | None = None
    vlan: Pool | None = None


class RepoConfig(BaseModel):
    """reconciler.yaml"""

    model_config = FROZEN
    apiVersion: Literal["netintent/v1"] = "netintent/v1"
    kind: Literal["ReconcilerConfig"] = "ReconcilerConfig"
    trust_domain: str = "netintent.local"
    inventory: str = "inventory.yml"
    sync: SyncPolicy = SyncPolicy()
    ignore: tuple[IgnoreRule, ...] = ()
    ipam: IpamConfig = IpamConfig()


class InventoryHost(BaseModel):
    """One host of the Ansible inventory with its merged variables."""

    model_config = ConfigDict(frozen=True, extra="allow")
    name: str
    groups: tuple[str, ...]
    vars: Mapping[str, object] = {}

    def var(self, name: str, default: object = None) -> object:
        return self.vars.get(name, default)


class Inventory(BaseModel):
    model_config = FROZEN
    hosts: Mapping[str, InventoryHost] = {}

    def group(self, name: str) -> tuple[InventoryHost, ...]:
        return tuple(h for _, h in sorted(self.hosts.items()) if name in h.groups)

    def in_group(self, host: str, group: str) -> bool:
        h = self.hosts.get(host)
        return h is not None and group in h.groups


class IntentRepo(BaseModel):
    """Everything compile needs: the config, the inventory and all applications."""

    model_config = FROZEN
    config: RepoConfig = RepoConfig()
    inventory: Inventory = Inventory()
    apps: Mapping[str, Application] = {}
    revision: str = ""
    # What reconciler.ipam allocated for this repo (apps above already carry the values);
    # an ipam.model.Allocations, typed loosely so the models do not import the allocator.
    allocations: object = None
