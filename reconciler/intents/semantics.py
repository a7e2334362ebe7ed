"""Semantic checks across the whole intents repo (after each file passed its JSON Schema).

Contract: `check_semantics(config, inventory, apps, broken_names)` is pure and returns a list
of `ValidationError`s located through each app's `Doc`. `config`/`inventory` may be None
when they failed to load (checks that need them are skipped, their own errors are already
reported). `broken_names` are names of applications whose files failed the schema: references
to them are not reported as unknown (their file already has an error).

Checks, per application: subnet (valid, host bits zero, at most /30, unicast), gateway (inside,
not network/broadcast), instance addresses (valid, inside the subnet, not network/broadcast/
gateway), hosts in the inventory group `hosts`, port names and numbers unique per service,
identities (`spiffe://<trust_domain>/path`), exports name local services, policy rules name
known services/ports and only exported services of other apps, traffic names known services,
splits sum to 100 and name versions that have instances, no two (service, port) pairs give the
same nft set name (`nft_set_name`: nft identifiers have no `-`, it becomes `_`).
Across applications: names, VNIs, subnets (no overlap), addresses and identities unique;
one host interface belongs to one application; VLANs (explicit or derived) unique among the
applications present on the same leaf (a VLAN tag only means something on a leaf and the
hypervisors below it; 4094 VLANs could not serve 10,000 apps if they had to be global).
Presence follows compile/switch.py: instances below the leaf, or a policy flow with an app
that has some.
Against the inventory (what validates must not break the device or cut the reconciler off it):
no subnet holds a management address (`ansible_host`) or a VTEP (`netintent_vtep`); an
instance's host interface fits the host driver's address label (12 characters); its
hypervisor port is not the hypervisor's uplink; its hypervisor's leaf port is not a fabric
port of the leaf. These are reported at the instance (or subnet) that would cause the harm.
Every loop is over the input once (plus a sort): ~0.5 s for 10,000 apps.
"""
from __future__ import annotations

import bisect
import re
import socket
from dataclasses import dataclass
from typing import Iterable, NamedTuple

from reconciler.intents.loader import Doc, ValidationError, show
from reconciler.intents.models import Application, Inventory, RepoConfig, Service
from reconciler.names import RESERVED_IFNAMES

DEFAULT_INTERFACE = "eth1"
# IFNAMSIZ-1 = 15, less the `:ni` the host driver appends to the address label (drivers/ansible/host.py)
MAX_HOST_INTERFACE = 12
_BAD_SEGMENTS = frozenset(("", ".", ".."))


@dataclass(frozen=True)
class AppDoc:
    doc: Doc
    app: Application


class _Where(NamedTuple):
    doc: Doc
    path: tuple

    def ref(self) -> str:
        return f"{self.doc.file}:{self.doc.line_of(self.path)}"


_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_IPV4 = re.compile(rf"{_OCTET}\.{_OCTET}\.{_OCTET}\.{_OCTET}\Z")


def _ip(text: str) -> int | None:
    """Dotted-quad IPv4 address -> int; None unless canonical (no leading zeros, octets <= 255)."""
    if not _IPV4.match(text):
        return None
    return int.from_bytes(socket.inet_aton(text), "big")


def _dotted(value: int) -> str:
    return f"{value >> 24}.{value >> 16 & 255}.{value >> 8 & 255}.{value & 255}"


@dataclass(frozen=True)
class _Net:
    start: int
    end: int
    prefix: int

    def __str__(self) -> str:
        return f"{_dotted(self.start)}/{self.prefix}"

    def __contains__(self, addr: int) -> bool:
        return self.start <= addr <= self.end


# Ranges no application segment may touch: "this network", loopback, link-local, multicast, reserved.
_FORBIDDEN = [(_ip(a), _ip(b)) for a, b in (("0.0.0.0", "0.255.255.255"), ("127.0.0.0", "127.255.255.255"),
                                              ("169.254.0.0", "169.254.255.255"), ("224.0.0.0", "255.255.255.255"))]


def _touches_forbidden(start: int, end: int) -> bool:
    for lo, hi in _FORBIDDEN:
        if start <= hi and lo <= end:  # type: ignore[operator]
            return True
    return False


def _net(text: str) -> tuple[_Net | None, str]:
    addr_s, _, plen_s = text.partition("/")
    addr = _ip(addr_s)
    if addr is None or not plen_s.isdigit() or not plen_s.isascii() or int(plen_s) > 32 \
            or (len(plen_s) > 1 and plen_s[0] == "0"):
        return None, f"invalid IPv4 subnet {show(text)}"
    plen = int(plen_s)
    mask = (0xFFFFFFFF << (32 - plen)) & 0xFFFFFFFF
    net = _Net(addr & mask, (addr & mask) | (~mask & 0xFFFFFFFF), plen)
    if net.start != addr:
        return None, f"subnet {show(text)} has host bits set; did you mean {net}?"
    if plen > 30:
        return None, f"subnet {show(text)} is too small: at most /30 (room for a gateway and instances)"
    if plen < 8 or _touches_forbidden(net.start, net.end):
        return None, (f"subnet {show(text)} is not a unicast range usable for workloads "
                      "(loopback, link-local, multicast, reserved or larger than /8)")
    return net, ""


@dataclass(frozen=True)
class _Local:
    """What one application says on its own: its errors, and the facts the cross checks need."""

    errors: tuple[ValidationError, ...]
    net: _Net | None
    addrs: tuple[tuple[int, tuple, str], ...]        # (address, path, text) of valid addresses
    idents: tuple[tuple[str, tuple], ...]            # (identity, path) per service
    insts: tuple[tuple[str, str | None, tuple], ...]  # (host, interface override, path of host)


_LOCAL_CACHE: dict[tuple[int, str | None], tuple[AppDoc, _Local]] = {}
_LOCAL_CACHE_SIZE = 50_000


def _local(a: AppDoc, td: str | None) -> _Local:
    """Checks of one application alone (pure in (app, trust domain)), memoised per AppDoc:
    the loader reuses AppDoc objects for unchanged files, so re-validation skips them."""
    key = (id(a), td)
    hit = _LOCAL_CACHE.get(key)
    if hit is not None and hit[0] is a:
        return hit[1]
    out = _local_uncached(a, td)
    if len(_LOCAL_CACHE) >= _LOCAL_CACHE_SIZE:
        _LOCAL_CACHE.pop(next(iter(_LOCAL_CACHE)), None)
    _LOCAL_CACHE[key] = (a, out)
    return out


def _local_uncached(a: AppDoc, td: str | None) -> _Local:
    """The single-application checks, one step per part of the spec."""
    out = _Collect(a.doc)
    net, gateway = _check_segment(a.app, out)
    for sname, svc in a.app.spec.services.items():
        base = ("spec", "services", sname)
        _check_identity(a.app, sname, svc, base, td, out)
        _check_ports(sname, svc, base, out)
        _check_instances(svc, base, net, gateway, out)
    _check_nft_names(a.app, out)
    _check_references(a.app, out)
    _check_traffic(a.app, out)
    return _Local(tuple(out.errors), net, tuple(out.addrs), tuple(out.idents), tuple(out.insts))


class _Collect:
    """What the steps of `_local_uncached` find: errors (located in `doc`) and facts."""

    def __init__(self, doc: Doc):
        self.doc = doc
        self.errors: list[ValidationError] = []
        self.addrs: list[tuple[int, tuple, str]] = []
        self.idents: list[tuple[str, tuple]] = []
        self.insts: list[tuple[str, str | None, tuple]] = []

    def err(self, path: tuple, message: str) -> None:
        self.errors.append(self.doc.error(path, message))


def _check_segment(app: Application, out: _Collect) -> tuple[_Net | None, int | None]:
    """Subnet and gateway -> (network, gateway address); the gateway defaults to the first host."""
    seg = app.spec.segment
    net, problem = _net(seg.subnet)
    if net is None:
        out.err(("spec", "segment", "subnet"), problem)
        return None, None
    if seg.gateway is None:
        return net, net.start + 1
    gp = ("spec", "segment", "gateway")
    gateway = _ip(seg.gateway)
    if gateway is None:
        out.err(gp, f"invalid IPv4 address {show(seg.gateway)}")
    elif gateway not in net:
        out.err(gp, f"gateway {seg.gateway} is outside the subnet {net}")
    elif gateway in (net.start, net.end):
        which = "network" if gateway == net.start else "broadcast"
        out.err(gp, f"gateway {seg.gateway} is the {which} address of {net}")
    return net, gateway


def _check_identity(app: Application, sname: str, svc: Service, base: tuple, td: str | None, out: _Collect) -> None:
    if svc.identity is None:
        if td is not None:
            out.idents.append((app.identity_of(sname, td), base))
        return
    ipath = base + ("identity",)
    domain, _, tail = svc.identity[len("spiffe://"):].partition("/")
    if _BAD_SEGMENTS.intersection(tail.split("/")):
        out.err(ipath, f"malformed identity {show(svc.identity)}: path segments may not be empty, '.' or '..'")
    elif td is not None and domain != td:
        out.err(ipath, f"identity {show(svc.identity)} is outside the trust domain {show(td)} of reconciler.yaml")
    out.idents.append((svc.identity, ipath))


def _check_ports(sname: str, svc: Service, base: tuple, out: _Collect) -> None:
    names: dict[str, int] = {}
    numbers: dict[tuple[int, str], int] = {}
    for i, port in enumerate(svc.ports):
        pp = base + ("ports", i)
        if names.setdefault(port.name, i) != i:
            out.err(pp + ("name",), f"port name {show(port.name)} is used twice in service {show(sname)}")
        if numbers.setdefault((port.port, port.protocol), i) != i:
            out.err(pp + ("port",), f"port {port.port}/{port.protocol} is used twice in service {show(sname)}")


def _check_instances(svc: Service, base: tuple, net: _Net | None, gateway: int | None, out: _Collect) -> None:
    for i, inst in enumerate(svc.instances):
        ip_ = base + ("instances", i)
        out.insts.append((inst.host, inst.interface, ip_ + ("host",)))
        if not inst.address:  # left to IPAM (reconciler.ipam), which could not allocate: it said why
            continue
        ap = ip_ + ("address",)
        addr = _ip(inst.address)
        if addr is None:
            out.err(ap, f"invalid IPv4 address {show(inst.address)}")
            continue
        out.addrs.append((addr, ap, inst.address))
        if net is None:
            continue
        if addr not in net:
            out.err(ap, f"address {inst.address} is outside the application's subnet {net}")
        elif addr == net.start or addr == net.end:
            which = "network" if addr == net.start else "broadcast"
            out.err(ap, f"address {inst.address} is the {which} address of {net}")
        elif addr == gateway:
            out.err(ap, f"address {inst.address} is the segment's gateway")


def nft_ident(name: str) -> str:
    """An intent name (`[a-z][a-z0-9-]*`) as an nft identifier: nft(8) documents letters, digits,
    `_`, `.`, `/` and `\\` (Debian's nft 1.0.6 happens to lex `-` too; a documented grammar is the
    contract), so `-` becomes `_`. Intent names have no `_`, so this alone is one-to-one."""
    return name.replace("-", "_")


def svc_set_name(service: str) -> str:
    """The host layer's nft set of a local service's instance addresses (compile/host.py)."""
    return f"svc_{nft_ident(service)}"


def nft_set_name(service: str, port: str) -> str:
    """The host layer's nft set of allowed callers of `service` on `port` (compile/host.py). Not
    one-to-one (`pay-api`+`http` and `pay`+`api-http`): `_check_nft_names` refuses such pairs."""
    return f"allow_{nft_ident(service)}_{nft_ident(port)}"


def _check_nft_names(app: Application, out: _Collect) -> None:
    """Two (service, port) pairs whose nft set names coincide once `-` became `_` (`pay-api`/`http`
    and `pay`/`api-http`) would share one set on a host carrying both: refuse the later one."""
    seen: dict[str, tuple[str, str, tuple]] = {}
    for sname, svc in app.spec.services.items():
        for i, port in enumerate(svc.ports):
            path = ("spec", "services", sname, "ports", i, "name")
            set_name = nft_set_name(sname, port.name)
            first = seen.setdefault(set_name, (sname, port.name, path))
            if first[0] != sname:
                out.err(path, f"service {show(sname)} port {show(port.name)} and service {show(first[0])} port "
                        f"{show(first[1])} (line {out.doc.line_of(first[2])}) both give the nft set name "
                        f"{set_name}; rename one (nft names have no '-')")


def _check_references(app: Application, out: _Collect) -> None:
    """Exports and policy `from` name local services (`to` needs the other apps: `_Checker`)."""
    for i, name in enumerate(app.spec.exports):
        if name not in app.spec.services:
            out.err(("spec", "exports", i), f"exports unknown service {show(name)}")
    for i, rule in enumerate(app.spec.policy.allow):
        if rule.from_ not in app.spec.services:
            out.err(("spec", "policy", "allow", i, "from"),
                    f"unknown service {show(rule.from_)} in application {show(app.name)}")


def _check_traffic(app: Application, out: _Collect) -> None:
    for sname, tr in app.spec.traffic.items():
        tp = ("spec", "traffic", sname)
        tsvc = app.spec.services.get(sname)
        if tsvc is None:
            out.err(tp, f"traffic for unknown service {show(sname)}")
            continue
        if tr.split is None:
            continue
        total = sum(tr.split.values())
        if total != 100:
            out.err(tp + ("split",), f"split weights sum to {total}, not 100")
        versions = {inst.version for inst in tsvc.instances}
        for version in tr.split:
            if version not in versions:
                have = ", ".join(sorted(versions)) or "none"
                out.err(tp + ("split", version),
                        f"version {show(version)} has no instance of service {show(sname)} (versions: {have})")


class _Checker:
    def __init__(self, config: RepoConfig | None, inventory: Inventory | None, apps: list[AppDoc], broken: set[str]):
        self.config, self.inventory, self.broken = config, inventory, broken
        self.apps = sorted(apps, key=lambda a: a.doc.file)
        self.by_name: dict[str, AppDoc] = {}
        self.errors: list[ValidationError] = []
        self.networks: list[tuple[_Net, AppDoc]] = []
        self._host_leaf: dict[str, str | None] = {}
        self._wiring: dict[tuple[str, str | None], _Wiring] = {}
        # members of group `hosts` -> their default segment interface
        self.host_iface: dict[str, str] = {} if inventory is None else {
            n: str(h.var("netintent_interface", DEFAULT_INTERFACE))
            for n, h in inventory.hosts.items() if "hosts" in h.groups}
        self.guarded = _guarded_addresses(inventory)

    def err(self, doc: Doc, path: tuple, message: str) -> None:
        self.errors.append(doc.error(path, message))

    def run(self) -> list[ValidationError]:
        for a in self.apps:
            first = self.by_name.setdefault(a.app.name, a)
            if first is not a:
                self.err(a.doc, ("metadata", "name"), f"application {show(a.app.name)} is already defined in "
                         f"{_Where(first.doc, ('metadata', 'name')).ref()}")
        td = self.config.trust_domain if self.config is not None else None
        addresses: dict[int, _Where] = {}
        identities: dict[str, _Where] = {}
        ifaces: dict[tuple[str, str], tuple[str, _Where]] = {}
        for a in self.apps:
            loc = _local(a, td)
            doc = a.doc
            self.errors.extend(loc.errors)
            if loc.net is not None:
                self.networks.append((loc.net, a))
            for addr, path, text in loc.addrs:
                w = addresses.get(addr)
                if w is None:
                    addresses[addr] = _Where(doc, path)
                elif w.doc is not doc or w.path != path:
                    self.err(doc, path, f"address {text} is already used at {w.ref()}")
            for ident, path in loc.idents:
                w = identities.get(ident)
                if w is None:
                    identities[ident] = _Where(doc, path)
                elif w.doc is not doc or w.path[:3] != path[:3]:
                    self.err(doc, path, f"identity {show(ident)} is already used by the service at {w.ref()}")
            if self.inventory is not None:
                self.instance_hosts(a, loc, ifaces)
        for a in self.apps:
            self.policy_targets(a)
        self.unique_numbers()
        self.overlaps()
        self.guarded_overlaps()
        return self.errors

    def instance_hosts(self, a: AppDoc, loc: _Local, ifaces: dict[tuple[str, str], tuple[str, _Where]]) -> None:
        """Each instance's host: in group `hosts`, its interface and its hypervisor port free for this
        app (one VLAN tag per access port), its wiring harmless."""
        assert self.inventory is not None
        for host, override, path in loc.insts:
            iface = self.host_iface.get(host)
            if iface is None:
                where = "is not in the inventory" if host not in self.inventory.hosts \
                    else "is in the inventory but not in group hosts"
                self.err(a.doc, path, f"unknown host {show(host)}: {where}")
                continue
            key = (host, override or iface)
            seen = ifaces.get(key)
            if seen is None:
                ifaces[key] = (a.app.name, _Where(a.doc, path))
            elif seen[0] != a.app.name:
                self.err(a.doc, path, f"interface {key[1]} of host {host} already carries application "
                         f"{show(seen[0])} ({seen[1].ref()}); one host interface belongs to one application segment")
                continue
            wiring = self.wiring(host, override)
            for problem in wiring.problems:
                self.err(a.doc, path, problem)
            if wiring.port is None:
                continue
            hv, port = wiring.port
            seen = ifaces.get((f"{hv}:", port))  # host names have no ':', so no clash with (host, iface)
            if seen is None:
                ifaces[(f"{hv}:", port)] = (a.app.name, _Where(a.doc, path))
            elif seen[0] != a.app.name:
                self.err(a.doc, path, f"hypervisor port {port} of {hv} (facing host {host}) already carries "
                         f"application {show(seen[0])} ({seen[1].ref()}); an access port has one VLAN: give the "
                         "host interface its own port in netintent_hypervisor_ports")

    def wiring(self, host: str, override: str | None) -> _Wiring:
        """What compiling an instance on `host` (interface `override`) would break, memoised:
        the loopback as segment interface; an address label `<iface>:ni` longer than the kernel's
        15 characters; an access port (VLAN tag) on the hypervisor's uplink; a VLAN trunk on a
        leaf's BGP fabric port. Also the (hypervisor, port) the segment enters by."""
        key = (host, override)
        hit = self._wiring.get(key)
        if hit is None:
            hit = self._wiring[key] = _wiring_problems(self.inventory, host, override)  # type: ignore[arg-type]
        return hit

    def policy_targets(self, a: AppDoc) -> None:
        """`to` of each allow rule: an existing app, an existing service, exported if remote, known ports."""
        app, doc = a.app, a.doc
        for i, rule in enumerate(app.spec.policy.allow):
            rp = ("spec", "policy", "allow", i)
            target_app, _, target_svc = rule.to.rpartition("/")
            target_app = target_app or app.name
            other = self.by_name.get(target_app)
            if other is None:
                if target_app not in self.broken:
                    self.err(doc, rp + ("to",), f"unknown application {show(target_app)}")
                continue
            svc = other.app.spec.services.get(target_svc)
            if svc is None:
                self.err(doc, rp + ("to",), f"unknown service {show(target_svc)} in application {show(target_app)}")
                continue
            if other is not a and target_svc not in other.app.spec.exports:
                self.err(doc, rp + ("to",), f"service {show(target_svc)} of application {show(target_app)} "
                         f"is not exported (add it to spec.exports of {other.doc.file})")
            for j, pname in enumerate(rule.ports or ()):
                if svc.port(pname) is None:
                    have = ", ".join(p.name for p in svc.ports) or "none"
                    self.err(doc, rp + ("ports", j),
                             f"service {show(rule.to)} has no port {show(pname)} (ports: {have})")

    # -- across applications --------------------------------------------------------
    def unique_numbers(self) -> None:
        vnis: dict[int, AppDoc] = {}
        for a in self.apps:
            seg = a.app.spec.segment
            if not seg.vni:  # left to IPAM, which could not allocate: it said why
                continue
            first = vnis.setdefault(seg.vni, a)
            if first is not a:
                self.err(a.doc, ("spec", "segment", "vni"),
                         f"VNI {seg.vni} is already used by application {show(first.app.name)} ({first.doc.file})")
        if self.inventory is None:
            return
        # A VLAN tag is local to a leaf and the hypervisors below it: two applications
        # present on the same leaf (hosts below it, or a policy flow with an app that has)
        # need different VLANs. Same presence rule as compile/switch.py.
        own = {a.app.name: self.leaves_of(a.app) for a in self.apps}
        present = {name: set(leaves) for name, leaves in own.items()}
        for a in self.apps:
            name = a.app.name
            for rule in a.app.spec.policy.allow:
                peer = rule.to.rpartition("/")[0] or name
                if peer != name and peer in own:
                    present[peer] |= own[name]
                    present[name] |= own[peer]
        used: dict[tuple[str, int], AppDoc] = {}
        blamed: set[int] = set()
        for a in self.apps:
            if self.by_name.get(a.app.name) is not a or not a.app.spec.segment.vni:
                continue  # duplicate name, already reported; or no VNI (IPAM reported why)
            for leaf in sorted(present[a.app.name]):
                first = used.setdefault((leaf, a.app.spec.segment.vlan_id), a)
                if first is a:
                    continue
                # Blame the app whose VLAN was derived (the one to fix) when only one was.
                only_first_derived = first.app.spec.segment.vlan is None and a.app.spec.segment.vlan is not None
                culprit, other = (first, a) if only_first_derived else (a, first)
                if id(culprit) in blamed:
                    continue
                blamed.add(id(culprit))
                seg = culprit.app.spec.segment
                if seg.vlan is None:
                    self.err(culprit.doc, ("spec", "segment", "vni"),
                             f"VLAN {seg.vlan_id} derived from VNI {seg.vni} is already used on leaf {leaf} by "
                             f"application {show(other.app.name)} ({other.doc.file}); set spec.segment.vlan explicitly")
                else:
                    self.err(culprit.doc, ("spec", "segment", "vlan"),
                             f"VLAN {seg.vlan_id} is already used on leaf {leaf} by application "
                             f"{show(other.app.name)} ({other.doc.file})")

    def leaves_of(self, app: Application) -> frozenset[str]:
        """Leaves above the hosts of the app's instances (host -> hypervisor -> leaf)."""
        out: set[str] = set()
        for svc in app.spec.services.values():
            for inst in svc.instances:
                if inst.host not in self._host_leaf:
                    self._host_leaf[inst.host] = self._leaf_of(inst.host)
                leaf = self._host_leaf[inst.host]
                if leaf is not None:
                    out.add(leaf)
        return frozenset(out)

    def _leaf_of(self, host: str) -> str | None:
        inv = self.inventory
        assert inv is not None
        h = inv.hosts.get(host)
        hv = inv.hosts.get(str(h.var("netintent_hypervisor"))) if h is not None else None
        leaf = hv.var("netintent_leaf") if hv is not None else None
        return leaf if isinstance(leaf, str) else None

    def overlaps(self) -> None:
        nets = sorted(self.networks, key=lambda t: (t[0].start, -t[0].end, t[1].doc.file))
        cur: tuple[_Net, AppDoc] | None = None
        for net, a in nets:
            if cur is not None and net.start <= cur[0].end:
                self.err(a.doc, ("spec", "segment", "subnet"),
                         f"subnet {net} overlaps {cur[0]} of application {show(cur[1].app.name)} ({cur[1].doc.file})")
            if cur is None or net.end > cur[0].end:
                cur = (net, a)

    def guarded_overlaps(self) -> None:
        """No subnet may hold an address the reconciler or the fabric lives on (`_guarded_addresses`)."""
        if not self.guarded:
            return
        keys = [g[0] for g in self.guarded]
        for net, a in self.networks:
            i = bisect.bisect_left(keys, net.start)
            inside = self.guarded[i:bisect.bisect_right(keys, net.end)]
            if not inside:
                continue
            more = f" (and {len(inside) - 1} more)" if len(inside) > 1 else ""
            self.err(a.doc, ("spec", "segment", "subnet"), f"subnet {net} holds {inside[0][1]}{more}: "
                     f"{inside[0][2]}; choose a subnet outside the management network and the underlay")


_HARM_MGMT = ("hosts would route the reconciler's SSH replies into the application's segment (via its gateway)")
_HARM_VTEP = ("a leaf's anycast gateway would put the VTEP addresses of the fabric behind the application's segment, "
              "cutting VXLAN")


def _guarded_addresses(inventory: Inventory | None) -> list[tuple[int, str, str]]:
    """Sorted (address, what, why) of the addresses no application subnet may hold: every
    inventory host's management address (`ansible_host` when it is an IPv4 address: a peer
    subnet route via an app gateway, or the app's own connected route, would take the
    reconciler's SSH) and every switch's VTEP (the routed underlay)."""
    if inventory is None:
        return []
    out: list[tuple[int, str, str]] = []
    for name, h in inventory.hosts.items():
        mgmt = h.var("ansible_host")
        addr = _ip(mgmt) if isinstance(mgmt, str) else None
        if addr is not None:
            out.append((addr, f"the management address {mgmt} of host {show(name)} (ansible_host)", _HARM_MGMT))
        vtep = h.var("netintent_vtep") if "switches" in h.groups else None
        addr = _ip(vtep) if isinstance(vtep, str) else None
        if addr is not None:
            out.append((addr, f"the VTEP address {vtep} of switch {show(name)} (netintent_vtep)", _HARM_VTEP))
    out.sort()
    return out


class _Wiring(NamedTuple):
    problems: tuple[str, ...]
    port: tuple[str, str] | None  # (hypervisor, port) the instance's segment enters OVS by


def _wiring_problems(inv: Inventory, host: str, override: str | None) -> _Wiring:
    """Same lookups as compile/host.py (interface), compile/hypervisor.py (`hypervisor_port`) and
    compile/switch.py (the hypervisor's leaf port)."""
    h = inv.hosts[host]
    out = []
    iface = override or str(h.var("netintent_interface", DEFAULT_INTERFACE))
    if iface == "lo":
        out.append(f"interface lo of host {show(host)} is the loopback: an application segment needs the "
                   "host's link toward its hypervisor (the host driver also never reads addresses on lo)")
    if iface in RESERVED_IFNAMES:
        out.append(f"interface {show(iface)} of host {show(host)} is a name the kernel refuses for an interface "
                   f"(it names the sysctl directory net.ipv4.conf.{iface})")
    if len(iface) > MAX_HOST_INTERFACE:
        origin = "" if override else " (netintent_interface)"
        out.append(f"interface {show(iface)} of host {show(host)}{origin} is longer than "
                   f"{MAX_HOST_INTERFACE} characters: the host driver labels its addresses `<interface>:ni`, "
                   f"and the kernel allows 15")
    hv_name = h.var("netintent_hypervisor")
    hv = inv.hosts.get(hv_name) if isinstance(hv_name, str) else None
    if hv is None:
        return _Wiring(tuple(out), None)
    ports = h.var("netintent_hypervisor_ports")
    port = ports[override] if override and isinstance(ports, dict) and override in ports \
        else h.var("netintent_hypervisor_port")
    uplink = hv.var("netintent_uplink", DEFAULT_INTERFACE)
    if port is not None and port == uplink:
        out.append(f"hypervisor port {show(port)} of host {show(host)} is the uplink of hypervisor {show(hv_name)} "
                   f"(netintent_uplink): tagging it as the application's access port would cut {hv_name} off its leaf")
    leaf_name, leaf_port = hv.var("netintent_leaf"), hv.var("netintent_leaf_port")
    leaf = inv.hosts.get(leaf_name) if isinstance(leaf_name, str) else None
    fabric = leaf.var("netintent_fabric_ports") if leaf is not None else None
    if isinstance(fabric, list) and leaf_port in fabric:
        out.append(f"leaf port {show(leaf_port)} of hypervisor {show(hv_name)} is a fabric port of switch "
                   f"{show(leaf_name)} (netintent_fabric_ports): a VLAN trunk there would break its BGP underlay")
    return _Wiring(tuple(out), (str(hv_name), str(port)) if port is not None else None)


def check_semantics(config: RepoConfig | None, inventory: Inventory | None, apps: Iterable[AppDoc],
                    broken_names: set[str] = frozenset()) -> list[ValidationError]:  # type: ignore[assignment]
    return _Checker(config, inventory, list(apps), set(broken_names)).run()
