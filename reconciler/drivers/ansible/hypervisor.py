"""Hypervisor driver: each hypervisor's own Open vSwitch (userspace datapath), via ansible-runner.

Contract (the hypervisor layer in registry.FACTORIES; see base.py for the batched Protocol):
- observe: one `observe.yml` run for all targets (one `raw` command each): `ovs-vsctl --format=json` (Port:
  tag, trunks, external_ids; the bridge's ports and external_ids) and `ovs-ofctl --no-stats
  dump-flows` filtered by the 0x4E49 cookie prefix, parsed by ovs.py into compile's shapes
  (ovs-port, trunk-vlan, ovs-flow). The bridge is the target's `netintent_bridge` (default br0).
- apply: one `apply_hypervisor.yml` run for the targets with writes (one module call each,
  playbooks/library/netintent_steps.py): one `ovs-vsctl`
  transaction (tags, trunks as the union, ownership marks in external_ids) and one
  `ovs-ofctl --bundle add-flows` with only the flow difference (atomic). Owned state no longer
  desired is removed only when the plan says `prune`; unowned ports, VLANs and flows are never
  touched. A target with nothing to change is not contacted. The same call observes again:
  APPLIED only when every resource in scope matches (else FAILED with `failed_keys`).
"""
from __future__ import annotations

from typing import Any

from reconciler.drivers.ansible.driver import SEPARATOR, AnsibleDriver, Rendered, plan_scope
from reconciler.drivers.ansible.ovs import parse_ovs, render_ovs
from reconciler.model import Layer, Resource


def parse_hypervisor(target: str, stdout: str) -> list[Resource]:
    parts = stdout.split(SEPARATOR)
    if len(parts) != 2:
        raise ValueError("observe output has not 2 sections")
    return parse_ovs(parts[0], parts[1], target)


class HypervisorDriver(AnsibleDriver):
    layer = Layer.HYPERVISOR
    apply_files = ("flows.txt",)
    apply_playbook = "apply_hypervisor.yml"

    def parse(self, target: str, stdout: str) -> list[Resource]:
        return parse_hypervisor(target, stdout)

    def render(self, plan: Any) -> Rendered:
        scope = plan_scope(plan)
        desired, observed = list(plan.desired), list(plan.observed)
        if scope is not None:
            # trunks are set per port as a whole: keep every VLAN of a port in scope visible
            trunk_ports = {k.name.split(":")[0] for k in scope if k.kind == "trunk-vlan"}

            def keep(r: Resource) -> bool:
                if r.key.kind == "trunk-vlan":
                    return r.spec["port"] in trunk_ports
                return r.key in scope
            desired = [r for r in desired if keep(r)]
            observed = [r for r in observed if keep(r)]
        bridge = str(plan.target.vars.get("netintent_bridge", "br0"))
        ovs = render_ovs(desired, observed, plan.prune, bridge, scope)
        out = Rendered(details=ovs.details, writes=ovs.writes)
        if ovs.vsctl:
            out.hostvars["vsctl"] = ovs.vsctl
        if ovs.flows:
            out.files["flows.txt"] = "\n".join(ovs.flows) + "\n"
            out.hostvars["flows"] = True
        return out


def make_hypervisor_driver(**settings: Any) -> HypervisorDriver:
    return HypervisorDriver(**settings)
