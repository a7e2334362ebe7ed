"""Generator of valid intents repos of any size, for the scale benches (bench/plan.py).

Contract: `Layout.of(apps, hosts)` sizes the fabric (10 hosts per hypervisor, 10 hypervisors
per leaf, so 100 hosts per leaf) and raises `ValueError` when no valid repo of that size
exists (a leaf has 4093 usable VLANs); `make_repo(layout)` returns an `IntentRepo` that passes
`check_semantics` (`validate(repo)` says so; the unit tests check it at several sizes).
Deterministic: same layout, same repo. `make_app(i, layout, rev)` is app i, with its web port
moved by `rev` (an edit that changes app i's own resources and nothing else).

Placement: apps are cut into consecutive runs of `apps_per_leaf`, one run per leaf. Slot `s`
of a leaf holds one app: VLAN `s + 2` (unique per leaf: VLANs scale with apps per leaf), its
two services on the hosts of pair `s % pairs` (both under one hypervisor) on interface
`eth{s // pairs + 1}` (interfaces per host scale with apps per leaf; one app per interface,
each with its own hypervisor port). Subnets are consecutive /28s from 10.0.0.0 (10.255/16
holds the VTEPs). Every 50th app calls the exported `api` of the next one when both sit under
one leaf (a flow across apps; across leaves their VLANs could meet on a leaf).
"""
from __future__ import annotations

import json
from dataclasses import dataclass

from reconciler.intents.loader import Doc
from reconciler.intents.models import Application, IntentRepo, Inventory, InventoryHost, RepoConfig
from reconciler.intents.semantics import AppDoc, check_semantics

HOSTS_PER_HV = 10
HVS_PER_LEAF = 10
HOSTS_PER_LEAF = HOSTS_PER_HV * HVS_PER_LEAF
FIRST_VLAN, LAST_VLAN = 2, 4094
MAX_LEAVES = 250 * 255            # VTEPs 10.255.<a>.<b>
SUBNET_SIZE = 16                  # /28: gateway .1, instances .4 and .5
MAX_APPS = (255 << 16) // SUBNET_SIZE  # 10.0.0.0 up to 10.254.255.255
CALL_EVERY = 50


@dataclass(frozen=True)
class Layout:
    apps: int
    hosts: int
    leaves: int
    hosts_per_leaf: int
    apps_per_leaf: int
    ifaces_per_host: int

    @classmethod
    def of(cls, apps: int, hosts: int) -> "Layout":
        if apps < 1 or hosts < 2 or hosts % 2 or (hosts > HOSTS_PER_LEAF and hosts % HOSTS_PER_LEAF):
            raise ValueError(f"{hosts} hosts: need an even number, a multiple of {HOSTS_PER_LEAF} above "
                             f"{HOSTS_PER_LEAF}, and at least one app")
        if apps > MAX_APPS:
            raise ValueError(f"{apps} apps: at most {MAX_APPS} /28 subnets fit in 10.0.0.0/8 outside the VTEPs")
        per_leaf_hosts = min(hosts, HOSTS_PER_LEAF)
        leaves = -(-hosts // per_leaf_hosts)
        if leaves > MAX_LEAVES:
            raise ValueError(f"{hosts} hosts: at most {MAX_LEAVES} leaves ({MAX_LEAVES * HOSTS_PER_LEAF} hosts)")
        per_leaf = -(-apps // leaves)
        vlans = LAST_VLAN - FIRST_VLAN + 1
        if per_leaf > vlans:
            need = -(-apps // vlans) * per_leaf_hosts
            raise ValueError(f"{apps} apps over {leaves} leaves is {per_leaf} apps per leaf, more than its "
                             f"{vlans} VLANs: give at least {need} hosts")
        pairs = per_leaf_hosts // 2
        return cls(apps, hosts, leaves, per_leaf_hosts, per_leaf, -(-per_leaf // pairs))

    def place(self, i: int) -> tuple[int, int, int, int]:
        """(leaf, slot, first host, interface number) of app i; the second host is first + 1."""
        leaf, slot = divmod(i, self.apps_per_leaf)
        pairs = self.hosts_per_leaf // 2
        k, pair = divmod(slot, pairs)
        return leaf, slot, leaf * self.hosts_per_leaf + 2 * pair, k + 1


def make_inventory(layout: Layout) -> Inventory:
    hosts: dict[str, InventoryHost] = {}
    n_hv = -(-layout.hosts // HOSTS_PER_HV)
    for i in range(layout.leaves):
        hosts[f"leaf{i}"] = InventoryHost(name=f"leaf{i}", groups=("switches",), vars={
            "netintent_vtep": f"10.255.{i // 250}.{i % 250 + 1}", "netintent_asn": 65000 + i,
            "netintent_fabric_ports": ["eth100"]})
    for i in range(n_hv):
        hosts[f"hv{i}"] = InventoryHost(name=f"hv{i}", groups=("hypervisors",), vars={
            "netintent_leaf": f"leaf{i // HVS_PER_LEAF}", "netintent_leaf_port": f"eth{i % HVS_PER_LEAF + 1}",
            "netintent_uplink": "eth1"})
    for i in range(layout.hosts):
        # one interface per application segment on the host, each with its own hypervisor port
        hosts[f"h{i}"] = InventoryHost(name=f"h{i}", groups=("hosts", "sidecars"), vars={
            "netintent_hypervisor": f"hv{i // HOSTS_PER_HV}", "netintent_hypervisor_port": f"h{i}-eth1",
            "netintent_hypervisor_ports": {f"eth{k}": f"h{i}-eth{k}" for k in range(1, layout.ifaces_per_host + 1)}})
    return Inventory(hosts=hosts)


def _subnet(i: int) -> tuple[str, str]:
    """(subnet, first three octets + base of the last) of app i's /28."""
    base = i * SUBNET_SIZE
    a, b, c, d = 10, base >> 16 & 255, base >> 8 & 255, base & 255
    return f"{a}.{b}.{c}.{d}/28", f"{a}.{b}.{c}.{d}"


def make_app(i: int, layout: Layout, rev: int = 0) -> Application:
    leaf, slot, h1, iface = layout.place(i)
    subnet, base = _subnet(i)
    head, last = base.rsplit(".", 1)
    web, api = f"{head}.{int(last) + 4}", f"{head}.{int(last) + 5}"
    allow = [{"from": "web", "to": "api", "ports": ["grpc"]}]
    if i % CALL_EVERY == 0 and i + 1 < layout.apps and layout.place(i + 1)[0] == leaf:
        allow.append({"from": "web", "to": f"app{i + 1}/api", "ports": ["grpc"]})
    return Application.model_validate({
        "apiVersion": "netintent/v1", "kind": "Application",
        "metadata": {"name": f"app{i}"},
        "spec": {
            "segment": {"vni": 10000 + i, "vlan": FIRST_VLAN + slot, "subnet": subnet},
            "services": {
                "web": {"instances": [{"host": f"h{h1}", "address": web, "interface": f"eth{iface}"}],
                        "ports": [{"name": "http", "port": 8000 + rev}]},
                "api": {"instances": [{"host": f"h{h1 + 1}", "address": api, "interface": f"eth{iface}"}],
                        "ports": [{"name": "grpc", "port": 9000}]},
            },
            "exports": ["api"],
            "policy": {"allow": allow},
            "traffic": {"api": {"timeout_ms": 2500}},
        }})


def make_repo(layout: Layout) -> IntentRepo:
    apps = {f"app{i}": make_app(i, layout) for i in range(layout.apps)}
    return IntentRepo(config=RepoConfig(trust_domain="bench.example"), inventory=make_inventory(layout), apps=apps)


def validate(repo: IntentRepo) -> list[str]:
    """The cross-application checks `reconciler validate` runs (the models are already typed)."""
    docs = []
    for name, app in repo.apps.items():
        data = app.model_dump(mode="json", by_alias=True, exclude={"source"})
        docs.append(AppDoc(Doc(f"apps/{name}.yaml", data, json.dumps(data, indent=1)), app))
    return [str(e) for e in check_semantics(repo.config, repo.inventory, docs)]
