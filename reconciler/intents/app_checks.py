"""Checks of one application on its own: its segment, identities, ports, instances, nft set
names, references to its own services, and traffic splits.

Contract: `app_facts(app_doc, trust_domain)` is pure in its inputs and memoised per `AppDoc`
object (the loader reuses AppDoc objects for unchanged files, so re-validation skips them). It
returns the app's own errors, located through its `Doc`, and the facts the checks across
applications need (reconciler.intents.semantics): subnet, addresses, identities, instance hosts.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from reconciler.intents.addresses import Net, parse_ip, parse_subnet
from reconciler.intents.loader import Doc, ValidationError, show
from reconciler.intents.models import Application, Service
from reconciler.names import nft_set_name

_BAD_SEGMENTS = frozenset(("", ".", ".."))


@dataclass(frozen=True)
class AppDoc:
    doc: Doc
    app: Application


class Where(NamedTuple):
    doc: Doc
    path: tuple

    def ref(self) -> str:
        return f"{self.doc.file}:{self.doc.line_of(self.path)}"


@dataclass(frozen=True)
class AppFacts:
    """What one application says on its own: its errors, and the facts the cross checks need."""

    errors: tuple[ValidationError, ...]
    net: Net | None
    addrs: tuple[tuple[int, tuple, str], ...]        # (address, path, text) of valid addresses
    idents: tuple[tuple[str, tuple], ...]            # (identity, path) per service
    insts: tuple[tuple[str, str | None, tuple], ...]  # (host, interface override, path of host)


_FACTS_CACHE: dict[tuple[int, str | None], tuple[AppDoc, AppFacts]] = {}
_FACTS_CACHE_SIZE = 50_000


def app_facts(a: AppDoc, td: str | None) -> AppFacts:
    """Checks of one application alone (pure in (app, trust domain)), memoised per AppDoc:
    the loader reuses AppDoc objects for unchanged files, so re-validation skips them."""
    key = (id(a), td)
    hit = _FACTS_CACHE.get(key)
    if hit is not None and hit[0] is a:
        return hit[1]
    out = _app_facts_uncached(a, td)
    if len(_FACTS_CACHE) >= _FACTS_CACHE_SIZE:
        _FACTS_CACHE.pop(next(iter(_FACTS_CACHE)), None)
    _FACTS_CACHE[key] = (a, out)
    return out


def _app_facts_uncached(a: AppDoc, td: str | None) -> AppFacts:
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
    return AppFacts(tuple(out.errors), net, tuple(out.addrs), tuple(out.idents), tuple(out.insts))


class _Collect:
    """What the steps of `_app_facts_uncached` find: errors (located in `doc`) and facts."""

    def __init__(self, doc: Doc):
        self.doc = doc
        self.errors: list[ValidationError] = []
        self.addrs: list[tuple[int, tuple, str]] = []
        self.idents: list[tuple[str, tuple]] = []
        self.insts: list[tuple[str, str | None, tuple]] = []

    def err(self, path: tuple, message: str) -> None:
        self.errors.append(self.doc.error(path, message))


def _check_segment(app: Application, out: _Collect) -> tuple[Net | None, int | None]:
    """Subnet and gateway -> (network, gateway address); the gateway defaults to the first host."""
    seg = app.spec.segment
    net, problem = parse_subnet(seg.subnet)
    if net is None:
        out.err(("spec", "segment", "subnet"), problem)
        return None, None
    if seg.gateway is None:
        return net, net.start + 1
    gp = ("spec", "segment", "gateway")
    gateway = parse_ip(seg.gateway)
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


def _check_instances(svc: Service, base: tuple, net: Net | None, gateway: int | None, out: _Collect) -> None:
    for i, inst in enumerate(svc.instances):
        ip_ = base + ("instances", i)
        out.insts.append((inst.host, inst.interface, ip_ + ("host",)))
        if not inst.address:  # left to IPAM (reconciler.ipam), which could not allocate: it said why
            continue
        ap = ip_ + ("address",)
        addr = parse_ip(inst.address)
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
