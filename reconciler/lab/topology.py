"""Parse a containerlab topology file into frozen values (pure: text in, Topology out).

Contract:
- `parse(text, path)` reads the containerlab format as containerlab does: `name`, `mgmt`
  (`network`, `ipv4-subnet`, `ipv4-gw`), `topology.defaults`, `topology.kinds`,
  `topology.groups`, `topology.nodes` and `topology.links`.
- Inheritance follows containerlab: scalars (kind, mgmt-ipv4, ...) take the first value set in
  node -> group -> kind -> defaults; `exec` concatenates defaults + kind + group + node;
  `labels`, `env` merge defaults < kind < group < node; `binds` merge by container path with
  the same precedence.
- Links: the short form (`endpoints: ["a:eth1", "b:eth1"]`, optional `mtu`) and the extended
  form (`type: veth`, `endpoints: [{node, interface, mac}, ...]`, optional `mtu`).
- Kinds supported: `linux` (a netns node), `bridge` (a Linux bridge in the root netns),
  `ovs-bridge` (an OVS bridge). Any other kind is a `TopologyError` naming node, kind, file and
  line. Container-only fields (image, cmd, cpu, memory, ports, ...) are collected in
  `Topology.ignored` (node -> field names) so the caller can print one summary line.
- Every name that later reaches a command line (lab, node, interface) is validated here.
- All errors are `TopologyError` with file and line; never a bare traceback.
"""
from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping

import yaml

from reconciler.lab.yamlpos import TopologyError, _Ctx, _line_index
from reconciler.names import is_interface_name

SUPPORTED_KINDS = ("linux", "bridge", "ovs-bridge")
# Fields that only make sense for a container engine: read, ignored, reported once.
CONTAINER_ONLY = frozenset({
    "image", "cmd", "entrypoint", "cpu", "cpu-set", "memory", "ports", "user", "shm-size",
    "image-pull-policy", "restart-policy", "runtime", "network-mode", "sysctls", "devices",
    "cap-add", "publish", "dns", "extras", "stages", "wait-for", "certificate", "healthcheck",
    "aliases", "license", "type", "startup-config", "startup-delay", "enforce-startup-config",
    "suppress-startup-config", "auto-remove", "sandbox", "kernel", "env-files", "components",
    "config", "position", "mgmt-ipv6", "dns",
})
NODE_FIELDS = frozenset({"kind", "group", "mgmt-ipv4", "labels", "env", "exec", "binds"})

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,39}$")
ENV_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
MAC_RE = re.compile(r"^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$")
DEFAULT_MGMT_NET = "clab"
DEFAULT_MGMT_SUBNET = "172.20.20.0/24"


@dataclass(frozen=True)
class Endpoint:
    node: str
    iface: str
    mac: str | None = None

    def __str__(self) -> str:
        return f"{self.node}:{self.iface}"


@dataclass(frozen=True)
class Link:
    a: Endpoint
    b: Endpoint
    mtu: int | None = None
    line: int | None = None


@dataclass(frozen=True)
class Node:
    name: str
    kind: str
    mgmt_ipv4: str | None = None
    labels: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    env: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    exec: tuple[str, ...] = ()
    binds: tuple[tuple[str, str, str], ...] = ()   # (host path, container path, options)
    group: str | None = None
    line: int | None = None

    @property
    def role(self) -> str | None:
        return self.labels.get("netintent.role")


@dataclass(frozen=True)
class Topology:
    name: str
    path: str
    mgmt_network: str
    mgmt_subnet: ipaddress.IPv4Network
    mgmt_gateway: ipaddress.IPv4Address
    nodes: Mapping[str, Node]
    links: tuple[Link, ...]
    ignored: Mapping[str, tuple[str, ...]]

    @property
    def base_dir(self) -> Path:
        return Path(self.path).resolve().parent

    def netns_nodes(self) -> list[Node]:
        return [n for n in self.nodes.values() if n.kind == "linux"]

    def links_of(self, node: str) -> list[tuple[Endpoint, Endpoint, Link]]:
        """(local endpoint, peer endpoint, link) for every link touching `node`."""
        out = []
        for ln in self.links:
            if ln.a.node == node:
                out.append((ln.a, ln.b, ln))
            if ln.b.node == node:
                out.append((ln.b, ln.a, ln))
        return out

    def ignored_summary(self) -> str | None:
        if not self.ignored:
            return None
        fields = sorted({f for fs in self.ignored.values() for f in fs})
        return (f"{self.path}: container-only fields ignored on {len(self.ignored)} node(s): "
                + ", ".join(fields))


def _mapping(ctx: _Ctx, value: Any, *keys: str | int) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ctx.err(f"{'.'.join(map(str, keys))} must be a mapping", *keys)
    return value


def _str_map(ctx: _Ctx, value: Any, *keys: str | int) -> dict[str, str]:
    m = _mapping(ctx, value, *keys)
    return {str(k): "" if v is None else str(v) for k, v in m.items()}


def _str_list(ctx: _Ctx, value: Any, *keys: str | int) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(x, (str, int, float)) for x in value):
        raise ctx.err(f"{'.'.join(map(str, keys))} must be a list of strings", *keys)
    return [str(x) for x in value]


def _parse_bind(ctx: _Ctx, spec: str, *keys: str | int) -> tuple[str, str, str]:
    parts = spec.split(":")
    if len(parts) < 2 or not parts[0] or not parts[1] or len(parts) > 3:
        raise ctx.err(f"bind {spec!r} is not HOST:CONTAINER[:OPTIONS]", *keys)
    return parts[0], parts[1], parts[2] if len(parts) == 3 else ""


def _resolve_node(ctx: _Ctx, name: str, raw: dict, defaults: dict, kinds: dict,
                  groups: dict, ignored: dict[str, tuple[str, ...]]) -> Node:
    if not NAME_RE.match(name):
        raise ctx.err(f"node name {name!r} is invalid (letters, digits, '_.-', <= 40 chars)",
                      "topology", "nodes", name)
    group_name = raw.get("group") or None
    if group_name is not None and group_name not in groups:
        raise ctx.err(f"node {name}: group {group_name!r} is not defined in topology.groups",
                      "topology", "nodes", name, "group")
    group = groups.get(group_name, {}) if group_name else {}
    kind = raw.get("kind") or group.get("kind") or defaults.get("kind")
    if not kind:
        raise ctx.err(f"node {name}: no kind (set kind on the node, its group or defaults)",
                      "topology", "nodes", name)
    kind = str(kind)
    if kind not in SUPPORTED_KINDS:
        raise ctx.err(f"node {name}: kind {kind!r} is not supported by the netns lab "
                      f"(supported: {', '.join(SUPPORTED_KINDS)})", "topology", "nodes", name)
    kdef = kinds.get(kind, {}) or {}
    layers = [("defaults", defaults), ("kinds." + kind, kdef),
              ("groups." + str(group_name), group), ("nodes." + name, raw)]
    labels: dict[str, str] = {}
    env: dict[str, str] = {}
    execs: list[str] = []
    binds: dict[str, tuple[str, str, str]] = {}
    mgmt = None
    skipped: set[str] = set()
    for where, layer in layers:
        keys = ("topology",) + tuple(where.split(".", 1))
        layer = _mapping(ctx, layer, *keys)
        labels.update(_str_map(ctx, layer.get("labels"), *keys, "labels"))
        env.update(_str_map(ctx, layer.get("env"), *keys, "env"))
        execs.extend(_str_list(ctx, layer.get("exec"), *keys, "exec"))
        for i, b in enumerate(_str_list(ctx, layer.get("binds"), *keys, "binds")):
            hb = _parse_bind(ctx, b, *keys, "binds", i)
            binds[hb[1]] = hb
        if layer.get("mgmt-ipv4"):
            mgmt = str(layer["mgmt-ipv4"])
        for key in layer:
            if key in NODE_FIELDS:
                continue
            if key in CONTAINER_ONLY:
                skipped.add(str(key))
            else:
                raise ctx.err(f"node {name}: unknown field {key!r}", *keys, key)
    for k, v in env.items():
        # env reaches sshd_config (SetEnv) and process environments: keep it to one plain line
        if not ENV_KEY_RE.match(k) or any(c in v for c in '\n\r"\\\0'):
            raise ctx.err(f"node {name}: env {k!r} must be NAME=value without quotes, "
                          "backslashes or newlines", "topology", "nodes", name, "env")
    if skipped:
        ignored[name] = tuple(sorted(skipped))
    return Node(name=name, kind=kind, mgmt_ipv4=mgmt, labels=MappingProxyType(labels),
                env=MappingProxyType(env), exec=tuple(execs), binds=tuple(binds.values()),
                group=group_name, line=ctx.line("topology", "nodes", name))


def _endpoint(ctx: _Ctx, ep: Any, nodes: Mapping[str, Node], i: int, j: int) -> Endpoint:
    keys = ("topology", "links", i, "endpoints", j)
    if isinstance(ep, str):
        if ep.count(":") != 1:
            raise ctx.err(f"link endpoint {ep!r} is not NODE:INTERFACE", *keys)
        node, iface = ep.split(":")
        mac = None
    elif isinstance(ep, dict):
        raw_node, raw_iface, mac = ep.get("node"), ep.get("interface"), ep.get("mac")
        if not raw_node or not raw_iface:
            raise ctx.err("extended link endpoint needs node and interface", *keys)
        node, iface = str(raw_node), str(raw_iface)
    else:
        raise ctx.err("link endpoint must be 'node:interface' or a mapping", *keys)
    if node not in nodes:
        raise ctx.err(f"link endpoint {node}:{iface}: node {node!r} is not defined", *keys)
    if not is_interface_name(iface) or iface in ("lo", "eth0"):
        raise ctx.err(f"link endpoint {node}:{iface}: invalid interface name "
                      "(<= 15 chars, not lo/eth0/all/default which are reserved)", *keys)
    if mac is not None and not MAC_RE.match(str(mac)):
        raise ctx.err(f"link endpoint {node}:{iface}: invalid mac {mac!r}", *keys)
    return Endpoint(node, iface, str(mac) if mac else None)


def _links(ctx: _Ctx, raw: Any, nodes: Mapping[str, Node]) -> tuple[Link, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise ctx.err("topology.links must be a list", "topology", "links")
    out: list[Link] = []
    seen: set[tuple[str, str]] = set()
    for i, ln in enumerate(raw):
        keys = ("topology", "links", i)
        if not isinstance(ln, dict):
            raise ctx.err("a link must be a mapping", *keys)
        ltype = ln.get("type", "veth")
        if ltype != "veth":
            raise ctx.err(f"link type {ltype!r} is not supported (only veth)", *keys, "type")
        eps = ln.get("endpoints")
        if not isinstance(eps, list) or len(eps) != 2:
            raise ctx.err("a link needs exactly two endpoints", *keys)
        a, b = (_endpoint(ctx, ep, nodes, i, j) for j, ep in enumerate(eps))
        for ep in (a, b):
            if (ep.node, ep.iface) in seen:
                raise ctx.err(f"interface {ep} is used by more than one link", *keys)
            seen.add((ep.node, ep.iface))
        mtu = ln.get("mtu")
        if mtu is not None:
            if not isinstance(mtu, int) or not 68 <= mtu <= 65535:
                raise ctx.err(f"link mtu {mtu!r} must be an integer 68..65535", *keys, "mtu")
        extra = set(ln) - {"endpoints", "mtu", "type", "labels", "vars"}
        if extra:
            raise ctx.err(f"link: unknown field(s) {', '.join(sorted(map(str, extra)))}", *keys)
        out.append(Link(a, b, mtu, ctx.line(*keys)))
    return tuple(out)


def parse(text: str, path: str = "<topology>", name_override: str | None = None,
          mgmt_subnet: str | None = None) -> Topology:
    """Parse topology text. Raises TopologyError (file:line: message) on any problem.

    `name_override` replaces `name`; `mgmt_subnet` moves the management network (explicit
    mgmt-ipv4 addresses keep their offset in the subnet), so a second copy of a lab can run
    next to the first.
    """
    ctx = _Ctx(path, _line_index(text))
    doc = _load_document(text, path)
    name = _lab_name(ctx, doc, name_override)
    mgmt = _mapping(ctx, doc.get("mgmt"), "mgmt")
    old_subnet, gw = _mgmt_subnet_and_gateway(ctx, mgmt)
    subnet = old_subnet
    if mgmt_subnet:
        subnet = _subnet_override(mgmt_subnet)
        gw = _move(gw, old_subnet, subnet, ctx, "the gateway")
    topo = _mapping(ctx, doc.get("topology"), "topology")
    nodes, ignored = _resolve_nodes(ctx, topo)
    move_from = old_subnet if mgmt_subnet else None
    nodes, used = _check_explicit_mgmt(ctx, nodes, gw, subnet, move_from)
    final = _assign_free_mgmt(ctx, nodes, subnet, used)
    links = _links(ctx, topo.get("links"), final)
    _check_top_level_fields(ctx, doc)
    return Topology(name=name, path=path, mgmt_network=str(mgmt.get("network", DEFAULT_MGMT_NET)),
                    mgmt_subnet=subnet, mgmt_gateway=gw, nodes=MappingProxyType(final),
                    links=links, ignored=MappingProxyType(ignored))


def _load_document(text: str, path: str) -> dict:
    """The YAML document, which must be a mapping."""
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else path
        raise TopologyError(f"{where}: YAML error: {getattr(e, 'problem', e)}") from None
    if not isinstance(doc, dict):
        raise TopologyError(f"{path}: a topology must be a mapping")
    return doc


def _lab_name(ctx: _Ctx, doc: dict, name_override: str | None) -> str:
    name = name_override or doc.get("name")
    if not name or not isinstance(name, str) or not NAME_RE.match(name) or len(name) > 24:
        raise ctx.err(f"lab name {name!r} is invalid (letters, digits, '_.-', <= 24 chars)",
                      "name")
    return name


def _mgmt_subnet_and_gateway(ctx: _Ctx, mgmt: dict) -> tuple[ipaddress.IPv4Network, ipaddress.IPv4Address]:
    """The management subnet as written in the file and its gateway (default: first host)."""
    try:
        subnet = ipaddress.IPv4Network(str(mgmt.get("ipv4-subnet", DEFAULT_MGMT_SUBNET)))
        gw = ipaddress.IPv4Address(str(mgmt["ipv4-gw"])) if mgmt.get("ipv4-gw") \
            else next(subnet.hosts())
    except (ValueError, StopIteration) as e:
        raise ctx.err(f"mgmt: {e}", "mgmt") from None
    if gw not in subnet:
        raise ctx.err(f"mgmt ipv4-gw {gw} is outside {subnet}", "mgmt", "ipv4-gw")
    return subnet, gw


def _subnet_override(mgmt_subnet: str) -> ipaddress.IPv4Network:
    try:
        return ipaddress.IPv4Network(mgmt_subnet)
    except ValueError as e:
        raise TopologyError(f"mgmt subnet override: {e}") from None


def _resolve_nodes(ctx: _Ctx, topo: dict) -> tuple[dict[str, Node], dict[str, tuple[str, ...]]]:
    """Every node with its inheritance resolved, and the container-only fields ignored per node."""
    defaults = _mapping(ctx, topo.get("defaults"), "topology", "defaults")
    kinds = _mapping(ctx, topo.get("kinds"), "topology", "kinds")
    groups = _mapping(ctx, topo.get("groups"), "topology", "groups")
    raw_nodes = _mapping(ctx, topo.get("nodes"), "topology", "nodes")
    if not raw_nodes:
        raise ctx.err("topology.nodes is empty", "topology")
    ignored: dict[str, tuple[str, ...]] = {}
    nodes: dict[str, Node] = {}
    for nname, raw in raw_nodes.items():
        raw = _mapping(ctx, raw, "topology", "nodes", str(nname))
        nodes[str(nname)] = _resolve_node(ctx, str(nname), raw, defaults, kinds, groups, ignored)
    return nodes, ignored


def _check_explicit_mgmt(ctx: _Ctx, nodes: dict[str, Node], gw: ipaddress.IPv4Address,
                         subnet: ipaddress.IPv4Network, move_from: ipaddress.IPv4Network | None,
                         ) -> tuple[dict[str, Node], dict[ipaddress.IPv4Address, str]]:
    """Validate the mgmt-ipv4 set in the file (moved from `move_from` into `subnet` when given).

    Returns the nodes (with moved addresses) and the addresses taken, each with its owner.
    """
    nodes = dict(nodes)
    used: dict[ipaddress.IPv4Address, str] = {gw: "the gateway"}
    for n in list(nodes.values()):
        if n.mgmt_ipv4 is None:
            continue
        try:
            ip = ipaddress.IPv4Address(n.mgmt_ipv4)
        except ValueError:
            raise ctx.err(f"node {n.name}: mgmt-ipv4 {n.mgmt_ipv4!r} is not an IPv4 address",
                          "topology", "nodes", n.name, "mgmt-ipv4") from None
        if move_from is not None:
            ip = _move(ip, move_from, subnet, ctx, f"node {n.name}")
            nodes[n.name] = Node(**{**n.__dict__, "mgmt_ipv4": str(ip)})
        if ip not in subnet or ip in (subnet.network_address, subnet.broadcast_address):
            raise ctx.err(f"node {n.name}: mgmt-ipv4 {ip} is not a host of {subnet}",
                          "topology", "nodes", n.name, "mgmt-ipv4")
        if ip in used:
            raise ctx.err(f"node {n.name}: mgmt-ipv4 {ip} is already used by {used[ip]}",
                          "topology", "nodes", n.name, "mgmt-ipv4")
        used[ip] = n.name
    return nodes, used


def _assign_free_mgmt(ctx: _Ctx, nodes: dict[str, Node], subnet: ipaddress.IPv4Network,
                      used: dict[ipaddress.IPv4Address, str]) -> dict[str, Node]:
    """Give every linux node without mgmt-ipv4 one: in file order, lowest free first (as docker IPAM does)."""
    free = (h for h in subnet.hosts() if h not in used)
    final: dict[str, Node] = {}
    for n in nodes.values():
        if n.kind == "linux" and n.mgmt_ipv4 is None:
            try:
                ip = next(free)
            except StopIteration:
                raise ctx.err(f"mgmt subnet {subnet} has no free address for {n.name}",
                              "mgmt") from None
            n = Node(**{**n.__dict__, "mgmt_ipv4": str(ip)})
        final[n.name] = n
    return final


def _check_top_level_fields(ctx: _Ctx, doc: dict) -> None:
    extra = set(doc) - {"name", "mgmt", "topology", "prefix", "settings"}
    if extra:
        raise ctx.err(f"unknown top-level field(s): {', '.join(sorted(map(str, extra)))}",
                      sorted(map(str, extra))[0])


def _move(ip: ipaddress.IPv4Address, old: ipaddress.IPv4Network, new: ipaddress.IPv4Network,
          ctx: _Ctx, what: str) -> ipaddress.IPv4Address:
    moved = new.network_address + (int(ip) - int(old.network_address))
    if moved not in new:
        raise ctx.err(f"{what}: {ip} has no place in the mgmt subnet override {new}", "mgmt")
    return moved


def load(path: str | Path, name_override: str | None = None,
         mgmt_subnet: str | None = None) -> Topology:
    """Read and parse a topology file (the only I/O in this module)."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as e:
        raise TopologyError(f"{p}: cannot read: {e.strerror}") from None
    return parse(text, str(p), name_override, mgmt_subnet)
