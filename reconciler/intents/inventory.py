"""Ansible YAML inventory -> `reconciler.intents.models.Inventory`, with errors naming file and line.

Contract: `parse_inventory(file, raw, key_dirs=None)` returns `(Inventory | None, errors)`; it
never raises for bad input, and its errors are bounded (reconciler.intents.bounds: at most 100,
then `and N more`). It reads the YAML inventory format of Ansible's `yaml` inventory plugin:
top-level groups (normally `all`), each with `hosts` (name -> vars or null; `h[1:3]`/`h[a:c]`
ranges expanded), `vars` and `children` (nested groups). Variables are merged as Ansible does
with the default `hash_behaviour=replace`: `all` vars, then group vars by group depth (parents
before children, same depth by `ansible_group_priority` then name), then host vars (later
definitions of the same host win). A host belongs to every group that contains it directly or
through `children` (`all` and `ungrouped` are not listed, like Ansible's `group_names`).
INI inventories are refused with a hint to convert them.

The file comes from the intents repo and Ansible runs it as root on the reconciler host, so:
- every variable, wherever defined (all, group or host), must be one of
  reconciler.intents.inventory_vars.ALLOWED and its value must pass that variable's check (key
  paths inside `key_dirs`, default `key_dirs_from_env()`); the error names the definition;
- no string anywhere (key or value, any depth) may hold a Jinja delimiter;
- no `#!` first line (Ansible runs an executable inventory file as a script) and no top-level
  `plugin:` key (Ansible's `auto` plugin would load that inventory plugin instead);
- YAML aliases repeating at most what the file writes (bounds.alias_growth);
- at most `MAX_GROUPS` groups, `MAX_HOSTS` hosts and `MAX_MEMBERSHIPS` (host, group) entries
  after range expansion, counted before any name is made; no group cycles.
Then the `netintent_*` structure of docs/inventory.md: required variables present for the
groups hosts, hypervisors, switches; references (`netintent_hypervisor`, `netintent_leaf`)
pointing at members of the right group; no port used twice; no VTEP used twice.
"""
from __future__ import annotations

import re
import string
from dataclasses import dataclass, field
from typing import Any

from reconciler.intents.bounds import FileErrors, alias_growth
from reconciler.intents.inventory_vars import ALLOWED, HOST_RE, jinja_marker, key_dirs_from_env, var_problem
from reconciler.intents.loader import Doc, LoadFailed, ValidationError, parse_yaml, show
from reconciler.intents.models import Inventory, InventoryHost

GROUP_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,62}\Z")
VAR_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}\Z")
_RANGE = re.compile(r"\[([0-9a-zA-Z]+):([0-9a-zA-Z]+)(?::([0-9]+))?\]")
_INI_SECTION = re.compile(r"^\s*\[[^\]\n]+\]\s*$", re.M)
MAX_RANGE = 10_000          # names one host pattern may expand to
MAX_HOSTS = 10_000          # distinct hosts in one inventory
MAX_MEMBERSHIPS = 50_000    # (host, group) entries: a host listed in n groups counts n times
MAX_GROUPS = 1_000
GROUPS = ("hosts", "hypervisors", "switches", "sidecars")
_SECRET_VARS = frozenset({"ansible_password"})  # never echoed in an error


@dataclass
class _Group:
    name: str
    vars: dict[str, Any] = field(default_factory=dict)
    var_paths: dict[str, tuple] = field(default_factory=dict)
    hosts: set[str] = field(default_factory=set)
    children: set[str] = field(default_factory=set)
    path: tuple = ()


def expand_hosts(pattern: str, limit: int = MAX_RANGE) -> list[str] | str:
    """`h[1:3]` -> [h1, h2, h3]; `n[01:02]` keeps zero padding; `[a:c]` letters; `[0:10:5]` a
    step; several ranges multiply. Returns an error text if bad or if it would make more than
    `limit` names (counted before any is made)."""
    pieces: list[str | list[str]] = []
    pos, total = 0, 1
    for m in _RANGE.finditer(pattern):
        values = _range_values(m, limit)
        if isinstance(values, str):
            return values
        total *= len(values)
        if total > limit:
            return f"host pattern expands to more than {limit} names"
        pieces += [pattern[pos:m.start()], values]
        pos = m.end()
    pieces.append(pattern[pos:])
    names = [""]
    for p in pieces:
        names = [n + p for n in names] if isinstance(p, str) else [n + v for n in names for v in p]
    return names


def _range_values(m: re.Match[str], limit: int) -> list[str] | str:
    lo, hi, step_s = m.group(1), m.group(2), m.group(3)
    if max(len(lo), len(hi), len(step_s or "")) > 9:
        return f"bad host range [{lo[:12]}:{hi[:12]}]"
    step = int(step_s) if step_s else 1
    if step < 1:
        return "range step must be at least 1"
    if lo.isdigit() and hi.isdigit():
        width = len(lo) if lo.startswith("0") and len(lo) > 1 else 0
        numbers = range(int(lo), int(hi) + 1, step)
        if len(numbers) > limit:
            return f"host range [{lo}:{hi}] has {len(numbers)} names, more than {limit}"
        values = [str(i).zfill(width) for i in numbers]
    elif len(lo) == 1 and len(hi) == 1 and lo in string.ascii_letters and hi in string.ascii_letters:
        values = [chr(c) for c in range(ord(lo), ord(hi) + 1, step)]
    else:
        return f"bad host range [{lo}:{hi}]"
    return values or f"empty host range [{lo}:{hi}]"


class _Reader:
    def __init__(self, doc: Doc, key_dirs: tuple[str, ...]):
        self.doc, self.key_dirs = doc, key_dirs
        self.sink = FileErrors(doc)
        self.groups: dict[str, _Group] = {}
        self.host_vars: dict[str, dict[str, Any]] = {}
        self.host_var_paths: dict[str, dict[str, tuple]] = {}
        self.host_paths: dict[str, tuple] = {}
        self.host_groups: dict[str, set[str]] = {}
        self.memberships = 0
        self.structural = 0
        self.too_many = False  # a size limit was hit: reported once, the rest is not read

    def err(self, path: tuple, message: str) -> None:
        """A structural error: the inventory is not built (value errors go to the sink directly)."""
        self.structural += 1
        self.sink.add(path, message)

    def group(self, name: str, path: tuple) -> _Group | None:
        g = self.groups.get(name)
        if g is None:
            if len(self.groups) >= MAX_GROUPS:
                self._limit(path, f"more than {MAX_GROUPS} groups")
                return None
            g = self.groups[name] = _Group(name, path=path)
        return g

    def _limit(self, path: tuple, what: str) -> None:
        if not self.too_many:
            self.too_many = True
            self.err(path, f"the inventory has {what}; the reconciler accepts at most {MAX_HOSTS} hosts, "
                     f"{MAX_MEMBERSHIPS} host entries in groups and {MAX_GROUPS} groups")

    def read_vars(self, data: Any, path: tuple, owner: str) -> dict[str, Any] | None:
        if data is None:
            return {}
        if not isinstance(data, dict):
            self.err(path, "vars must be a mapping of variable names to values")
            return None
        ok = {}
        for k, v in data.items():
            if not VAR_RE.match(k):
                self.err(path + (k,), f"invalid variable name {show(k)}")
                continue
            # Kept even when refused: the inventory is still built, to report every other error
            # too (the repo is refused as a whole, so a refused value never reaches a device).
            ok[k] = v
            if k in ALLOWED and _has_jinja(v):
                continue  # reported by _scan_jinja, with its path
            problem = var_problem(k, v, self.key_dirs)
            if problem is not None:
                got = f", got {show(v)}" if problem.startswith("must") and k not in _SECRET_VARS else ""
                self.sink.add(path + (k,), f"{k} of {owner} {problem}{got}")
        return ok

    def read_group(self, name: str, data: Any, path: tuple, stack: tuple[str, ...]) -> None:
        if not GROUP_RE.match(name):
            self.err(path, f"invalid group name {show(name)}: letters, digits, '_' and '-', "
                     "starting with a letter or '_'")
            return
        if name in stack:
            self.err(path, f"group {show(name)} contains itself through children")
            return
        g = self.group(name, path)
        if g is None or data is None:
            return
        if not isinstance(data, dict):
            self.err(path, "a group must be a mapping with hosts, vars and/or children")
            return
        for key in data:
            if key not in ("hosts", "vars", "children"):
                self.err(path + (key,), f"unknown key {show(key)} in group {show(name)} "
                         "(allowed: children, hosts, vars)")
        vs = self.read_vars(data.get("vars"), path + ("vars",), f"group {show(name)}")
        for k, v in (vs or {}).items():
            g.vars[k] = v
            g.var_paths[k] = path + ("vars", k)
        hosts = data.get("hosts")
        if isinstance(hosts, dict):
            for hname, hvars in hosts.items():
                if self.too_many:
                    break
                self.read_host(g, hname, hvars, path + ("hosts", hname))
        elif hosts is not None:
            self.err(path + ("hosts",), "hosts must be a mapping of host names to their variables (or null)")
        children = data.get("children")
        if isinstance(children, dict):
            for cname, cdata in children.items():
                g.children.add(cname)
                self.read_group(cname, cdata, path + ("children", cname), stack + (name,))
        elif children is not None:
            self.err(path + ("children",), "children must be a mapping of group names to groups")

    def read_host(self, g: _Group, pattern: str, hvars: Any, hpath: tuple) -> None:
        budget = MAX_MEMBERSHIPS - self.memberships
        names = expand_hosts(pattern, min(MAX_RANGE, budget))
        if isinstance(names, str) and not (budget < MAX_RANGE and "more than" in names):
            self.err(hpath, names)   # the pattern itself is bad (or larger than MAX_RANGE)
            return
        if isinstance(names, str) or len(names) > budget:
            self._limit(hpath, f"more than {MAX_MEMBERSHIPS} host entries in groups (at {show(pattern)})")
            return
        bad = next((n for n in names if not HOST_RE.match(n)), None)
        if bad is not None:
            self.err(hpath, f"invalid host name {show(bad)}: letters, digits, '_', '.' and '-', starting with a "
                     "letter or digit, at most 63 characters")
            return
        hv = self.read_vars(hvars, hpath, f"host {show(names[0])}" if len(names) == 1 else f"hosts {show(pattern)}")
        if hv is None:
            return
        self.memberships += len(names)
        new = sum(1 for n in names if n not in self.host_groups)
        if len(self.host_groups) + new > MAX_HOSTS:
            self._limit(hpath, f"more than {MAX_HOSTS} hosts")
            return
        paths = {k: hpath + (k,) for k in hv}
        for n in names:
            g.hosts.add(n)
            self.host_groups.setdefault(n, set()).add(g.name)
            self.host_paths.setdefault(n, hpath)
            self.host_vars.setdefault(n, {}).update(hv)
            self.host_var_paths.setdefault(n, {}).update(paths)


def _has_jinja(value: Any) -> bool:
    todo = [value]
    while todo:  # bounded: the loader caps a document at MAX_NODES values
        v = todo.pop()
        if isinstance(v, str):
            if jinja_marker(v):
                return True
        elif isinstance(v, dict):
            todo.extend(v)
            todo.extend(v.values())
        elif isinstance(v, list):
            todo.extend(v)
    return False


def _scan_jinja(doc: Doc, sink: FileErrors) -> None:
    """Every string (key or value, any depth) holding a Jinja delimiter, located."""
    todo: list[tuple[tuple, Any]] = [((), doc.data)]
    while todo and not sink.full:  # bounded by the document's size (MAX_NODES) and the error bound
        path, v = todo.pop()
        if isinstance(v, dict):
            for k, x in reversed(v.items()):
                m = jinja_marker(k)
                if m:
                    sink.add(path + (k,), f"key {show(k)} holds the Jinja delimiter {m!r}: Ansible would evaluate it "
                             "on the reconciler host; templates are not allowed in the inventory")
                todo.append((path + (k,), x))
        elif isinstance(v, list):
            todo.extend((path + (i,), x) for i, x in reversed(list(enumerate(v))))
        elif isinstance(v, str):
            m = jinja_marker(v)
            if m:
                sink.add(path, f"value {show(v)} holds the Jinja delimiter {m!r}: Ansible would evaluate it "
                         "(e.g. lookup('pipe', ...) runs a command) on the reconciler host; templates are not "
                         "allowed in the inventory")
    if todo:
        sink.at_least()  # stopped counting


def _group_order(r: _Reader) -> tuple[dict[str, int], dict[str, frozenset[str]]] | None:
    """Depth (longest path from `all`, as Ansible computes it) and ancestors of every group, in
    one topological pass; None after reporting a cycle."""
    groups = r.groups
    parents: dict[str, set[str]] = {n: set() for n in groups}
    for g in groups.values():
        for c in g.children:
            if c in groups:
                parents[c].add(g.name)
    waiting = {n: len(p) for n, p in parents.items()}
    ready = [n for n, k in waiting.items() if k == 0]
    depth: dict[str, int] = {}
    ancestors: dict[str, frozenset[str]] = {}
    while ready:  # each group once: Kahn's algorithm
        n = ready.pop()
        ps = parents[n]
        depth[n] = max((depth[p] + 1 for p in ps), default=0)
        ancestors[n] = frozenset().union(*(ancestors[p] | {p} for p in ps)) if ps else frozenset()
        for c in groups[n].children:
            if c in waiting:
                waiting[c] -= 1
                if waiting[c] == 0:
                    ready.append(c)
    cyclic = sorted(n for n in groups if n not in depth)
    if cyclic:
        g = groups[cyclic[0]]
        r.err(g.path, f"groups {', '.join(show(n) for n in cyclic[:5])} contain each other through children")
        return None
    return depth, ancestors


def _merge(r: _Reader) -> dict[str, tuple[tuple[str, ...], dict[str, Any], dict[str, tuple]]] | None:
    groups = r.groups
    alls = r.groups.setdefault("all", _Group("all"))
    alls.children |= {n for n in groups if n != "all" and not any(n in g.children for g in groups.values())}
    order_of = _group_order(r)
    if order_of is None:
        return None
    depth, ancestors = order_of

    def order(name: str) -> tuple:
        prio = groups[name].vars.get("ansible_group_priority", 1)
        return (depth.get(name, 0), prio if isinstance(prio, int) else 1, name)

    result = {}
    for host in sorted(r.host_groups):
        direct = r.host_groups[host]
        member = set(direct).union(*(ancestors[d] for d in direct)) | {"all"}
        merged: dict[str, Any] = {}
        origin: dict[str, tuple] = {}
        for gname in sorted(member, key=order):
            merged.update(groups[gname].vars)
            origin.update(groups[gname].var_paths)
        merged.update(r.host_vars.get(host, {}))
        origin.update(r.host_var_paths.get(host, {}))
        result[host] = (tuple(sorted(member - {"all", "ungrouped"})), merged, origin)
    return result


def parse_inventory(file: str, raw: bytes,
                    key_dirs: tuple[str, ...] | None = None) -> tuple[Inventory | None, list[ValidationError]]:
    looks_ini = b"[" in raw[:4096] and bool(_INI_SECTION.search(raw[:65536].decode("utf-8", "replace")))
    ini_hint = ("this looks like an INI inventory; only YAML inventories are supported "
                "(convert with `ansible-inventory -i FILE --list --yaml`)")
    if raw.startswith(b"#!"):
        return None, [ValidationError(file, 1, "$", "the inventory starts with #!: Ansible would run an executable "
                                      "inventory as a script on the reconciler host; remove that line")]
    try:
        doc = parse_yaml(file, raw)
    except LoadFailed as e:
        if looks_ini and "invalid YAML" in e.error.message:
            return None, [ValidationError(file, e.error.line, "$", ini_hint)]
        return None, [e.error]
    if not isinstance(doc.data, dict):
        msg = ini_hint if looks_ini else "an inventory must be a mapping of group names (normally `all:`)"
        return None, [doc.error((), msg)]
    growth = alias_growth(doc, raw)
    if growth:
        return None, [ValidationError(doc.file, 1, "$", growth)]
    r = _Reader(doc, key_dirs_from_env() if key_dirs is None else key_dirs)
    _scan_jinja(doc, r.sink)
    if "plugin" in doc.data:
        r.err(("plugin",), "`plugin:` would make Ansible load that inventory plugin instead of reading this file; "
              "only plain YAML inventories are accepted")
    for name, data in doc.data.items():
        if name != "plugin":
            r.read_group(name, data, (name,), ())
    if r.structural:
        return None, r.sink.result()
    merged = _merge(r)
    if merged is None:
        return None, r.sink.result()
    hosts = {h: InventoryHost(name=h, groups=g, vars=v) for h, (g, v, _) in merged.items()}
    inv = Inventory(hosts=hosts)
    _check_netintent(r.sink, inv, {h: (r.host_paths.get(h, ()), o) for h, (_, _, o) in merged.items()})
    return inv, r.sink.result()


REQUIRED = {
    "hosts": ("netintent_hypervisor", "netintent_hypervisor_port"),
    "hypervisors": ("netintent_leaf", "netintent_leaf_port"),
    "switches": ("netintent_vtep", "netintent_asn"),
}


def _check_netintent(sink: FileErrors, inv: Inventory, where: dict[str, tuple[tuple, dict[str, tuple]]]) -> None:
    """Required variables, references between groups, ports and VTEPs used once (values were
    checked where they are defined)."""
    for name, host in sorted(inv.hosts.items()):
        for group, required in REQUIRED.items():
            if group in host.groups:
                for var in required:
                    if var not in host.vars:
                        sink.add(where[name][0], f"host {show(name)} of group {group} needs {var}")
    refs = (("hosts", "netintent_hypervisor", "hypervisors", "netintent_hypervisor_port"),
            ("hypervisors", "netintent_leaf", "switches", "netintent_leaf_port"))
    for group, ref, target, port_var in refs:
        used: dict[tuple, str] = {}
        for h in inv.group(group):
            ref_val, port = h.vars.get(ref), h.vars.get(port_var)
            if not isinstance(ref_val, str):
                continue
            hpath, origin = where[h.name]
            if not inv.in_group(ref_val, target):
                sink.add(origin.get(ref, hpath),
                         f"{ref} of host {show(h.name)} names {show(ref_val)}, which is not in group {target}")
            elif isinstance(port, str):
                other = used.setdefault((ref_val, port), h.name)
                if other != h.name:
                    sink.add(origin.get(port_var, hpath),
                             f"port {show(port)} of {show(ref_val)} is already used by host {show(other)}")
    vteps: dict[str, str] = {}
    for h in inv.group("switches"):
        v = h.vars.get("netintent_vtep")
        if isinstance(v, str) and vteps.setdefault(v, h.name) != h.name:
            hpath, origin = where[h.name]
            sink.add(origin.get("netintent_vtep", hpath),
                     f"netintent_vtep {show(v)} is already used by switch {show(vteps[v])}")
