"""Bench: Open vSwitch flow counts on one netns hypervisor (the hypervisor driver's flow step).

What it measures (median of `--repeat`), on a one-hypervisor mini lab it creates and removes:
  add 10k flows       : `ovs-ofctl --bundle add-flows br0 -` of the driver's rendered file
                        (10k owned anti-spoofing flows, one bundle = one atomic transaction)
  observe 10k         : `ovs-ofctl --no-stats dump-flows` (cookie filtered) + parse
  1% change on 10k    : the driver's difference (100 delete_strict + 100 add) in one bundle
  render / plan       : pure Python rendering of the full file / planning the 1% change
Targets (issue 5): 10k flows <= 1 s, a 1% change on 10k flows <= 0.5 s.
Run as root: `python bench/ovs_flows.py [--flows 10000] [--repeat 3]`.
"""
from __future__ import annotations

import argparse
import ipaddress
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "lab"))

from minilab import MiniLab  # noqa: E402

from reconciler.drivers.ansible.ovs import parse_ovs, render_ovs  # noqa: E402
from reconciler.model import Layer, Resource, ResourceKey  # noqa: E402
from reconciler.names import app_cookie  # noqa: E402


def flows(n: int, shift: int = 0) -> list[Resource]:
    base = int(ipaddress.IPv4Address("10.128.0.0"))
    out = []
    for i in range(shift, n + shift):
        match = f"ip,in_port=eth2,nw_src={ipaddress.IPv4Address(base + i)}"
        out.append(Resource(ResourceKey(Layer.HYPERVISOR, "hv1", "ovs-flow", f"priority=200,{match}"),
                            {"table": 0, "priority": 200, "match": match, "actions": "NORMAL",
                             "cookie": app_cookie("bench")}, "bench"))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--flows", type=int, default=10_000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    n = args.flows
    lab = MiniLab("ni-hd-").up({"nodes": {"h1": "host", "hv1": "hypervisor"}, "links": [("h1:eth1", "hv1:eth2")]})
    hv = lab.nodes["hv1"]
    rows = []
    med = statistics.median
    try:
        def bundle(text: str) -> float:
            t0 = time.perf_counter()
            hv.run("ovs-ofctl", "--bundle", "add-flows", "br0", "-", input=text, timeout=120)
            return time.perf_counter() - t0

        def observe() -> tuple[float, list[Resource]]:
            t0 = time.perf_counter()
            vs = hv.run("ovs-vsctl", "--format=json", "--columns=_uuid,name,tag,trunks,external_ids", "list", "Port",
                        "--", "--columns=name,ports,external_ids", "list", "Bridge", "br0").stdout
            fl = hv.run("ovs-ofctl", "--names", "--no-stats", "dump-flows", "br0",
                        "cookie=0x4e49000000000000/0xffff000000000000", timeout=120).stdout
            res = parse_ovs(vs, fl, "hv1")
            return time.perf_counter() - t0, res

        def clear() -> None:
            hv.run("ovs-ofctl", "del-flows", "br0", "cookie=0x4e49000000000000/0xffff000000000000")

        want = flows(n)
        t0 = time.perf_counter()
        full = render_ovs(want, [], False, "br0")
        render_s = time.perf_counter() - t0
        text = "\n".join(full.flows) + "\n"
        hv.run("ovs-vsctl", *full.vsctl)   # the cookie -> app mark the driver sets with the flows
        adds = []
        for _ in range(args.repeat):
            clear()
            adds.append(bundle(text))
        rows.append((f"add {n // 1000}k flows (one bundle)", med(adds), "target <= 1 s"))
        rows.append((f"render {n // 1000}k flows (python)", render_s, ""))
        obs_t, observed = observe()
        flows_seen = [r for r in observed if r.key.kind == "ovs-flow"]
        assert len(flows_seen) == n, len(flows_seen)
        rows.append((f"observe {n // 1000}k (dump-flows + parse)", obs_t, ""))
        changed = flows(n, shift=n // 100)
        t0 = time.perf_counter()
        diff = render_ovs(changed, observed, True, "br0")
        plan_s = time.perf_counter() - t0
        assert len(diff.flows) == 2 * (n // 100), len(diff.flows)
        dtext = "\n".join(diff.flows) + "\n"
        incs = []
        for _ in range(args.repeat):
            clear()
            bundle(text)
            incs.append(bundle(dtext))
        rows.append((f"1% change on {n // 1000}k (delete_strict + add)", med(incs), "target <= 0.5 s"))
        rows.append(("plan 1% change (python)", plan_s, f"{len(diff.flows)} flow lines"))
        _, after = observe()
        got = {r.key: r.spec for r in after if r.key.kind == "ovs-flow"}
        assert got == {r.key: r.spec for r in changed}, "1% change did not converge"
    finally:
        lab.down()
    print(f"{'OVS step':48s} {'seconds':>8s}")
    for name, secs, note in rows:
        print(f"{name:48s} {secs:8.3f}  {note}")


if __name__ == "__main__":
    main()
