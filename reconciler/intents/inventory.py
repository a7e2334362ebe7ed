"""Ansible YAML inventory -> `reconciler.intents.models.Inventory`, with errors naming file and line.

Contract: `parse_inventory(file, raw)` returns `(Inventory | None, errors)`; it never raises for
bad input. It reads the YAML inventory format of Ansible's `yaml` inventory plugin: top-level
groups (normally `all`), each with `hosts` (name -> vars or null; `h[1:3]`/`h[a:c]` ranges
expanded), `vars` and `children` (nested groups). Variables are merged as Ansible does with
the default `hash_behaviour=replace`: `all` vars, then group vars by group depth (parents
before children, same depth by `ansible_group_priority` then name), then host vars (later
definitions of the same host win). A host belongs to every group that contains it directly
or through `children` (`all` and `ungrouped` are not listed, like Ansible's `group_names`).
INI inventories are refused with a hint to convert them.

Then the `netintent_*` variables of docs/inventory.md are checked for the groups hosts,
hypervisors, switches and sidecars: required ones present, names/addresses/numbers safe to
reach a shell, references (`netintent_hypervisor`, `netintent_leaf`) pointing at members of
the right group, and no port used twice.
"""
from __future__ import annotations

import ipaddress
import re
import string
from dataclasses import dataclass, field
from typing import Any, Callable

from reconciler.intents.loader import Doc, LoadFailed, ValidationError, format_path, parse_yaml, show
from reconciler.intents.models import Inventory, InventoryHost

GROUP_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,62}\Z")
HOST_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}\Z")
VAR_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}\Z")
IFACE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,14}\Z")
ADDR_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,252}\Z")
DEVTYPE_RE = re.compile(r"^[a-z][a-z0-9_]{0,40}\Z")
XDS_NODE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}\Z")
USER_RE = re.compile(r"^[a-z_][a-z0-9_.-]{0,31}\Z")
FILEPATH_RE = re.compile(r"^[A-Za-z0-9_./~+-]{1,4095}\Z")
_RANGE = re.compile(r"\[([0-9a-zA-Z]+):([0-9a-zA-Z]+)(?::([0-9]+))?\]")
_INI_SECTION = re.compile(r"^\s*\[[^\]\n]+\]\s*$", re.M)
MAX_RANGE = 10_000
GROUPS = ("hosts", "hypervisors", "switches", "sidecars")


@dataclass
class _Group:
    name: str
    vars: dict[str, Any] = field(default_factory=dict)
    var_paths: dict[str, tuple] = field(default_factory=dict)
    hosts: set[str] = field(default_factory=set)
    children: set[str] = field(default_factory=set)
    path: tuple = ()


def expand_hosts(pattern: str) -> list[str] | str:
    """`h[1:3]` -> [h1, h2, h3]; `n[01:02]` keeps zero padding; returns an error text if bad."""
    m = _RANGE.search(pattern)
    if not m:
        return [pattern]
    lo, hi, step_s = m.group(1), m.group(2), m.group(3)
    step = int(step_s) if step_s else 1
    if step < 1:
        return "range step must be at least 1"
    if lo.isdigit() and hi.isdigit():
        width = len(lo) if lo.startswith("0") and len(lo) > 1 else 0
        values = [str(i).zfill(width) for i in range(int(lo), int(hi) + 1, step)] if int(hi) - int(lo) < MAX_RANGE * step else None
    elif len(lo) == 1 and len(hi) == 1 and lo in string.ascii_letters and hi in string.ascii_letters:
        values = [chr(c) for c in range(ord(lo), ord(hi) + 1, step)]
    else:
        return f"bad host range [{lo}:{hi}]"
    if not values:
        return f"empty host range [{lo}:{hi}]" if values is not None else f"host range larger than {MAX_RANGE}"
    out: list[str] = []
    for v in values:
        rest = expand_hosts(pattern[: m.start()] + v + pattern[m.end():])
        if isinstance(rest, str):
            return rest
        out.extend(rest)
        if len(out) > MAX_RANGE:
            return f"host range larger than {MAX_RANGE}"
    return out


class _Reader:
    def __init__(self, doc: Doc):
        self.doc = doc
        self.errors: list[ValidationError] = []
        self.groups: dict[str, _Group] = {}
        self.host_vars: dict[str, dict[str, Any]] = {}
        self.host_var_paths: dict[str, dict[str, tuple]] = {}
        self.host_paths: dict[str, tuple] = {}

    def err(self, path: tuple, message: str) -> None:
        self.errors.append(self.doc.error(path, message))

    def group(self, name: str, path: tuple) -> _Group:
        g = self.groups.get(name)
        if g is None:
            g = self.groups[name] = _Group(name, path=path)
        return g

    def read_vars(self, data: Any, path: tuple) -> dict[str, Any] | None:
        if data is None:
            return {}
        if not isinstance(data, dict):
            self.err(path, "vars must be a mapping of variable names to values")
            return None
        ok = {}
        for k, v in data.items():
            if not VAR_RE.match(k):
                self.err(path + (k,), f"invalid variable name {show(k)}")
            else:
                ok[k] = v
        return ok

    def read_group(self, name: str, data: Any, path: tuple, stack: tuple[str, ...]) -> None:
        if not GROUP_RE.match(name):
            self.err(path, f"invalid group name {show(name)}: letters, digits, '_' and '-', starting with a letter or '_'")
            return
        if name in stack:
            self.err(path, f"group {show(name)} contains itself through children")
            return
        g = self.group(name, path)
        if data is None:
            return
        if not isinstance(data, dict):
            self.err(path, "a group must be a mapping with hosts, vars and/or children")
            return
        for key in data:
            if key not in ("hosts", "vars", "children"):
                self.err(path + (key,), f"unknown key {show(key)} in group {show(name)} (allowed: children, hosts, vars)")
        vs = self.read_vars(data.get("vars"), path + ("vars",))
        for k, v in (vs or {}).items():
            g.vars[k] = v
            g.var_paths[k] = path + ("vars", k)
        hosts = data.get("hosts")
        if isinstance(hosts, dict):
            for hname, hvars in hosts.items():
                hpath = path + ("hosts", hname)
                names = expand_hosts(hname)
                if isinstance(names, str):
                    self.err(hpath, names)
                    continue
                bad = [n for n in names if not HOST_RE.match(n)]
                if bad:
                    self.err(hpath, f"invalid host name {show(bad[0])}: letters, digits, '_', '.' and '-', starting with a letter or digit, at most 63 characters")
                    continue
                hv = self.read_vars(hvars, hpath)
                if hv is None:
                    continue
                for n in names:
                    g.hosts.add(n)
                    self.host_paths.setdefault(n, hpath)
                    self.host_vars.setdefault(n, {}).update(hv)
                    self.host_var_paths.setdefault(n, {}).update({k: hpath + (k,) for k in hv})
        elif hosts is not None:
            self.err(path + ("hosts",), "hosts must be a mapping of host names to their variables (or null)")
        children = data.get("children")
        if isinstance(children, dict):
            for cname, cdata in children.items():
                g.children.add(cname)
                self.read_group(cname, cdata, path + ("children", cname), stack + (name,))
        elif children is not None:
            self.err(path + ("children",), "children must be a mapping of group names to groups")


def _merge(r: _Reader) -> dict[str, tuple[tuple[str, ...], dict[str, Any], dict[str, tuple]]]:
    groups = r.groups
    alls = r.group("all", ())
    alls.children |= {n for n in groups if n != "all" and not any(n in g.children for g in groups.values())}
    depth: dict[str, int] = {}

    def walk(name: str, d: int, seen: frozenset[str]) -> None:
        if depth.get(name, -1) >= d or name in seen or d > 64:
            return
        depth[name] = d
        for c in groups[name].children:
            if c in groups:
                walk(c, d + 1, seen | {name})

    walk("all", 0, frozenset())
    parents: dict[str, set[str]] = {n: set() for n in groups}
    for g in groups.values():
        for c in g.children:
            parents.setdefault(c, set()).add(g.name)

    def ancestors(name: str) -> set[str]:
        out, todo = set(), [name]
        while todo:
            for p in parents.get(todo.pop(), ()):
                if p not in out:
                    out.add(p)
                    todo.append(p)
        return out

    def order(name: str) -> tuple:
        prio = groups[name].vars.get("ansible_group_priority", 1)
        return (depth.get(name, 0), prio if isinstance(prio, int) else 1, name)

    result = {}
    all_hosts = sorted(set(r.host_vars) | {h for g in groups.values() for h in g.hosts})
    for host in all_hosts:
        direct = {g.name for g in groups.values() if host in g.hosts}
        member = direct | set().union(*(ancestors(d) for d in direct)) | {"all"}
        merged: dict[str, Any] = {}
        origin: dict[str, tuple] = {}
        for gname in sorted(member, key=order):
            merged.update(groups[gname].vars)
            origin.update(groups[gname].var_paths)
        merged.update(r.host_vars.get(host, {}))
        origin.update(r.host_var_paths.get(host, {}))
        names = tuple(sorted(member - {"all", "ungrouped"}))
        result[host] = (names, merged, origin)
    return result


def parse_inventory(file: str, raw: bytes) -> tuple[Inventory | None, list[ValidationError]]:
    looks_ini = b"[" in raw[:4096] and bool(_INI_SECTION.search(raw[:65536].decode("utf-8", "replace")))
    ini_hint = "this looks like an INI inventory; only YAML inventories are supported (convert with `ansible-inventory -i FILE --list --yaml`)"
    try:
        doc = parse_yaml(file, raw)
    except LoadFailed as e:
        if looks_ini and "invalid YAML" in e.error.message:
            return None, [ValidationError(file, e.error.line, "$", ini_hint)]
        return None, [e.error]
    if not isinstance(doc.data, dict):
        msg = ini_hint if looks_ini else "an inventory must be a mapping of group names (normally `all:`)"
        return None, [doc.error((), msg)]
    r = _Reader(doc)
    for name, data in doc.data.items():
        r.read_group(name, data, (name,), ())
    if r.errors:
        return None, sorted(r.errors)
    merged = _merge(r)
    hosts = {h: InventoryHost(name=h, groups=g, vars=v) for h, (g, v, _) in merged.items()}
    inv = Inventory(hosts=hosts)
    errors = _check_netintent(doc, inv, {h: (r.host_paths.get(h, ()), o) for h, (_, _, o) in merged.items()})
    return inv, sorted(errors)


def _ipv4(v: Any) -> bool:
    try:
        ipaddress.IPv4Address(v)
        return isinstance(v, str)
    except ValueError:
        return False


def _iface(v: Any) -> bool:
    return isinstance(v, str) and bool(IFACE_RE.match(v))


def _iface_list(v: Any) -> bool:
    return isinstance(v, list) and len(v) <= 64 and all(_iface(x) for x in v)


def _asn(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 4294967295


def _rx(rx: re.Pattern[str]) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, str) and bool(rx.match(v))


# group -> [(var, required, check, what it must be)]
VAR_RULES: dict[str, list[tuple[str, bool, Callable[[Any], bool], str]]] = {
    "all": [
        ("ansible_host", False, _rx(ADDR_RE), "a host name or IP address"),
        ("ansible_user", False, _rx(USER_RE), "a user name"),
        ("ansible_port", False, lambda v: isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 65535, "a port number 1..65535"),
        ("ansible_ssh_private_key_file", False, _rx(FILEPATH_RE), "a file path"),
        ("ansible_python_interpreter", False, _rx(FILEPATH_RE), "a file path"),
        ("netintent_known_hosts", False, _rx(FILEPATH_RE), "a file path"),
    ],
    "hosts": [
        ("netintent_interface", False, _iface, "an interface name"),
        ("netintent_hypervisor", True, _rx(HOST_RE), "a host name of group hypervisors"),
        ("netintent_hypervisor_port", True, _iface, "an interface name"),
        ("netintent_hypervisor_ports", False,
         lambda v: isinstance(v, dict) and all(_iface(k) and _iface(x) for k, x in v.items()),
         "a mapping of interface names to hypervisor interface names"),
        ("netintent_mac", False, _rx(re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}\Z")), "a lower-case MAC address"),
    ],
    "hypervisors": [
        ("netintent_bridge", False, _iface, "a bridge name"),
        ("netintent_uplink", False, _iface, "an interface name"),
        ("netintent_leaf", True, _rx(HOST_RE), "a host name of group switches"),
        ("netintent_leaf_port", True, _iface, "an interface name"),
    ],
    "switches": [
        ("netintent_bridge", False, _iface, "a bridge name"),
        ("netintent_vtep", True, _ipv4, "an IPv4 address"),
        ("netintent_asn", True, _asn, "an AS number 1..4294967295"),
        ("netintent_fabric_ports", False, _iface_list, "a list of interface names"),
        ("netintent_device_type", False, _rx(DEVTYPE_RE), "a netmiko device type"),
        ("netintent_platform", False, _rx(DEVTYPE_RE), "a platform name of reconciler/drivers/switch/platforms.py"),
    ],
    "sidecars": [
        ("netintent_xds_node", False, _rx(XDS_NODE_RE), "an xDS node id"),
        ("netintent_csds", False, _rx(re.compile(r"^[A-Za-z0-9.-]{1,253}:[0-9]{1,5}\Z")), "host:port of the CSDS admin port"),
        ("netintent_csds_port", False, lambda v: isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 65535,
         "a port number 1..65535"),
    ],
}


def _check_netintent(doc: Doc, inv: Inventory, where: dict[str, tuple[tuple, dict[str, tuple]]]) -> list[ValidationError]:
    errors: list[ValidationError] = []
    for name, host in sorted(inv.hosts.items()):
        hpath, origin = where[name]
        for group, rules in VAR_RULES.items():
            if group != "all" and group not in host.groups:
                continue
            for var, required, check, what in rules:
                if var not in host.vars:
                    if required:
                        errors.append(doc.error(hpath, f"host {show(name)} of group {group} needs {var}"))
                    continue
                if not check(host.vars[var]):
                    p = origin.get(var, hpath)
                    errors.append(ValidationError(doc.file, doc.line_of(p), format_path(p),
                                                  f"{var} of host {show(name)} must be {what}, got {show(host.vars[var])}"))
    refs = (("hosts", "netintent_hypervisor", "hypervisors", "netintent_hypervisor_port"),
            ("hypervisors", "netintent_leaf", "switches", "netintent_leaf_port"))
    for group, ref, target, port_var in refs:
        used: dict[tuple, str] = {}
        for h in inv.group(group):
            ref_val, port = h.vars.get(ref), h.vars.get(port_var)
            if not isinstance(ref_val, str):
                continue
            hpath, origin = where[h.name]
            p = origin.get(ref, hpath)
            if not inv.in_group(ref_val, target):
                errors.append(ValidationError(doc.file, doc.line_of(p), format_path(p),
                                              f"{ref} of host {show(h.name)} names {show(ref_val)}, which is not in group {target}"))
            elif isinstance(port, str):
                other = used.setdefault((ref_val, port), h.name)
                if other != h.name:
                    pp = origin.get(port_var, hpath)
                    errors.append(ValidationError(doc.file, doc.line_of(pp), format_path(pp),
                                                  f"port {show(port)} of {show(ref_val)} is already used by host {show(other)}"))
    vteps: dict[str, str] = {}
    for h in inv.group("switches"):
        v = h.vars.get("netintent_vtep")
        if isinstance(v, str) and vteps.setdefault(v, h.name) != h.name:
            hpath, origin = where[h.name]
            p = origin.get("netintent_vtep", hpath)
            errors.append(ValidationError(doc.file, doc.line_of(p), format_path(p),
                                          f"netintent_vtep {show(v)} is already used by switch {show(vteps[v])}"))
    return errors
