"""Fan-out bench: one 20-line change on N lab switches, netmiko switch driver vs Ansible.

Contract: brings up a generated containerlab topology (`reconciler.lab`, netns nodes) of N
switches (sshd + own Open vSwitch, no FRR; unique lab name `ni-swb-<hex>`), then applies the
same change to every switch twice over:
  netmiko  SwitchDriver.apply (max_parallel bound, default 16): per switch one SSH session that
           observes, sends the change as one script, and observes again to verify
  ansible  ansible-runner, one playbook of 20 `command` tasks (the same argv lines, rendered by
           the same platform renderer), Ansible defaults (forks=5, no pipelining), no facts
The change is `--vxlans` (default 4) VXLAN segments per switch, 5 lines each (ip link add,
ip link set, ethtool, ovs-vsctl add-port, bridge fdb append) = 20 lines. Between runs the
change is removed outside the timed region, and each run is checked (every switch has the
devices afterwards). Prints the figures and the ratio; always takes the lab down.
Usage: sudo python bench/switch_fanout.py [--switches 50] [--vxlans 4] [--forks 5] [--repeat 1]
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from reconciler.drivers.base import Target, TargetPlan  # noqa: E402
from reconciler.drivers.switch.driver import SwitchDriver  # noqa: E402
from reconciler.drivers.switch.platforms import platform_of  # noqa: E402
from reconciler.lab import Lab  # noqa: E402
from reconciler.model import Layer, Resource, ResourceKey, State  # noqa: E402
from reconciler.plan import make_plan  # noqa: E402


def topology(name: str, n: int, subnet_octet: int) -> dict:
    nodes = {}
    for i in range(1, n + 1):
        nodes[f"s{i:02d}"] = {"labels": {"netintent.role": "switch",
                                         "netintent.vtep": f"10.254.{i // 250}.{i % 250 + 1}",
                                         "netintent.asn": str(65100 + i)}}
    return {"name": name, "mgmt": {"network": f"{name}-mgmt", "ipv4-subnet": f"172.29.{subnet_octet}.0/24"},
            "topology": {"defaults": {"kind": "linux"}, "nodes": nodes}}


def desired_for(target: Target, vxlans: int) -> list[Resource]:
    local = str(target.vars["netintent_vtep"])
    out = []
    for j in range(vxlans):
        vni, vlan = 7001 + j, 701 + j
        out.append(Resource(ResourceKey(Layer.SWITCH, target.name, "vxlan", f"vxlan{vni}"),
                            {"bridge": "br0", "vni": vni, "vlan": vlan, "local": local, "dstport": 4789,
                             "flood": ["10.254.9.9"]}, "bench"))
    return out


def plans(targets: list[Target], vxlans: int, observed: dict, remove: bool = False) -> list[TargetPlan]:
    out = []
    for t in targets:
        want = [] if remove else desired_for(t, vxlans)
        obs = [r for r in observed[t.name].resources if r.key.kind == "vxlan"]
        plan = make_plan(State.of(want), State.of(obs), prune=True)
        out.append(TargetPlan(t, plan.changes, tuple(want), tuple(obs), True))
    return out


PLAYBOOK = """- hosts: switches
  gather_facts: false
  tasks:
{tasks}
"""
TASK = """    - name: line {i}
      ansible.builtin.command:
        argv: "{{{{ ni_cmds[{i}] }}}}"
"""


def run_ansible(lab: Lab, targets: list[Target], vxlans: int, forks: int, workdir: Path) -> float:
    import ansible_runner
    rdr = platform_of({})
    hosts = {}
    n_lines = 0
    for t in targets:
        want = desired_for(t, vxlans)
        cmds = rdr.render(make_plan(State.of(want), State.of([])).changes, [], want, t.vars)
        n_lines = len(cmds)
        hosts[t.name] = {"ansible_host": t.vars["ansible_host"], "ni_cmds": [list(c.argv) for c in cmds]}
    inv = {"all": {"vars": {"ansible_user": "root", "ansible_ssh_private_key_file": str(lab.key_path),
                            "ansible_python_interpreter": "/usr/bin/python3"},
                   "children": {"switches": {"hosts": hosts}}}}
    pdd = workdir / "runner"
    shutil.rmtree(pdd, ignore_errors=True)
    (pdd / "project").mkdir(parents=True)
    (pdd / "inventory").mkdir()
    (pdd / "inventory" / "hosts.yml").write_text(yaml.safe_dump(inv))
    (pdd / "project" / "change.yml").write_text(
        PLAYBOOK.format(tasks="".join(TASK.format(i=i) for i in range(n_lines))))
    # Lab nodes have fresh host keys; OVS_RUNDIR comes from each node's sshd SetEnv.
    env = {"ANSIBLE_HOST_KEY_CHECKING": "False", "ANSIBLE_RETRY_FILES_ENABLED": "False"}
    t0 = time.monotonic()
    r = ansible_runner.run(private_data_dir=str(pdd), playbook="change.yml", forks=forks, quiet=True, envvars=env)
    dt = time.monotonic() - t0
    failed = {h for h, c in (r.stats or {}).get("failures", {}).items() if c} | \
             {h for h, c in (r.stats or {}).get("dark", {}).items() if c}
    if r.rc != 0 or failed:
        tail = "".join(open(r.stdout.name).readlines()[-15:]) if r.stdout else ""
        raise SystemExit(f"ansible run failed rc={r.rc} status={r.status} hosts={sorted(failed)[:5]}\n{tail}")
    return dt


def check_applied(drv: SwitchDriver, targets: list[Target], vxlans: int) -> dict:
    obs = drv.observe(targets)
    bad = [n for n, o in obs.items() if not o.ok or
           make_plan(State.of(desired_for(next(t for t in targets if t.name == n), vxlans)),
                     State.of(r for r in o.resources if r.key.kind == "vxlan"), prune=True).changes]
    if bad:
        raise SystemExit(f"change not in place on {len(bad)} switch(es): {bad[:5]}")
    return obs


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--switches", type=int, default=50)
    ap.add_argument("--vxlans", type=int, default=4, help="5 lines each (default 4 = 20 lines)")
    ap.add_argument("--forks", type=int, default=5, help="Ansible forks (Ansible's default: 5)")
    ap.add_argument("--parallel", type=int, default=16, help="switch driver bound")
    ap.add_argument("--repeat", type=int, default=1)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ni-swb-"))
    name = f"ni-swb-{random.randrange(16**4):04x}"
    topo = work / f"{name}.clab.yml"
    topo.write_text(yaml.safe_dump(topology(name, args.switches, random.randrange(100, 200))))
    lab = Lab.from_file(topo, inventory_dir=work, log=lambda m: None)
    try:
        t0 = time.monotonic()
        lab.up()
        print(f"lab: {args.switches} switches (sshd + OVS) up in {time.monotonic() - t0:.1f}s", flush=True)
        inv = yaml.safe_load(Path(lab.inventory_path).read_text())
        allv = inv["all"]["vars"]
        hosts = inv["all"]["children"]["switches"]["hosts"]
        # No FRR on these nodes: without netintent_asn the driver does not observe FRR.
        targets = [Target(n, Layer.SWITCH, {k: v for k, v in {**allv, **hv}.items() if k != "netintent_asn"})
                   for n, hv in sorted(hosts.items())]
        drv = SwitchDriver(timeout_s=20, max_parallel=args.parallel)
        lines = None
        res_n, res_a = [], []
        for rep in range(args.repeat):
            obs = drv.observe(targets)
            assert all(o.ok for o in obs.values()), {n: o.error for n, o in obs.items() if not o.ok}
            t0 = time.monotonic()
            out = drv.apply(plans(targets, args.vxlans, obs))
            dt_n = time.monotonic() - t0
            bad = {n: r.error for n, r in out.items() if r.outcome.value != "applied"}
            if bad:
                raise SystemExit(f"switch driver failed on {len(bad)}: {list(bad.items())[:3]}")
            lines = {r.writes for r in out.values()}
            print(f"run {rep + 1}: netmiko driver {dt_n:.2f}s ({len(out)} switches applied)", flush=True)
            obs = check_applied(drv, targets, args.vxlans)
            drv.apply(plans(targets, args.vxlans, obs, remove=True))     # reset (not timed)
            dt_a = run_ansible(lab, targets, args.vxlans, args.forks, work)
            obs = check_applied(drv, targets, args.vxlans)
            drv.apply(plans(targets, args.vxlans, obs, remove=True))
            res_n.append(dt_n)
            res_a.append(dt_a)
            print(f"run {rep + 1}: ansible {dt_a:.2f}s", flush=True)
        n, a = min(res_n), min(res_a)
        print(json.dumps({"switches": args.switches, "lines_per_switch": sorted(lines or []),
                          "netmiko_driver_s": round(n, 2), "netmiko_parallel": args.parallel,
                          "netmiko_includes": "observe before + one session + verify observe per switch",
                          "ansible_s": round(a, 2), "ansible_forks": args.forks,
                          "ratio": round(a / n, 1), "load_avg_1m": round(os.getloadavg()[0], 1),
                          "cpus": os.cpu_count()}, indent=1))
    finally:
        problems = lab.down()
        shutil.rmtree(work, ignore_errors=True)
        if problems:
            print(f"lab down problems: {problems}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
