"""Intents repos for the IPAM tests: the corpus base plus hosts of their own and IPAM pools.

`ipam_files(apps)` is a tree `{path: bytes}`: the base's reconciler.yaml (with `ipam` pools),
an inventory with hosts `n0..n15` (each on its own hypervisor port) and one file per app, from
plain dicts. `app_doc(name, subnet, instances, ...)` builds such a dict.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import yaml

BASE = Path(__file__).resolve().parent.parent / "corpus" / "base"
CONFIG = ("apiVersion: netintent/v1\nkind: ReconcilerConfig\ntrust_domain: lab.example\n"
          "ipam:\n  vni: {start: 7000, end: 7099}\n  vlan: {start: 300, end: 399}\n")


def inventory(hosts: int = 16) -> str:
    lines = ["all:", "  vars: {ansible_user: root}", "  children:", "    switches:", "      hosts:",
             "        leaf1: {netintent_vtep: 10.255.0.1, netintent_asn: 65001}", "    hypervisors:", "      hosts:",
             "        hv1: {netintent_leaf: leaf1, netintent_leaf_port: eth1}", "    hosts:", "      hosts:"]
    lines += [f"        n{i}: {{netintent_hypervisor: hv1, netintent_hypervisor_port: p{i}}}" for i in range(hosts)]
    return "\n".join(lines) + "\n"


def app_doc(name: str, subnet: str, services: Mapping[str, list[dict[str, Any]]], **segment: Any) -> dict:
    return {"apiVersion": "netintent/v1", "kind": "Application", "metadata": {"name": name},
            "spec": {"segment": {"subnet": subnet, **segment},
                     "services": {s: {"instances": insts, "ports": [{"name": "http", "port": 80}]}
                                  for s, insts in services.items()}}}


def ipam_files(apps: Mapping[str, dict], config: str = CONFIG, hosts: int = 16) -> dict[str, bytes]:
    files = {"reconciler.yaml": config.encode(), "inventory.yml": inventory(hosts).encode()}
    for fname, doc in apps.items():
        files[f"apps/{fname}"] = yaml.safe_dump(doc, sort_keys=False).encode()
    return files


def write_tree(files: Mapping[str, bytes], dest: Path) -> Path:
    for rel, data in files.items():
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        (dest / rel).write_bytes(data)
    return dest
