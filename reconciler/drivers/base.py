"""The driver Protocol and the registry.

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
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Protocol, Sequence, runtime_checkable

from ..intent import InventoryHost
from ..model import Layer, Resource
from ..status import Outcome


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


# name -> factory(context) returning a Driver. Context is a dict of engine-wide settings
# (inventory path, event publisher, timeouts); factories take what they need.
REGISTRY: dict[str, Callable[..., Driver]] = {}


def register(name: str) -> Callable[[Callable[..., Driver]], Callable[..., Driver]]:
    def deco(factory: Callable[..., Driver]) -> Callable[..., Driver]:
        REGISTRY[name] = factory
        return factory
    return deco
