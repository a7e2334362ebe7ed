"""Dependency recording for incremental verification: mappings that note what a verdict reads,
and the fine-grained dependencies of hypervisor and leaf views (pure).

Contract: a `Recorder` collects dependencies while `deps` is a set (None: nothing recorded).
`Tracked(prefix, rec, data)` is a dict that notes `(prefix, key)` for every key read by `[]`,
`get` or `in` (the key itself when `prefix` is empty). `track_hv(view, rec)` and
`track_leaf(view, rec)` make a view note, instead of "this device", the part a path reads:
  hypervisor  (hv, "access", port) a port's tag; (hv, "trunk", port) whether a port trunks at all
              and (hv, "trunk", (port, vlan)) one VLAN of it; (hv, "flow", (in_port, vlan)),
              (hv, "flow", (in_port, None)), (hv, "flow", ANY) the flows a frame can meet
              (ALL when a lookup has no in_port);
  leaf        the same trunk dependencies; (leaf, "vxlan-vlan", vlan), (leaf, "vxlan-vni", vni);
              (leaf, "l3") its gateways, routes and BGP as a whole.
`hv_changes(old, new)` / `leaf_changes(old, new)` give the dependencies whose value differs
between two views of one device: exactly what a reader of the old view could have read
differently. Every read of these views by the model goes through the tracked parts (the
model never iterates over a view's mapping except `gateways.values()`, which notes "l3").
"""
from __future__ import annotations

from typing import Any, Iterator, Mapping

from reconciler.verify.model import HvView, LeafView

ANY, ALL = "*", "**"
HV, SW = "hypervisor", "switch"
_NO_VLAN = 0xFFFF


class Recorder:
    __slots__ = ("deps",)

    def __init__(self) -> None:
        self.deps: set | None = None


class Tracked(dict):
    def __init__(self, prefix: Any, rec: Recorder, data: Mapping = {}) -> None:
        super().__init__(data)
        self.prefix, self.rec = prefix, rec

    def _note(self, k: Any) -> None:
        deps = self.rec.deps
        if deps is not None:
            deps.add((self.prefix, k) if self.prefix else k)

    def __getitem__(self, k: Any) -> Any:
        self._note(k)
        return dict.__getitem__(self, k)

    def get(self, k: Any, default: Any = None) -> Any:
        self._note(k)
        return dict.get(self, k, default)

    def __contains__(self, k: Any) -> bool:
        self._note(k)
        return dict.__contains__(self, k)


class _Whole(dict):
    """A dict whose every read, iteration included, notes one dependency."""

    def __init__(self, dep: Any, rec: Recorder, data: Mapping = {}) -> None:
        super().__init__(data)
        self.dep, self.rec = dep, rec

    def _note(self) -> None:
        if self.rec.deps is not None:
            self.rec.deps.add(self.dep)

    def __getitem__(self, k: Any) -> Any:
        self._note()
        return dict.__getitem__(self, k)

    def get(self, k: Any, default: Any = None) -> Any:
        self._note()
        return dict.get(self, k, default)

    def __contains__(self, k: Any) -> bool:
        self._note()
        return dict.__contains__(self, k)

    def __iter__(self) -> Iterator:
        self._note()
        return dict.__iter__(self)

    def values(self):  # noqa: ANN201
        self._note()
        return dict.values(self)

    def items(self):  # noqa: ANN201
        self._note()
        return dict.items(self)


class _VlanSet(set):
    """One port's VLANs: `vlan in` notes (prefix, (port, vlan))."""

    def __init__(self, prefix: Any, port: str, rec: Recorder, data: Any = ()) -> None:
        super().__init__(data)
        self.prefix, self.port, self.rec = prefix, port, rec

    def __contains__(self, vlan: Any) -> bool:
        if self.rec.deps is not None:
            self.rec.deps.add((self.prefix, (self.port, vlan)))
        return set.__contains__(self, vlan)


class _Trunks(dict):
    """port -> VLANs; a port that is present notes nothing until a VLAN is tested, an absent one
    notes (prefix, port)."""

    def __init__(self, prefix: Any, rec: Recorder, data: Mapping[str, Any]) -> None:
        super().__init__({p: _VlanSet(prefix, p, rec, v) for p, v in data.items()})
        self.prefix, self.rec = prefix, rec

    def get(self, k: Any, default: Any = None) -> Any:
        if not dict.__contains__(self, k) and self.rec.deps is not None:
            self.rec.deps.add((self.prefix, k))
        return dict.get(self, k, default)


class _TrackedLeaf(LeafView):
    """A LeafView whose `bgp` read notes (leaf, "l3")."""

    @property
    def bgp(self) -> Any:
        rec = self.__dict__["_rec"]
        if rec.deps is not None:
            rec.deps.add((((SW, self.name), "l3"), None))
        return self.__dict__["bgp"]


def track_hv(hv: HvView, rec: Recorder) -> None:
    n = (HV, hv.name)
    hv.access = Tracked((n, "access"), rec, hv.access)
    hv.trunks = _Trunks((n, "trunk"), rec, hv.trunks)

    def note(port: Any, vlan: Any) -> None:
        deps = rec.deps
        if deps is None:
            return
        p = (n, "flow")
        if port is None:
            deps.add((p, ALL))
        else:
            deps.update(((p, (port, _NO_VLAN if vlan is None else vlan)), (p, (port, None)), (p, ANY)))
    hv.flows.note = note


def track_leaf(lf: LeafView, rec: Recorder) -> None:
    n = (SW, lf.name)
    lf.trunks = _Trunks((n, "trunk"), rec, lf.trunks)
    lf.vxlan_by_vlan = Tracked((n, "vxlan-vlan"), rec, lf.vxlan_by_vlan)
    lf.vxlan_by_vni = Tracked((n, "vxlan-vni"), rec, lf.vxlan_by_vni)
    l3 = ((n, "l3"), None)
    lf.gateways = _Whole(l3, rec, lf.gateways)
    lf.gw_nets = _Whole(l3, rec, lf.gw_nets)
    lf.host_routes = _Whole(l3, rec, lf.host_routes)
    bgp = lf.bgp
    lf.__class__ = _TrackedLeaf
    lf.__dict__["bgp"], lf.__dict__["_rec"] = bgp, rec


def _keyed(prefix: Any, old: dict, new: dict) -> set:
    return {(prefix, k) for k in old.keys() | new.keys() if dict.get(old, k) != dict.get(new, k)}


def _trunk_changes(prefix: Any, old: dict, new: dict) -> set:
    out = set()
    for port in old.keys() | new.keys():
        a, b = dict.get(old, port), dict.get(new, port)
        if (a is None) != (b is None):
            out.add((prefix, port))
        out |= {(prefix, (port, v)) for v in set(a or ()) ^ set(b or ())}
    return out


def hv_changes(old: HvView, new: HvView) -> set:
    n = (HV, old.name)
    out = _keyed((n, "access"), old.access, new.access) | _trunk_changes((n, "trunk"), old.trunks, new.trunks)
    flows = _keyed((n, "flow"), old.flows.by_port, new.flows.by_port)
    if old.flows.any_port != new.flows.any_port:
        flows.add(((n, "flow"), ANY))
    return out | flows | ({((n, "flow"), ALL)} if flows else set())


def leaf_changes(old: LeafView, new: LeafView) -> set:
    n = (SW, old.name)
    out = _trunk_changes((n, "trunk"), old.trunks, new.trunks)
    out |= _keyed((n, "vxlan-vlan"), old.vxlan_by_vlan, new.vxlan_by_vlan)
    out |= _keyed((n, "vxlan-vni"), old.vxlan_by_vni, new.vxlan_by_vni)
    l3_old = (dict(old.gateways), dict(old.gw_nets), dict(old.host_routes), old.__dict__.get("bgp"))
    l3_new = (dict(new.gateways), dict(new.gw_nets), dict(new.host_routes), new.__dict__.get("bgp"))
    return out | ({((n, "l3"), None)} if l3_old != l3_new else set())
