"""Containerlab topologies on Linux network namespaces (no container engine needed).

Public API:
    Lab.from_file(path, name_override=None, inventory_dir=None, mgmt_subnet=None)
    lab.up() -> bool (False = already up), lab.down() -> list of problems,
    lab.status() -> list of per-node dicts, lab.state() -> LabState,
    lab.exec(node, argv, check=True) -> CompletedProcess,
    lab.inventory_path, lab.key_path, lab.netns(node), lab.mgmt_ip(node), lab.ads_address.
Modules: topology (pure parsing), layout (pure naming), inventory (pure build + write),
system (command wrappers), node (per-node services), workloads (gRPC agents per node),
adsrelay (the lab's ADS server), teardown (down/status), lab, cli; probe, grpc_checks and
demo_grpc (traffic checks: TCP and gRPC).
"""
from reconciler.lab.lab import Lab, LabError, LabState
from reconciler.lab.system import StepError, missing_tools
from reconciler.lab.topology import Topology, TopologyError, load, parse

__all__ = ["Lab", "LabError", "LabState", "StepError", "Topology", "TopologyError", "load", "parse",
           "missing_tools"]
