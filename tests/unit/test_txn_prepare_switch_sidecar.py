"""Prepare checks of the switch layer (FRR's own parser, `vtysh --dryrun -f`, over what the real
linux_ovs_frr platform renders) and the sidecar layer (xDS lint + proto encoding), on examples/intents."""
import dataclasses
import shutil

import pytest

from reconciler.compile import compile_repo
from reconciler.drivers.base import Target
from reconciler.drivers.switch.platforms import Command, platform_of, platforms
from reconciler.intents.validate import load_repo
from reconciler.model import Layer, Resource, State
from reconciler.plan import make_plan
from reconciler.txn.prepare import check_frr, check_xds, frr_lines, make_preparer

needs_frr = pytest.mark.skipif(not shutil.which("vtysh"), reason="FRR's vtysh not installed")


def _desired() -> State:
    return State.of(compile_repo(load_repo("examples/intents")))


def _items(desired: State, layer: Layer, edit=None) -> dict:
    """Per target of `layer`: a create-everything plan from an empty observation."""
    plan = make_plan(desired, State.of([]))
    rows = []
    for t in sorted({k.target for k in desired.resources if k.layer is layer}):
        res = tuple(desired.for_target(layer, t))
        changes = plan.for_target(layer, t)
        if edit is not None:
            changes = tuple(edit(c) for c in changes)
            res = tuple(c.desired for c in changes if c.desired is not None)
        rows.append((Target(t, layer, {}), changes, res, (), False))
    assert rows
    return {layer: rows}


@needs_frr
def test_frr_check_accepts_and_refuses_with_vtysh_message():
    good = ["router bgp 65001", "bgp router-id 10.0.0.1", "neighbor eth1 interface remote-as external",
            "address-family ipv4 unicast", "network 10.1.0.0/24", "exit-address-family", "end",
            "ip route 10.2.0.5/32 10.0.0.2 tag 20041", "no ip route 10.2.0.6/32 10.0.0.2 tag 20041"]
    assert check_frr(good) == ""
    why = check_frr(["router bgp 65001", "bgp router-idd 10.0.0.1"])
    assert why.startswith("vtysh --dryrun: ") and "Unknown command" in why and "router-idd" in why


def test_frr_lines_are_the_vtysh_command_lines():
    argv = ("vtysh", "-c", "configure terminal", "-c", "router bgp 1", "-c", "end", "-c", "configure terminal",
            "-c", "ip route 1.2.3.4/32 10.0.0.1 tag 20041")
    assert frr_lines([("ovs-vsctl", "-c", "x"), argv]) == ["router bgp 1", "end", "ip route 1.2.3.4/32 10.0.0.1 tag 20041"]


def _set_spec(kind: str, edit):
    """A change editor: the desired spec of `kind` resources through `edit`."""
    def apply(c):
        if c.key.kind != kind or c.desired is None:
            return c
        r = c.desired
        return c._replace(desired=Resource(r.key, edit(dict(r.spec)), r.app, r.owned))
    return apply


@needs_frr
def test_prepare_passes_the_switch_changes_rendered_for_the_examples():
    items = _items(_desired(), Layer.SWITCH)
    tp = items[Layer.SWITCH][0]
    cmds = platform_of({}).render(tp[1], (), tp[2], {})
    assert frr_lines([c.argv for c in cmds])   # the examples do put FRR lines through the check
    assert make_preparer({Layer.SWITCH: object()})(items) == {}   # the check renders; it never connects


@needs_frr
def test_prepare_refuses_what_frr_rejects_naming_target_and_vtysh_message(monkeypatch):
    """The renderer validates every value, so FRR's parser is the guard against renderer/FRR drift:
    a platform that renders the real commands plus one line FRR 8.4 does not know is refused."""
    real = platform_of({})

    def drifted(changes, observed, desired, vars):
        cmds = real.render(changes, observed, desired, vars)
        return [*cmds, Command(("vtysh", "-c", "configure terminal", "-c", "router bgp 65001",
                                "-c", "bgp bestpath as-path multipath-relaxx"), "")]
    monkeypatch.setitem(platforms(), "frr_drift", dataclasses.replace(real, name="frr_drift", render=drifted))
    items = _items(_desired(), Layer.SWITCH)
    items[Layer.SWITCH] = [(Target(t.name, t.layer, {"netintent_platform": "frr_drift"}), *rest)
                           for t, *rest in items[Layer.SWITCH]]
    out = make_preparer({Layer.SWITCH: object()})(items)
    assert set(out) == {(Layer.SWITCH, t.name) for t, *_ in items[Layer.SWITCH]}
    for why in out.values():
        assert why.startswith("vtysh --dryrun: ") and "Unknown command" in why and "multipath-relaxx" in why


def test_prepare_refuses_a_switch_value_the_renderer_rejects():
    items = _items(_desired(), Layer.SWITCH, edit=_set_spec("bgp", lambda s: {**s, "asn": 4294967296}))
    out = make_preparer({Layer.SWITCH: object()})(items)
    assert out and all(why.startswith("render: asn: AS number out of range") for why in out.values())


def test_prepare_sidecar_lint_passes_the_examples_and_refuses_a_broken_route():
    desired = _desired()
    assert make_preparer({Layer.SIDECAR: object()})(_items(desired, Layer.SIDECAR)) == {}
    # a route whose clusters have no positive weight: grpc ACKs it, then RPCs fail UNAVAILABLE
    zero = _set_spec("route", lambda s: {**s, "clusters": [{**x, "weight": 0} for x in s["clusters"]]})
    out = make_preparer({Layer.SIDECAR: object()})(_items(desired, Layer.SIDECAR, edit=zero))
    assert out and all(layer is Layer.SIDECAR for layer, _ in out)
    assert all(why.startswith("xds lint: route/") and "no cluster with a positive weight" in why
               for why in out.values())


def test_xds_check_refuses_only_for_owned_resources():
    desired = _desired()
    node = sorted({k.target for k in desired.resources if k.layer is Layer.SIDECAR})[0]
    res = tuple(desired.for_target(Layer.SIDECAR, node))
    assert check_xds(res, (), True) == ""
    route = next(r for r in res if r.key.kind == "route")
    broken = Resource(route.key._replace(name="foreign"), {**dict(route.spec), "clusters": []}, "", False)
    assert check_xds(res, (broken,), True) == ""            # served by someone else: not ours to refuse
    why = check_xds((*res, Resource(broken.key, broken.spec, "x", True)), (), True)
    assert why.startswith("xds lint: route/foreign: no cluster")
