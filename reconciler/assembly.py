"""Assembling the engine a command runs: drivers from the registry for the inventory's
targets, on one event bus.

Contract: `build_engine(args, targets, publish)` returns `(Engine, EventBus)`; `args` has
`timeout`, `attempts` and optionally `inventory_path`, `layers`, `observed` (a snapshot file:
snapshot drivers instead of devices) and `driver_factory`. `layer_targets(repo, layers)` gives
the inventory's targets per layer, limited to `layers` when given. The CLI, the transaction
recovery and the demo build their engines here, so they drive devices the same way.
"""
from __future__ import annotations

from typing import Any, Mapping

from reconciler.model import Layer


def build_engine(args: Any, targets: Mapping[Layer, Any], publish=None):
    """Drivers from the registry (snapshot drivers for --observed) and an engine over them."""
    from reconciler.drivers.registry import drivers_for
    from reconciler.engine import Engine
    from reconciler.events import EventBus
    bus = EventBus()
    if publish:
        bus.subscribe(publish)
    drivers = drivers_for(targets, {"inventory_path": getattr(args, "inventory_path", None), "publish": bus.publish,
                                    "timeout_s": args.timeout},
                          layers=getattr(args, "layers", None), observed=getattr(args, "observed", None),
                          factory=getattr(args, "driver_factory", None))
    return Engine(drivers, bus, attempts=args.attempts), bus


def layer_targets(repo, layers=None) -> dict[Layer, Any]:
    from reconciler.drivers.registry import targets_of
    t = targets_of(repo.inventory)
    return {l: v for l, v in t.items() if layers is None or l in layers}
