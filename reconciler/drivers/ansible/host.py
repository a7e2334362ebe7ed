"""Host driver: instance addresses, routes and nftables on workload hosts, via ansible-runner.

Contract (the host layer in registry.FACTORIES; see base.py for the batched Protocol):
- observe: one `observe.yml` run for all targets (`ip -j -4 addr`, `ip -j -4 route`,
  `nft -j list ruleset` in one `raw` command per host) parsed into compile/host.py's shapes:
    address `<iface>:<ip>` {interface, address, prefixlen}; owned when its label is
            `<iface>:ni` (the reconciler's mark); other IPv4 addresses (not on lo) are reported
            with owned=False. App: the owned table whose `local` set holds the address.
    route   `<cidr>` {destination, gateway, interface}; owned when `proto 78` (0x4E, "N");
            other non-kernel routes are reported owned=False. App: the owned address whose
            subnet holds the gateway.
    nft-set / nft-table: owned: the inet tables named `netintent_*` (see nftables.py); every other
            table (any family) with owned=False, for verification (nft_foreign.py; never touched).
- apply: one `apply_host.yml` run for the targets with writes, one module call per host
  (playbooks/library/netintent_steps.py): `ip -force -batch -` (route
  deletes, address deletes, address replaces, route replaces) and ONE atomic `nft -f -` script
  touching only owned tables (element-only changes as `add/delete element`). Owned resources no
  longer desired are removed only when the plan says `prune`. A target with nothing to change
  is not contacted (zero writes). The same module call observes again and the result is APPLIED
  only if every resource in scope now matches (else FAILED with `failed_keys`); that
  observation is kept in `driver.verified[target]`.
- workload files (xds-bootstrap, trust-bundle, workload-cert; drivers/ansible/files.py): observed
  in a 4th section, installed by the apply's `files` step before the verify observe.
"""
from __future__ import annotations

import ipaddress
import json
from typing import Any, Iterable

from reconciler.drivers.ansible import files
from reconciler.drivers.ansible.driver import SEPARATOR, AnsibleDriver, Rendered, plan_scope
from reconciler.drivers.ansible.nft_foreign import foreign_tables
from reconciler.drivers.ansible.nftables import parse_ruleset, plan_script
from reconciler.model import Layer, Resource, ResourceKey
from reconciler.names import is_interface_name

ROUTE_PROTO = "78"          # rtnetlink protocol number marking the reconciler's routes
LABEL_SUFFIX = ":ni"        # address label suffix marking the reconciler's addresses
MAX_IFACE = 12              # + ":ni" fits IFNAMSIZ-1


def _iface(name: Any) -> str:
    if not is_interface_name(name, MAX_IFACE):
        raise ValueError(f"invalid interface name {name!r} (1-12 chars [A-Za-z0-9_.-], not all/default)")
    return name


def _ip(a: Any) -> str:
    try:
        return str(ipaddress.IPv4Address(str(a)))
    except ValueError:
        raise ValueError(f"invalid IPv4 address {a!r}") from None


def _net(n: Any) -> str:
    try:
        return str(ipaddress.IPv4Network(str(n)))
    except ValueError:
        raise ValueError(f"invalid IPv4 destination {n!r}") from None


def parse_host(target: str, stdout: str) -> list[Resource]:
    parts = stdout.split(SEPARATOR)
    if len(parts) not in (3, 4):
        raise ValueError("observe output has not 3 or 4 sections")
    workload = files.parse(target, parts.pop()) if len(parts) == 4 else []  # xDS bootstrap, certs
    links, routes, ruleset = (json.loads(p) if p.strip() else [] for p in parts)
    tables, sets = parse_ruleset(ruleset or {}, target)
    local_app = {}
    for s in sets:
        if s.spec["name"] == "local":
            for e in s.spec["elements"]:
                local_app[e] = s.app
    out: list[Resource] = []
    owned_nets: list[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, str]] = []
    for link in links:
        ifname = link.get("ifname", "")
        if ifname == "lo":
            continue
        for a in link.get("addr_info", ()):
            if a.get("family") != "inet":
                continue
            owned = a.get("label") == f"{ifname}{LABEL_SUFFIX}"
            app = local_app.get(a["local"], "") if owned else ""
            if owned:
                owned_nets.append((ipaddress.ip_network(f"{a['local']}/{a['prefixlen']}", strict=False), app))
            out.append(Resource(ResourceKey(Layer.HOST, target, "address", f"{ifname}:{a['local']}"),
                                {"interface": ifname, "address": a["local"], "prefixlen": a["prefixlen"]},
                                app, owned))
    for r in routes:
        proto = str(r.get("protocol", ""))
        if proto == "kernel" or "gateway" not in r or r.get("dst") in (None, "default"):
            continue
        dst = _net(r["dst"] if "/" in r["dst"] else r["dst"] + "/32")
        owned = proto == ROUTE_PROTO
        gw = ipaddress.ip_address(r["gateway"])
        app = next((a for net, a in owned_nets if gw in net), "") if owned else ""
        out.append(Resource(ResourceKey(Layer.HOST, target, "route", dst),
                            {"destination": dst, "gateway": r["gateway"], "interface": r.get("dev", "")},
                            app, owned))
    return out + tables + sets + workload + foreign_tables(ruleset or {}, target)   # owned=False: never touched


def _addr_line(verb: str, spec: Any) -> str:
    ifc = _iface(spec["interface"])
    plen = spec["prefixlen"]
    if not isinstance(plen, int) or not 0 <= plen <= 32:
        raise ValueError(f"invalid prefix length {plen!r}")
    line = f"address {verb} {_ip(spec['address'])}/{plen} dev {ifc}"
    return line + (f" label {ifc}{LABEL_SUFFIX}" if verb != "del" else "")


def _route_line(verb: str, spec: Any) -> str:
    line = f"route {verb} {_net(spec['destination'])} via {_ip(spec['gateway'])} dev {_iface(spec['interface'])}"
    return line + f" proto {ROUTE_PROTO}"


def render_ip(desired: Iterable[Resource], observed: Iterable[Resource], prune: bool) -> tuple[list[str], list[str]]:
    """`ip -batch` lines (ordered: route del, addr del, addr replace, route replace) and details."""
    d = {r.key: r for r in desired if r.key.kind in ("address", "route")}
    o = {r.key: r for r in observed if r.key.kind in ("address", "route")}
    rdel: list[str] = []
    adel: list[str] = []
    aadd: list[str] = []
    radd: list[str] = []
    details: list[str] = []
    for key in sorted(d):
        want, have = d[key], o.get(key)
        if have is not None and have.owned and have.spec == want.spec:
            continue
        if key.kind == "address":
            if have is not None:  # unowned (adopt: re-add with our label) or different prefix
                adel.append(_addr_line("del", have.spec))
            aadd.append(_addr_line("replace", want.spec))
        else:
            radd.append(_route_line("replace", want.spec))
        details.append(f"{'update' if have is not None else 'create'} {key.kind} {key.name}")
    for key in reversed(list(o)):  # observed order is the kernel's: secondaries after primaries
        have = o[key]
        if not have.owned or key in d:
            continue
        if not prune:
            details.append(f"{key.kind} {key.name}: not desired, kept (prune off)")
            continue
        (adel if key.kind == "address" else rdel).append(
            _addr_line("del", have.spec) if key.kind == "address" else _route_line("del", have.spec))
        details.append(f"delete {key.kind} {key.name} (prune)")
    return sorted(rdel) + adel + aadd + radd, details


class HostDriver(AnsibleDriver):
    layer = Layer.HOST
    apply_files = ("ip.batch", "rules.nft", "workload.json", "installer.py")
    apply_playbook = "apply_host.yml"
    soft_tasks = ("ip",)

    def parse(self, target: str, stdout: str) -> list[Resource]:
        return parse_host(target, stdout)

    def render(self, plan: Any) -> Rendered:
        scope = plan_scope(plan)
        desired, observed = list(plan.desired), [r for r in plan.observed]
        if scope is not None:
            tables = {k.name.split("/")[0] for k in scope if k.kind in ("nft-table", "nft-set")}
            def keep(r: Resource) -> bool:
                if r.key.kind in ("nft-table", "nft-set"):
                    return r.key.name.split("/")[0] in tables
                return r.key in scope
            desired, observed = [r for r in desired if keep(r)], [r for r in observed if keep(r)]
        lines, details = render_ip(desired, observed, plan.prune)
        nft = plan_script([r for r in desired if r.key.kind.startswith("nft-")],
                          [r for r in observed if r.key.kind.startswith("nft-")], plan.prune)
        wf = files.render(plan.desired, desired, observed, plan.prune)
        out = Rendered(details=details + nft.details + wf.details, writes=len(lines) + nft.writes + wf.writes)
        if wf.bundle:
            out.files["workload.json"] = wf.bundle
            out.files["installer.py"] = files.INSTALLER
        if lines:
            out.files["ip.batch"] = "\n".join(lines) + "\n"
            out.hostvars["ip"] = True
        if nft.script:
            out.files["rules.nft"] = nft.script
            out.hostvars["nft"] = True
        return out

    def prunable(self, resource: Resource) -> bool:
        return True


def make_host_driver(**settings: Any) -> HostDriver:
    return HostDriver(**settings)
