"""The driver Protocol, its optional capabilities, and the targets of each layer.

Contract: a driver talks to the real devices of one layer. It is batched, because the
efficient transports are (one ansible-runner run covers every target of a layer; netmiko
sessions fan out with a bound):

  observe(targets)            -> {target name: Observation}
  apply(plans, dry_run=False) -> {target name: ApplyResult}

A failing or unreachable target is *data* (an Observation/ApplyResult with a non-ok
outcome and an error message), never an exception that stops the other targets. Drivers
only see validated values; they must still quote everything they pass to a shell.
Observed resources use the same kinds and spec shapes that compile produces for the
layer, with volatile fields stripped, so diff is exact. Resources found on the device that
the reconciler does not own are reported with `owned=False` (or not at all) and never
changed.

Optional capabilities are `runtime_checkable` Protocols (`FusableObserve`, `FusableApply`,
`Prestartable`); the
engine checks them with `isinstance`. Drivers are built by `registry.build_drivers`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Hashable, Mapping, Protocol, Sequence, runtime_checkable

from reconciler.intents.models import Inventory, InventoryHost
from reconciler.model import Layer, Resource
from reconciler.status import Outcome


@dataclass(frozen=True)
class Target:
    """A device of one layer with its inventory variables."""

    name: str
    layer: Layer
    vars: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_inventory(cls, host: InventoryHost, layer: Layer) -> "Target":
        return cls(host.name, layer, dict(host.vars))


@dataclass(frozen=True)
class Observation:
    target: str
    outcome: Outcome  # NOOP when observed fine, UNREACHABLE/FAILED otherwise
    resources: tuple[Resource, ...] = ()
    error: str = ""
    duration_s: float = 0.0

    @property
    def ok(self) -> bool:
        return self.outcome.ok


@dataclass(frozen=True)
class TargetPlan:
    """What to do on one target: the changes plus full desired/observed state of that target
    (renderers such as nftables need the whole owned state, not only the delta)."""

    target: Target
    changes: tuple[Any, ...]          # tuple[plan.Change, ...]
    desired: tuple[Resource, ...]
    observed: tuple[Resource, ...]
    prune: bool = False


@dataclass(frozen=True)
class ApplyResult:
    target: str
    outcome: Outcome
    writes: int = 0                   # number of write operations sent to the device
    error: str = ""
    rolled_back: bool = False
    details: tuple[str, ...] = ()     # human-readable lines (commands sent, rollback notes)
    duration_s: float = 0.0
    failed_keys: tuple[str, ...] = () # resources that could not be applied (e.g. NACKed)
    # The target's state read back after the write in the same session (the driver's own
    # verification), in observe()'s shape. When every written target supplies it, the engine
    # takes it as the next observation instead of observing again.
    observed: tuple[Resource, ...] | None = None


@runtime_checkable
class Driver(Protocol):
    layer: Layer

    def observe(self, targets: Sequence[Target]) -> Mapping[str, Observation]: ...

    def apply(self, plans: Sequence[TargetPlan], dry_run: bool = False) -> Mapping[str, ApplyResult]: ...


@runtime_checkable
class StartedApply(Protocol):
    """An apply started ahead of time by `Prestartable.prestart`: it writes nothing before
    `go(True)`; `go(False)` stops it unapplied; `result()` waits for the results per part."""

    def go(self, go: bool = True) -> None: ...

    def result(self) -> list[Mapping[str, ApplyResult]]: ...


@runtime_checkable
class FusableObserve(Protocol):
    """Optional capability: consecutive layers whose drivers have equal `fuse_key`s are
    observed in one call (one transport run for several layers). Each part is (driver,
    targets); results come back per part, in order."""

    @property
    def fuse_key(self) -> Hashable: ...

    def observe_together(self, parts: Sequence[tuple[Any, Sequence[Target]]]) -> list[Mapping[str, Observation]]: ...


@runtime_checkable
class FusableApply(Protocol):
    """Optional capability: consecutive layers whose drivers have equal `fuse_key`s are
    applied in one call that keeps their order (one play per layer). Each part is (driver,
    plans); results come back per part, in order."""

    @property
    def fuse_key(self) -> Hashable: ...

    def apply_together(self, parts: Sequence[tuple[Any, Sequence[TargetPlan]]],
                       dry_run: bool = False) -> list[Mapping[str, ApplyResult]]: ...


@runtime_checkable
class Prestartable(Protocol):
    """Optional capability: start an apply before the layer below is done (its start-up
    overlaps that layer); it sends nothing before `go()`."""

    def prestart(self, parts: Sequence[tuple[Any, Sequence[TargetPlan]]]) -> StartedApply: ...


# Inventory group of each layer.
LAYER_GROUPS: Mapping[Layer, str] = {
    Layer.SWITCH: "switches", Layer.HYPERVISOR: "hypervisors", Layer.HOST: "hosts", Layer.SIDECAR: "sidecars",
}


def targets_of(inventory: Inventory) -> dict[Layer, list[Target]]:
    """Targets per layer. Sidecar targets are named by xDS node id (`netintent_xds_node`,
    default the host name), as compile names them."""
    out = {layer: [Target.from_inventory(h, layer) for h in inventory.group(group)]
           for layer, group in LAYER_GROUPS.items()}
    out[Layer.SIDECAR] = [Target(str(h.vars.get("netintent_xds_node") or h.name), Layer.SIDECAR, dict(h.vars))
                          for h in inventory.group(LAYER_GROUPS[Layer.SIDECAR])]
    return out
