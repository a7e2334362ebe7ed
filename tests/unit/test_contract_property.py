"""Property: what `validate` accepts, the devices accept (one contract from schema to device).

Hypothesis generates intents repos from the values the schema lets through (app, service and
port names with `-` and up to 31 characters, interface names up to 15 characters in the
inventory and in the apps, VNIs, VLANs, subnets and addresses, also next to the inventory's
management and VTEP addresses) on a fixed inventory. For every repo `check_tree` accepts,
the compiled desired state must
- render in every driver without an error (no root needed): the host driver's `ip -batch`
  lines and nft script (set/table names within nft's documented identifier grammar), the
  hypervisor's ovs-vsctl argv and flow file, each leaf's command list;
- (`lab`) pass the real tools, each node in a netns of its own: `nft -c -f` on the host
  ruleset and `ip -force -batch` on veths named as the intents say; the ovs-vsctl transaction
  and `ovs-ofctl --bundle add-flows` against the hypervisors' own Open vSwitch; the leaf
  commands (ip, bridge, ovs-vsctl, ovs-ofctl, ethtool, sysctl) against each leaf's own Open
  vSwitch, and their FRR lines through `vtysh --dryrun -f` (FRR 8.4).
Repos that validate refuses are the corpus's business (tests/corpus/bad); the share accepted is
asserted so that the property cannot pass vacuously. Bounded: 40 examples each, no shrinking
past the first failure's report, < 60 s with the lab.
"""
from __future__ import annotations

import ipaddress
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st

from reconciler.compile import compile_repo
from reconciler.drivers.ansible.host import render_ip
from reconciler.drivers.ansible.nftables import plan_script
from reconciler.drivers.ansible.ovs import render_ovs
from reconciler.drivers.switch.platforms.linux_ovs_frr.render import PLATFORM
from reconciler.intents.models import IntentRepo
from reconciler.intents.validate import check_tree
from reconciler.model import Layer, ObservedState, Resource, State
from reconciler.plan import make_plan

# ------------------------------------------------------------------------ the fixed inventory
HOSTS = [f"h{i}" for i in range(1, 7)]            # h1-h3 under hv1 (leaf1), h4-h6 under hv2 (leaf2)
APP_HOSTS = [("h1", "h4"), ("h2", "h5"), ("h3", "h6")]   # app k's hosts: no two apps share one
MGMT = "192.0.2"                                  # ansible_host addresses (TEST-NET-1)
VTEP = "10.255.0"


def inventory(host_ifaces: dict[str, str]) -> dict:
    hosts = {h: {"ansible_host": f"{MGMT}.{20 + i}", "netintent_interface": host_ifaces[h],
                 "netintent_hypervisor": "hv1" if i <= 3 else "hv2", "netintent_hypervisor_port": f"hp{i}"}
             for i, h in ((int(h[1:]), h) for h in HOSTS)}
    return {"all": {"children": {
        "switches": {"hosts": {
            f"leaf{k}": {"ansible_host": f"{MGMT}.{k}", "netintent_vtep": f"{VTEP}.{k}", "netintent_asn": 65000 + k,
                         "netintent_bridge": f"brl{k}", "netintent_fabric_ports": [f"fab{k}"]} for k in (1, 2)}},
        "hypervisors": {"hosts": {
            f"hv{k}": {"ansible_host": f"{MGMT}.{10 + k}", "netintent_bridge": f"brh{k}", "netintent_uplink": f"up{k}",
                       "netintent_leaf": f"leaf{k}", "netintent_leaf_port": f"lp{k}"} for k in (1, 2)}},
        "hosts": {"hosts": hosts}}}}


# ------------------------------------------------------------------------ what the schema accepts
NAME = st.one_of(st.from_regex(r"\A[a-z][a-z0-9-]{0,30}\Z"),
                 st.sampled_from(["dash-board", "a" * 31, "a-" * 15 + "a", "x--y", "web", "api", "http"]))
IFACE = st.one_of(st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9_.-]{0,14}\Z"),
                  # iproute2 keywords and their abbreviations (`h` is `help`), and the kernel's reserved names
                  st.sampled_from(["eth1", "ens3f0", "a" * 12, "b" * 13, "c" * 15, "eth1.100", "lo",
                                   "h", "help", "dev", "up", "name", "type", "all", "default"]))


@st.composite
def segment(draw: Any, k: int) -> tuple[dict, ipaddress.IPv4Network]:
    """App k's segment: mostly inside its own /10 of 10/8 (apps do not overlap), sometimes
    next to the management addresses or the VTEPs (validate must refuse those)."""
    plen = draw(st.integers(16, 30))
    where = draw(st.sampled_from(["own"] * 8 + ["mgmt", "vtep"]))
    if where == "own":
        base = ipaddress.IPv4Address(f"10.{k * 64}.0.0") + draw(st.integers(0, (1 << 22) - 1))
    else:
        base = ipaddress.IPv4Address(f"{MGMT if where == 'mgmt' else VTEP}.0") + draw(st.integers(0, 255))
    net = ipaddress.ip_network(f"{base}/{plen}", strict=False)
    seg: dict[str, Any] = {"vni": draw(st.integers(1, (1 << 24) - 1)), "subnet": str(net)}
    if draw(st.booleans()):
        seg["vlan"] = draw(st.integers(1, 4094))
    if draw(st.booleans()):
        seg["gateway"] = str(net.broadcast_address - 1)
    return seg, net


@st.composite
def application(draw: Any, k: int, callee: tuple[str, str] | None, overrides: bool) -> dict:
    """App k on its own hosts; `callee`: a service of another app it may call; `overrides`:
    instances may name their host interface."""
    seg, net = draw(segment(k))
    gateway = seg.get("gateway", str(net.network_address + 1))
    free = (a for a in net.hosts() if str(a) != gateway)
    services: dict[str, dict] = {}
    for sname in draw(st.lists(NAME, min_size=1, max_size=3, unique=True)):
        pnames = draw(st.lists(NAME, max_size=2, unique=True))
        numbers = draw(st.lists(st.integers(1, 65535), min_size=len(pnames), max_size=len(pnames), unique=True))
        ports = [{"name": n, "port": p, "protocol": draw(st.sampled_from(["tcp", "udp"]))}
                 for n, p in zip(pnames, numbers)]
        instances = []
        for _ in range(draw(st.integers(0, 2))):
            addr = next(free, None)
            if addr is None:
                break
            inst = {"host": draw(st.sampled_from(APP_HOSTS[k])), "address": str(addr)}
            if overrides and draw(st.integers(0, 2)) == 0:
                inst["interface"] = draw(IFACE)
            instances.append(inst)
        services[sname] = {"instances": instances, "ports": ports}
    names = sorted(services)
    allow = []
    for _ in range(draw(st.integers(0, 3))):
        to = draw(st.sampled_from(names))
        rule: dict[str, Any] = {"from": draw(st.sampled_from(names)), "to": to}
        pnames = [p["name"] for p in services[to]["ports"]]
        if pnames and draw(st.booleans()):
            rule["ports"] = draw(st.lists(st.sampled_from(pnames), min_size=1, unique=True))
        allow.append(rule)
    if callee is not None and draw(st.booleans()):
        allow.append({"from": draw(st.sampled_from(names)), "to": f"{callee[0]}/{callee[1]}"})
    spec = {"segment": seg, "services": services, "exports": names[:1], "policy": {"allow": allow}}
    return {"apiVersion": "netintent/v1", "kind": "Application", "metadata": {"name": draw(NAME)}, "spec": spec}


@st.composite
def repos(draw: Any) -> dict[str, bytes]:
    """{path: bytes} of a whole intents repo (reconciler.yaml, inventory.yml, apps/*.yaml)."""
    ifaces = {h: draw(st.one_of(st.just("eth1"), IFACE)) if draw(st.integers(0, 3)) == 0 else "eth1" for h in HOSTS}
    files = {"reconciler.yaml": b"apiVersion: netintent/v1\nkind: ReconcilerConfig\ntrust_domain: contract.example\n",
             "inventory.yml": yaml.safe_dump(inventory(ifaces)).encode()}
    callee, across = None, draw(st.booleans())   # calls across apps
    for k in range(draw(st.integers(1, 3))):
        app = draw(application(k, callee if across else None, draw(st.booleans())))
        files[f"apps/app{k}.yaml"] = yaml.safe_dump(app, sort_keys=False).encode()
        callee = callee or (app["metadata"]["name"], sorted(app["spec"]["services"])[0])
    return files


def spanning_repo() -> dict[str, bytes]:
    """A fixed repo whose segment spans both leaves (instances under hv1 and hv2): the one shape
    that makes the leaves flood to each other (`bridge fdb append`). Always run, so the tool
    coverage asserted below does not hang on what 40 random repos happen to contain."""
    app = {"apiVersion": "netintent/v1", "kind": "Application", "metadata": {"name": "span"},
           "spec": {"segment": {"vni": 5001, "subnet": "10.0.1.0/24", "vlan": 101},
                    "services": {"web": {"instances": [{"host": "h1", "address": "10.0.1.11"}],
                                         "ports": [{"name": "http", "port": 80, "protocol": "tcp"}]},
                                 "api": {"instances": [{"host": "h4", "address": "10.0.1.21"}],
                                         "ports": [{"name": "grpc", "port": 8080, "protocol": "tcp"}]}},
                    "exports": [], "policy": {"allow": [{"from": "web", "to": "api", "ports": ["grpc"]}]}}}
    return {"reconciler.yaml": b"apiVersion: netintent/v1\nkind: ReconcilerConfig\ntrust_domain: contract.example\n",
            "inventory.yml": yaml.safe_dump(inventory(dict.fromkeys(HOSTS, "eth1"))).encode(),
            "apps/span.yaml": yaml.safe_dump(app, sort_keys=False).encode()}


def accepted(tree: dict[str, bytes]) -> tuple[IntentRepo, State] | None:
    repo, _errors = check_tree(tree)
    if repo is None:
        return None
    return repo, compile_repo(repo)   # a CompileConflict here is a contract hole: validate let it through


# ------------------------------------------------------------------------ rendering, as the drivers do
NFT_IDENT = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,254}\Z")   # nft(8): identifiers, less `.`/`/`/`\`


def by_target(desired: State, layer: Layer) -> dict[str, list[Resource]]:
    out: dict[str, list[Resource]] = {}
    for r in desired.resources.values():
        if r.key.layer == layer:
            out.setdefault(r.key.target, []).append(r)
    return out


def host_inputs(resources: list[Resource]) -> tuple[list[str], str]:
    """(`ip -force -batch` lines, nft script) the host driver writes to a fresh host."""
    lines, _details = render_ip(resources, [], prune=False)
    nft = plan_script([r for r in resources if r.key.kind.startswith("nft-")], [], prune=False)
    for r in resources:
        if r.key.kind == "nft-set":
            assert NFT_IDENT.match(r.spec["name"]), f"nft set name {r.spec['name']!r} outside nft's grammar"
        elif r.key.kind == "nft-table":
            assert NFT_IDENT.match(r.spec["name"]), f"nft table name {r.spec['name']!r} outside nft's grammar"
    return lines, nft.script


def hypervisor_inputs(resources: list[Resource], repo: IntentRepo, hv: str) -> tuple[str, list[str], str]:
    """(bridge, ovs-vsctl argv, ovs-ofctl flow file) the hypervisor driver runs on a fresh switch."""
    bridge = str(repo.inventory.hosts[hv].vars.get("netintent_bridge", "br0"))
    plan = render_ovs(resources, [], False, bridge)
    vsctl = ["ovs-vsctl", "--timeout=10", *plan.vsctl] if plan.vsctl else []
    return bridge, vsctl, "".join(f"{line}\n" for line in plan.flows)


def leaf_commands(desired: State, repo: IntentRepo, leaf: str) -> list[tuple[str, ...]]:
    """The leaf's argv list for a fresh leaf (everything is a create)."""
    mine = desired.for_target(Layer.SWITCH, leaf)
    plan = make_plan(mine, ObservedState(), prune=False)
    cmds = PLATFORM.render(plan.changes, [], list(mine.resources.values()), repo.inventory.hosts[leaf].vars)
    return [tuple(c.argv) for c in cmds]


def render_all(repo: IntentRepo, desired: State) -> dict:
    return {"hosts": {h: host_inputs(rs) for h, rs in by_target(desired, Layer.HOST).items()},
            "hypervisors": {hv: hypervisor_inputs(rs, repo, hv)
                            for hv, rs in by_target(desired, Layer.HYPERVISOR).items()},
            "leaves": {lf: leaf_commands(desired, repo, lf) for lf in by_target(desired, Layer.SWITCH)}}


PROPERTY = settings(max_examples=40, deadline=None, derandomize=False,
                    phases=[Phase.explicit, Phase.generate, Phase.shrink],
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                           HealthCheck.data_too_large, HealthCheck.function_scoped_fixture])


def test_accepted_intents_render_in_every_driver() -> None:
    seen = {"accepted": 0}

    @PROPERTY
    @given(repos())
    def prop(tree: dict[str, bytes]) -> None:
        got = accepted(tree)
        if got is not None:
            seen["accepted"] += 1
            render_all(*got)

    prop()
    assert seen["accepted"] >= 8, f"only {seen['accepted']} of 40 generated repos validated: the property is vacuous"


def test_schema_names_with_dashes_become_nft_identifiers() -> None:
    """The defect that started this: `dash-board`/`http` gave nft set `allow_dash-board_http`."""
    app = {"apiVersion": "netintent/v1", "kind": "Application", "metadata": {"name": "dash-app"},
           "spec": {"segment": {"vni": 7001, "subnet": "10.70.1.0/24"},
                    "services": {"dash-board": {"instances": [{"host": "h1", "address": "10.70.1.11"}],
                                                "ports": [{"name": "http-alt", "port": 8080}]},
                                 "web": {"instances": [{"host": "h1", "address": "10.70.1.12"}]}},
                    "policy": {"allow": [{"from": "web", "to": "dash-board"}]}}}
    tree = {"reconciler.yaml": b"apiVersion: netintent/v1\nkind: ReconcilerConfig\ntrust_domain: c.example\n",
            "inventory.yml": yaml.safe_dump(inventory({h: "eth1" for h in HOSTS})).encode(),
            "apps/dash.yaml": yaml.safe_dump(app).encode()}
    got = accepted(tree)
    assert got is not None, check_tree(tree)[1]
    _lines, script = host_inputs(by_target(got[1], Layer.HOST)["h1"])
    assert "set allow_dash_board_http_alt {" in script and "set svc_dash_board {" in script
    assert "table inet netintent_dash_app {" in script


def _two_apps_one_override() -> dict[str, bytes]:
    def app(name: str, vni: int, net: str, svc: dict, extra: dict) -> bytes:
        spec = {"segment": {"vni": vni, "subnet": f"{net}.0/24"}, "services": svc, **extra}
        return yaml.safe_dump({"apiVersion": "netintent/v1", "kind": "Application", "metadata": {"name": name},
                               "spec": spec}).encode()
    return {"reconciler.yaml": b"apiVersion: netintent/v1\nkind: ReconcilerConfig\ntrust_domain: c.example\n",
            "inventory.yml": yaml.safe_dump(inventory({h: "eth1" for h in HOSTS})).encode(),
            "apps/shop.yaml": app("shop", 11, "10.0.1", {"api": {"instances": [{"host": "h4", "address": "10.0.1.10"}],
                                                               "ports": [{"name": "grpc", "port": 80}]}},
                                  {"exports": ["api"]}),
            "apps/bill.yaml": app("bill", 12, "10.64.1", {"inv": {"instances": [
                {"host": "h2", "address": "10.64.1.10", "interface": "eth2"}]}},
                {"policy": {"allow": [{"from": "inv", "to": "shop/api"}]}})}


def test_peer_route_leaves_by_the_apps_interface() -> None:
    got = accepted(_two_apps_one_override())
    assert got is not None
    routes = [r for r in by_target(got[1], Layer.HOST)["h2"] if r.key.kind == "route"]
    assert routes and all(r.spec["interface"] == "eth2" for r in routes), [dict(r.spec) for r in routes]


# ------------------------------------------------------------------------ the real tools (lab)
OVS_SCHEMA = "/usr/share/openvswitch/vswitch.ovsschema"
TOOLS = ("ip", "nft", "ovsdb-tool", "ovsdb-server", "ovs-vswitchd", "ovs-vsctl", "ovs-ofctl", "vtysh", "ethtool",
         "bridge", "sysctl")


def _run(argv: list[str] | tuple[str, ...], ns: str | None = None, env: dict | None = None,
         stdin: str | None = None) -> subprocess.CompletedProcess:
    cmd = (["ip", "netns", "exec", ns] if ns else []) + list(argv)
    return subprocess.run(cmd, input=stdin, capture_output=True, text=True, env=env, timeout=30)


TOOL_RUNS: Counter[str] = Counter()   # what the lab property made the real tools check


def _ok(argv: list[str] | tuple[str, ...], ns: str | None = None, env: dict | None = None,
        stdin: str | None = None, what: str = "") -> str:
    p = _run(argv, ns, env, stdin)
    if what:
        TOOL_RUNS[what] += 1
    assert p.returncode == 0, f"{what or argv[0]} refused what validate accepted: {' '.join(argv)}\n" \
                              f"rc={p.returncode} {p.stderr.strip()}\n--- input ---\n{stdin or ''}"
    return p.stdout


class Node:
    """One netns; with `ovs`, its own ovsdb-server + ovs-vswitchd (userspace datapath) in `dir`."""

    def __init__(self, tag: str, name: str, root: Path, ovs: bool):
        self.ns, self.dir = f"ni-cp{tag}-{name}", root / name
        self.dir.mkdir()
        self.env = {**os.environ, "OVS_RUNDIR": str(self.dir), "OVS_DBDIR": str(self.dir), "OVS_LOGDIR": str(self.dir)}
        _ok(["ip", "netns", "add", self.ns])
        _ok(["ip", "-n", self.ns, "link", "set", "lo", "up"])
        if ovs:
            d = self.dir
            _ok(["ovsdb-tool", "create", str(d / "conf.db"), OVS_SCHEMA])
            _ok(["ovsdb-server", str(d / "conf.db"), f"--remote=punix:{d}/db.sock", f"--pidfile={d}/db.pid",
                 "--detach", f"--log-file={d}/db.log"], self.ns, self.env)
            _ok(["ovs-vsctl", "--no-wait", "init"], self.ns, self.env)
            _ok(["ovs-vswitchd", f"unix:{d}/db.sock", f"--pidfile={d}/vswitchd.pid", "--detach",
                 f"--log-file={d}/vswitchd.log"], self.ns, self.env)

    def run(self, argv: list[str] | tuple[str, ...], stdin: str | None = None, what: str = "") -> str:
        return _ok(argv, self.ns, self.env, stdin, what)

    def links(self) -> set[str]:
        listing = _ok(["ip", "-n", self.ns, "-o", "link", "show"])
        return {m.group(1) for m in re.finditer(r"^\d+: ([^:@\s]+)[:@]", listing, re.M)}

    def bridge(self, name: str, ports: list[str]) -> None:
        """A bridge whose ports are veths (each with a `q`-prefixed peer outside the bridge)."""
        self.run(["ovs-vsctl", "add-br", name, "--", "set", "bridge", name, "datapath_type=netdev",
                  "fail_mode=standalone"])
        for p in ports:
            self.run(["ip", "link", "add", "name", p, "type", "veth", "peer", "name", f"q{p}"])
            self.run(["ip", "link", "set", "dev", p, "up"])
            self.run(["ovs-vsctl", "add-port", name, p])

    def down(self) -> None:
        for pidfile in ("vswitchd.pid", "db.pid"):
            try:
                pid = int((self.dir / pidfile).read_text().strip())
            except (OSError, ValueError):
                continue
            _kill(pid)
        for pid in _run(["ip", "netns", "pids", self.ns]).stdout.split():
            _kill(int(pid))
        _run(["ip", "netns", "del", self.ns])


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.02)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


@pytest.fixture(scope="module")
def contract_lab() -> Iterator[dict[str, Node]]:
    """h1..h6 (plain netns), hv (one OVS: brh1 = up1 + hp1..hp3, brh2 = up2 + hp4..hp6), leaf1 and
    leaf2 (own OVS each: brlK = lpK; fabK a veth outside the bridge)."""
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces, Open vSwitch)")
    missing = [t for t in TOOLS if shutil.which(t) is None] + ([OVS_SCHEMA] if not os.path.exists(OVS_SCHEMA) else [])
    if missing:
        pytest.skip(f"missing tools: {', '.join(missing)} (bash scripts/install.sh installs them)")
    tag = uuid.uuid4().hex[:6]
    root = Path(tempfile.mkdtemp(prefix=f"ni-cp{tag}-"))
    nodes: dict[str, Node] = {}
    try:
        for h in HOSTS:
            nodes[h] = Node(tag, h, root, ovs=False)
        nodes["hv"] = Node(tag, "hv", root, ovs=True)
        nodes["hv"].bridge("brh1", ["up1", "hp1", "hp2", "hp3"])
        nodes["hv"].bridge("brh2", ["up2", "hp4", "hp5", "hp6"])
        for k in (1, 2):
            leaf = nodes[f"leaf{k}"] = Node(tag, f"leaf{k}", root, ovs=True)
            leaf.bridge(f"brl{k}", [f"lp{k}"])
            leaf.run(["ip", "link", "add", "name", f"fab{k}", "type", "veth", "peer", "name", f"qfab{k}"])
        yield nodes
    finally:
        for node in nodes.values():
            node.down()
        shutil.rmtree(root, ignore_errors=True)


def apply_host(node: Node, lines: list[str], script: str, ifaces: set[str]) -> None:
    """Veths named as the intents say (peers `zN`), then the driver's ip batch and `nft -c`."""
    have = node.links()
    made = sorted(ifaces - have)
    peers = [f"z{i}" for i in range(len(made) + len(ifaces) + 1) if f"z{i}" not in ifaces][:len(made)]
    # `name`/`dev` before each name: iproute2 reads a bare `h` as its keyword `help`
    links = [f"link add name {i} type veth peer name {p}\nlink set dev {i} up\nlink set dev {p} up\n"
             for i, p in zip(made, peers)]
    try:
        if links:
            node.run(["ip", "-batch", "-"], "".join(links), "ip (making the test's veths)")
        if lines:
            node.run(["ip", "-force", "-batch", "-"], "\n".join(lines) + "\n", "ip -batch (host driver)")
        if script:
            node.run(["nft", "-c", "-f", "-"], script, "nft -c -f (host driver)")
    finally:
        for i in made:
            _run(["ip", "-n", node.ns, "link", "del", "dev", i])


def apply_hypervisor(node: Node, bridge: str, vsctl: list[str], flows: str) -> None:
    try:
        if vsctl:
            node.run(vsctl, what="ovs-vsctl (hypervisor driver)")
        if flows:
            node.run(["ovs-ofctl", "--bundle", "add-flows", bridge, "-"], flows, "ovs-ofctl --bundle add-flows")
    finally:
        node.run(["ovs-ofctl", "del-flows", bridge])


def vtysh_segments(argv: tuple[str, ...]) -> list[list[str]]:
    """`vtysh -c 'configure terminal' -c L1 ... -c end -c 'configure terminal' ...` -> config blocks."""
    args = [argv[i + 1] for i in range(1, len(argv) - 1, 2) if argv[i] == "-c"]
    blocks: list[list[str]] = [[]]
    for a in args:
        if a == "end":
            blocks.append([])
        elif a != "configure terminal":
            blocks[-1].append(a)
    return [b for b in blocks if b]


def apply_leaf(node: Node, bridge: str, cmds: list[tuple[str, ...]], scratch: Path) -> None:
    """The leaf's commands in its netns (its own OVS); FRR lines through `vtysh --dryrun`. Then
    back to the fixture's state: only the trunk port on the bridge, no VXLAN/gateway devices."""
    keep = set(node.run(["ovs-vsctl", "list-ports", bridge]).split())
    try:
        for argv in cmds:
            if argv[0] != "vtysh":
                node.run(argv, what=f"{argv[0]} (switch driver)")
                continue
            for i, block in enumerate(vtysh_segments(argv)):
                conf = scratch / f"frr-{i}.conf"
                conf.write_text("\n".join(block) + "\n")
                _ok(["vtysh", "--dryrun", "-f", str(conf)], what="vtysh --dryrun (FRR)")
    finally:
        for port in node.run(["ovs-vsctl", "list-ports", bridge]).split():
            if port not in keep:
                node.run(["ovs-vsctl", "--if-exists", "del-port", bridge, port])
        for name in node.links():
            if name.startswith(("vxlan", "gw")):
                _run(["ip", "-n", node.ns, "link", "del", "dev", name])
        node.run(["ovs-ofctl", "del-flows", bridge])


@pytest.mark.lab
def test_accepted_intents_pass_the_real_tools(contract_lab: dict[str, Node], tmp_path: Path) -> None:
    seen = {"accepted": 0}

    @PROPERTY
    @given(repos())
    @example(spanning_repo())
    def prop(tree: dict[str, bytes]) -> None:
        got = accepted(tree)
        if got is None:
            return
        seen["accepted"] += 1
        repo, desired = got
        out = render_all(repo, desired)
        for h, (lines, script) in out["hosts"].items():
            ifaces = {r.spec["interface"] for r in by_target(desired, Layer.HOST)[h] if r.key.kind in ("address", "route")}
            apply_host(contract_lab[h], lines, script, ifaces)
        for _hv, (bridge, vsctl, flows) in out["hypervisors"].items():
            apply_hypervisor(contract_lab["hv"], bridge, vsctl, flows)
        for leaf, cmds in out["leaves"].items():
            bridge = str(repo.inventory.hosts[leaf].vars["netintent_bridge"])
            apply_leaf(contract_lab[leaf], bridge, cmds, tmp_path)

    TOOL_RUNS.clear()
    prop()
    assert seen["accepted"] >= 8, f"only {seen['accepted']} of 40 generated repos validated: the property is vacuous"
    checked = {"nft -c -f (host driver)", "ip -batch (host driver)", "ovs-vsctl (hypervisor driver)",
               "ovs-ofctl --bundle add-flows", "ip (switch driver)", "ovs-vsctl (switch driver)",
               "ovs-ofctl (switch driver)", "bridge (switch driver)", "vtysh --dryrun (FRR)"}
    assert checked <= set(TOOL_RUNS), f"tools never exercised: {sorted(checked - set(TOOL_RUNS))} ({TOOL_RUNS})"
