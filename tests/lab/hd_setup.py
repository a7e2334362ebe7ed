"""Mini topology and intents used by the host/hypervisor driver tests and benches.

Contract: `MINI` is a MiniLab spec: h1, h2, h3 under hv1, h4 under hv2, hv1/hv2 uplinks into a
plain OVS `leaf1` (fixture wiring only: ports untagged = trunks; the switch layer is not under
test here). `write_repo(dir, apps)` writes an intents repo (reconciler.yaml + apps/*.yaml);
`MINI_APPS` are two applications on it: `shop` (web on h1 -> api on h2 and h4, port 8080) and
`billing` (invoicer and ledger on h3, port 5432: its own VLAN on the same hypervisor; invoicer
may call shop's exported api, which gives both apps' hosts a route to the other's subnet). `desired_for(repo_dir, inventory, layer, targets)` loads, validates and compiles them.
"""
from __future__ import annotations

from pathlib import Path

import yaml

from reconciler.compile import compile_repo
from reconciler.drivers.base import Target, TargetPlan
from reconciler.intents.validate import load_repo
from reconciler.model import Layer, State
from reconciler.plan import make_plan

MINI = {
    "nodes": {"h1": "host", "h2": "host", "h3": "host", "h4": "host",
              "hv1": "hypervisor", "hv2": "hypervisor", "leaf1": "leaf"},
    "links": [("hv1:eth1", "leaf1:eth1"), ("hv2:eth1", "leaf1:eth2"),
              ("h1:eth1", "hv1:eth2"), ("h2:eth1", "hv1:eth3"), ("h3:eth1", "hv1:eth4"),
              ("h4:eth1", "hv2:eth2")],
    "vars": {
        "h1": {"netintent_interface": "eth1", "netintent_hypervisor": "hv1", "netintent_hypervisor_port": "eth2"},
        "h2": {"netintent_interface": "eth1", "netintent_hypervisor": "hv1", "netintent_hypervisor_port": "eth3"},
        "h3": {"netintent_interface": "eth1", "netintent_hypervisor": "hv1", "netintent_hypervisor_port": "eth4"},
        "h4": {"netintent_interface": "eth1", "netintent_hypervisor": "hv2", "netintent_hypervisor_port": "eth2"},
        "hv1": {"netintent_bridge": "br0", "netintent_uplink": "eth1", "netintent_leaf": "leaf1",
                "netintent_leaf_port": "eth1"},
        "hv2": {"netintent_bridge": "br0", "netintent_uplink": "eth1", "netintent_leaf": "leaf1",
                "netintent_leaf_port": "eth2"},
        "leaf1": {"netintent_bridge": "br0", "netintent_vtep": "10.255.9.1", "netintent_asn": 65009},
    },
}

MINI_APPS = {
    "shop": {"segment": {"vni": 6001, "vlan": 601, "subnet": "10.61.1.0/24"},
             "services": {"web": {"instances": [{"host": "h1", "address": "10.61.1.11"}],
                                  "ports": [{"name": "http", "port": 80}]},
                          "api": {"instances": [{"host": "h2", "address": "10.61.1.21"},
                                                {"host": "h4", "address": "10.61.1.22"}],
                                  "ports": [{"name": "grpc", "port": 8080}]}},
             "exports": ["api"],
             "policy": {"allow": [{"from": "web", "to": "api", "ports": ["grpc"]}]}},
    "billing": {"segment": {"vni": 6002, "vlan": 602, "subnet": "10.61.2.0/24"},
                "services": {"invoicer": {"instances": [{"host": "h3", "address": "10.61.2.11"}],
                                          "ports": [{"name": "http", "port": 8000}]},
                             "ledger": {"instances": [{"host": "h3", "address": "10.61.2.12"}],
                                        "ports": [{"name": "pg", "port": 5432}]}},
                "policy": {"allow": [{"from": "invoicer", "to": "ledger", "ports": ["pg"]},
                                     {"from": "invoicer", "to": "shop/api", "ports": ["grpc"]}]}},
}


def write_repo(d: Path, apps: dict, inventory: Path) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    (d / "apps").mkdir(exist_ok=True)
    for f in (d / "apps").glob("*.yaml"):
        f.unlink()
    (d / "reconciler.yaml").write_text(yaml.safe_dump({
        "apiVersion": "netintent/v1", "kind": "ReconcilerConfig", "trust_domain": "lab.example",
        "sync": {"interval_s": 30, "prune": False}}))
    for name, spec in apps.items():
        (d / "apps" / f"{name}.yaml").write_text(yaml.safe_dump({
            "apiVersion": "netintent/v1", "kind": "Application", "metadata": {"name": name}, "spec": spec}))
    return d


def desired_for(repo_dir: Path, inventory: Path, layer: Layer) -> State:
    repo = load_repo(str(repo_dir), inventory_override=str(inventory))
    d = compile_repo(repo)
    return State.of(r for r in d if r.key.layer == layer)


def plans_for(desired: State, observed: dict, layer: Layer, targets: list[str], prune: bool = False,
              inventory_vars: dict | None = None) -> list[TargetPlan]:
    """TargetPlans as the engine builds them: the plan's changes per target (deletes only when
    pruning), the target's full desired and observed state."""
    obs = State.of(r for o in observed.values() for r in o.resources)
    plan = make_plan(desired, obs, prune=prune)
    out = []
    for t in targets:
        changes = tuple(c for c in plan.changes if c.key.target == t and c.key.layer == layer)
        out.append(TargetPlan(Target(t, layer, (inventory_vars or {}).get(t, {})), changes,
                              tuple(desired.for_target(layer, t)), tuple(obs.for_target(layer, t)), prune))
    return out


def owned(resources) -> dict:
    return {r.key: r for r in resources if r.owned}
