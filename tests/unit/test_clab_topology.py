"""Pure tests of the containerlab topology parser, the lab layout and the inventory builder."""
from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest
import yaml

from reconciler.lab import inventory
from reconciler.lab.layout import Layout
from reconciler.lab.topology import TopologyError, load, parse

REPO = Path(__file__).resolve().parents[2]
REFERENCE = REPO / "labs" / "app-fabric.clab.yml"
TOPOS = REPO / "tests" / "lab" / "topologies"


def topo(body: str, **kw):
    return parse(body, "t.clab.yml", **kw)


def test_reference_lab_matches_the_committed_inventory():
    t = load(REFERENCE)
    key = "/var/lib/netintent/lab/app-fabric/id_ed25519"
    known = "/var/lib/netintent/lab/app-fabric/known_hosts"
    built = inventory.build(t, key, known)
    assert built == yaml.safe_load((REPO / "examples/intents/inventory.yml").read_text())
    # render() is what `lab up` writes: same data after a YAML round trip
    assert yaml.safe_load(inventory.render(t, key, known)) == built


def test_reference_lab_shape():
    t = load(REFERENCE)
    assert t.name == "app-fabric"
    assert t.mgmt_subnet == ipaddress.IPv4Network("172.20.20.0/24")
    assert str(t.mgmt_gateway) == "172.20.20.1"
    mg = {n: t.nodes[n].mgmt_ipv4 for n in t.nodes}
    assert mg == {"leaf1": "172.20.20.2", "leaf2": "172.20.20.3", "hv1": "172.20.20.11",
                  "hv2": "172.20.20.12", "hv3": "172.20.20.13",
                  **{f"h{i}": f"172.20.20.{20 + i}" for i in range(1, 7)}}
    L = Layout(t)
    assert [n for n in t.nodes if L.runs_ovs(t.nodes[n])] == ["leaf1", "leaf2", "hv1", "hv2", "hv3"]
    assert [n for n in t.nodes if L.runs_frr(t.nodes[n])] == ["leaf1", "leaf2"]
    assert L.ovs_ports(t.nodes["leaf1"]) == ["eth1", "eth2"]        # not the fabric port eth3
    assert L.ovs_ports(t.nodes["hv1"]) == ["eth1", "eth2", "eth3"]
    assert t.nodes["leaf1"].exec == ("ip addr add 10.255.0.1/32 dev lo",)
    # group binds + node binds, merged by container path
    assert {c for _, c, _ in t.nodes["leaf2"].binds} == {"/etc/frr/daemons", "/etc/frr/frr.conf"}
    assert t.ignored_summary() == (f"{REFERENCE}: container-only fields ignored on 11 node(s): image")
    fabric = [ln for ln in t.links if ln.a.node == "leaf1" and ln.b.node == "leaf2"]
    assert len(fabric) == 1 and fabric[0].mtu == 9000


def test_inheritance_order_defaults_kinds_groups_nodes():
    t = load(TOPOS / "links.clab.yml")
    a = t.nodes["a"]
    assert a.exec[:3] == ("ip link set lo mtu 1000", "ip link set lo mtu 1100",
                          "ip link set lo mtu 1200")
    assert a.exec[-1] == "ip link set lo mtu 1300"
    assert a.kind == "linux" and a.group == "pair"
    assert dict(t.nodes["b"].labels) == {"netintent.role": "host", "extra": "x"}
    assert t.nodes["c"].exec[:2] == ("ip link set lo mtu 1000", "ip link set lo mtu 1100")
    assert t.ignored == {"a": ("cmd", "image", "memory"), "b": ("cmd", "image", "memory"),
                         "c": ("image",), "d": ("image",)}
    assert t.nodes["nilbr1"].kind == "bridge" and t.nodes["niovs1"].kind == "ovs-bridge"
    assert t.nodes["nilbr1"].mgmt_ipv4 is None
    ln = t.links[0]
    assert (ln.a.mac, ln.b.mac, ln.mtu) == ("02:00:00:77:01:01", "02:00:00:77:01:02", 1400)
    assert (str(t.links[1].a), str(t.links[1].b), t.links[1].mtu) == ("a:eth2", "nilbr1:nilp1", None)


def test_kind_scalar_precedence_node_over_group_over_defaults():
    t = topo("""
name: x
topology:
  defaults: {kind: bridge}
  groups: {g: {kind: linux, labels: {a: "1", b: "1"}}}
  kinds: {linux: {labels: {a: "0", k: "k"}}}
  nodes:
    n1: {group: g, labels: {b: "2"}}
    n2: {}
""")
    assert t.nodes["n1"].kind == "linux" and t.nodes["n2"].kind == "bridge"
    assert dict(t.nodes["n1"].labels) == {"a": "1", "k": "k", "b": "2"}


def test_mgmt_addresses_auto_assigned_lowest_free_first():
    t = topo("""
name: x
mgmt: {ipv4-subnet: 10.9.0.0/29}
topology:
  nodes:
    a: {kind: linux}
    b: {kind: linux, mgmt-ipv4: 10.9.0.2}
    c: {kind: linux}
""")
    assert [t.nodes[n].mgmt_ipv4 for n in "abc"] == ["10.9.0.3", "10.9.0.2", "10.9.0.4"]
    assert str(t.mgmt_gateway) == "10.9.0.1"


def test_mgmt_subnet_override_keeps_offsets():
    t = load(REFERENCE, "ni-lab-copy", "172.29.9.0/24")
    assert t.name == "ni-lab-copy"
    assert t.nodes["h1"].mgmt_ipv4 == "172.29.9.21" and str(t.mgmt_gateway) == "172.29.9.1"


@pytest.mark.parametrize("body,needle", [
    ("name: x\ntopology:\n  nodes:\n    srl1:\n      kind: nokia_srlinux\n",
     "t.clab.yml:4: node srl1: kind 'nokia_srlinux' is not supported"),
    ("name: x\ntopology:\n  nodes:\n    a: {kind: linux}\n  links:\n    - endpoints: [\"a:eth1\", \"z:eth1\"]\n",
     "t.clab.yml:6: link endpoint z:eth1: node 'z' is not defined"),
    ("name: x\ntopology:\n  nodes:\n    a: {kind: linux}\n    b: {kind: linux}\n  links:\n"
     "    - endpoints: [\"a:eth1\", \"b:eth1\"]\n    - endpoints: [\"a:eth1\", \"b:eth2\"]\n",
     "interface a:eth1 is used by more than one link"),
    ("name: x\ntopology:\n  nodes:\n    a: {kind: linux}\n    b: {kind: linux}\n  links:\n"
     "    - endpoints: [\"a:eth1\", \"b:eth1\"]\n      mtu: 10\n", "link mtu 10"),
    ("name: x\ntopology:\n  nodes:\n    a: {kind: linux}\n    b: {kind: linux}\n  links:\n"
     "    - endpoints: [\"a:averyveryverylongname\", \"b:eth1\"]\n", "invalid interface name"),
    ("name: x\ntopology:\n  nodes:\n    a: {kind: linux}\n    b: {kind: linux}\n  links:\n"
     "    - endpoints: [\"a:e;rm -rf\", \"b:eth1\"]\n", "invalid interface name"),
    ("name: x\ntopology:\n  nodes:\n    a: {kind: linux, mgmt-ipv4: 10.0.0.1}\n",
     "t.clab.yml:4: node a: mgmt-ipv4 10.0.0.1 is not a host of 172.20.20.0/24"),
    ("name: x\ntopology:\n  nodes:\n    a: {kind: linux, mgmt-ipv4: 172.20.20.1}\n",
     "already used by the gateway"),
    ("name: x\ntopology:\n  nodes:\n    a: {kind: linux, bogus: 1}\n", "unknown field 'bogus'"),
    ("name: x\ntopology:\n  nodes:\n    a: {group: nope}\n", "group 'nope' is not defined"),
    ("name: x\ntopology:\n  nodes:\n    a: {}\n", "node a: no kind"),
    ("name: 'bad name'\ntopology:\n  nodes:\n    a: {kind: linux}\n", "lab name 'bad name'"),
    ("name: x\ntopology:\n  nodes:\n    a: {kind: linux\n", "t.clab.yml:5: YAML error"),
    ("name: x\ntopology:\n  nodes:\n    a: {kind: linux, binds: [nocolon]}\n", "HOST:CONTAINER"),
    ("name: x\ntopology:\n  nodes:\n    a: {kind: linux, env: {A: \"x\\\\nPermitRootLogin yes\"}}\n",
     "t.clab.yml:4: node a: env 'A' must be NAME=value"),
])
def test_bad_topologies_name_file_line_and_problem(body, needle):
    with pytest.raises(TopologyError) as ei:
        topo(body)
    assert needle in str(ei.value)


def test_unsupported_kind_refused_even_after_good_nodes():
    body = "name: x\ntopology:\n  nodes:\n    a: {kind: linux}\n    ceos1: {kind: ceos}\n"
    with pytest.raises(TopologyError, match=r"node ceos1: kind 'ceos'"):
        topo(body)


def test_layout_names_fit_linux_limits():
    t = load(REFERENCE, "a" * 24)
    L = Layout(t)
    for n in t.nodes:
        assert len(L.mgmt_host_veth(n)) <= 15
    assert len(L.mgmt_bridge) <= 15
    assert L.netns("h1") == "a" * 24 + "-h1"
    assert L.key_path == Path("/var/lib/netintent/lab/" + "a" * 24 + "/id_ed25519")
    # two labs never share a management bridge name
    assert Layout(load(REFERENCE)).mgmt_bridge != L.mgmt_bridge


def test_frr_fixture_written_for_containerlab_parses():
    t = load(TOPOS / "frr-ospf.clab.yml")
    L = Layout(t)
    assert all(L.runs_frr(n) for n in t.nodes.values())
    assert not any(L.runs_ovs(n) for n in t.nodes.values())
    assert t.nodes["r2"].exec[1] == "ip addr add 10.0.23.1/30 dev eth2"


def test_inventory_errors_name_the_node():
    t = topo("name: x\ntopology:\n  nodes:\n    s: {kind: linux, labels: {netintent.role: switch}}\n")
    with pytest.raises(inventory.InventoryError, match="node s: label netintent.vtep is required"):
        inventory.build(t, "/k")
    t = topo("name: x\ntopology:\n  nodes:\n    h: {kind: linux, labels: {netintent.role: host}}\n")
    with pytest.raises(inventory.InventoryError, match="node h: no link on interface eth1"):
        inventory.build(t, "/k")


def test_cli_bad_topology_is_one_line_error_no_traceback(tmp_path, capsys):
    from reconciler.lab.cli import main
    p = tmp_path / "bad.clab.yml"
    p.write_text("name: x\ntopology:\n  nodes:\n    ceos1: {kind: ceos}\n")
    assert main(["up", str(p)]) == 1
    err = capsys.readouterr().err
    assert err.strip() == f"error: {p}:4: node ceos1: kind 'ceos' is not supported by the " \
                          "netns lab (supported: linux, bridge, ovs-bridge)"
    assert main(["status", str(tmp_path / "missing.clab.yml")]) == 1
    assert "cannot read" in capsys.readouterr().err


# --- property: whatever valid topology we write, the parser reads back the same graph ---------
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st


@st.composite
def topologies(draw):
    n = draw(st.integers(min_value=2, max_value=8))
    names = [f"n{i}" for i in range(n)]
    used: dict[str, int] = {nm: 0 for nm in names}
    links = []
    for _ in range(draw(st.integers(min_value=0, max_value=10))):
        a, b = draw(st.sampled_from(names)), draw(st.sampled_from(names))
        used[a] += 1
        ia = f"eth{used[a]}"
        used[b] += 1
        ib = f"eth{used[b]}"
        mtu = draw(st.one_of(st.none(), st.integers(min_value=576, max_value=9500)))
        extended = draw(st.booleans())
        links.append((a, ia, b, ib, mtu, extended))
    fixed = draw(st.lists(st.sampled_from(names), unique=True, max_size=n))
    return names, links, fixed


@settings(max_examples=60, deadline=None)
@given(topologies())
def test_parser_reads_back_any_valid_graph(t):
    names, links, fixed = t
    nodes = {}
    for i, nm in enumerate(names):
        nodes[nm] = {"kind": "linux"}
        if nm in fixed:
            nodes[nm]["mgmt-ipv4"] = f"10.5.0.{100 + i}"
    ylinks = []
    for a, ia, b, ib, mtu, ext in links:
        if ext:
            ln = {"type": "veth", "endpoints": [{"node": a, "interface": ia},
                                                {"node": b, "interface": ib}]}
        else:
            ln = {"endpoints": [f"{a}:{ia}", f"{b}:{ib}"]}
        if mtu:
            ln["mtu"] = mtu
        ylinks.append(ln)
    doc = {"name": "p", "mgmt": {"ipv4-subnet": "10.5.0.0/24"},
           "topology": {"nodes": nodes, "links": ylinks}}
    topo = parse(yaml.safe_dump(doc), "p.clab.yml")
    got = [(ln.a.node, ln.a.iface, ln.b.node, ln.b.iface, ln.mtu) for ln in topo.links]
    assert got == [(a, ia, b, ib, mtu) for a, ia, b, ib, mtu, _ in links]
    addrs = [topo.nodes[nm].mgmt_ipv4 for nm in names]
    assert len(set(addrs)) == len(addrs) and "10.5.0.1" not in addrs
    for i, nm in enumerate(names):
        if nm in fixed:
            assert topo.nodes[nm].mgmt_ipv4 == f"10.5.0.{100 + i}"
