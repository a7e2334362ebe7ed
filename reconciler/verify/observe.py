"""Observed state for verification: from the devices or from a snapshot file.

Contract: `observe(repo, inventory_path, layers, snapshot=None, timeout=60)` builds the real
driver of each layer with targets through the ONE registry (`drivers_for`) and runs the
engine's `observe` once, writing nothing. With `snapshot` it reads that file once in the
snapshot driver's format and with its semantics (`unreachable` targets are not observed), since
the snapshot driver would parse the whole file once per layer. It returns the observed
resources and `unobserved`: {(layer, target): reason} for every target of the wanted layers
whose observation failed or that has no driver. `model_of(repo, resources,
unobserved, layers)` builds the verification model and scope for a repo.
"""
from __future__ import annotations

from typing import Iterable, Mapping, Sequence

from reconciler.drivers.base import Target
from reconciler.drivers.registry import drivers_for, layers_named, targets_of
from reconciler.drivers.snapshot import read_snapshot
from reconciler.engine import Engine
from reconciler.intents.models import IntentRepo
from reconciler.model import Layer, Resource, State
from reconciler.verify.addr import no_gc
from reconciler.verify.model import Model
from reconciler.verify.pairs import Scope
from reconciler.verify.wiring import Wiring


def observe(repo: IntentRepo, inventory_path: str | None, layers: Iterable[str] | None = None,
            snapshot: str | None = None, timeout: float = 60.0
            ) -> tuple[list[Resource], dict[tuple[str, str], str]]:
    wanted = layers_named(layers)
    targets = {layer: ts for layer, ts in targets_of(repo.inventory).items() if layer in wanted}
    if snapshot:
        return _from_snapshot(snapshot, targets)
    drivers = drivers_for(targets, {"inventory_path": inventory_path, "timeout_s": timeout},
                          layers=[layer.value for layer in wanted], observed=snapshot)
    state, results = Engine(drivers, attempts=1).observe({l: ts for l, ts in targets.items() if l in drivers})
    unobserved: dict[tuple[str, str], str] = {}
    for layer, ts in targets.items():
        for t in ts:
            o = results.get((layer, t.name))
            if o is None:
                unobserved[(layer.value, t.name)] = f"no {layer.value} driver"
            elif not o.ok:
                unobserved[(layer.value, t.name)] = f"{o.outcome.value}: {o.error}".strip(": ")
    return list(state), unobserved


def model_of(repo: IntentRepo, resources: Iterable[Resource], unobserved: Mapping[tuple[str, str], str] = {},
             layers: Iterable[str] | None = None) -> tuple[Model, Scope]:
    with no_gc():
        scope = Scope.of(repo)
        wanted = [layer.value for layer in layers_named(layers)]
        m = Model.build(resources, Wiring.of(repo.inventory), unobserved=unobserved, layers=wanted,
                        identities=scope.identities)
    return m, scope


def _from_snapshot(path: str, targets: Mapping[Layer, Sequence[Target]]
                   ) -> tuple[list[Resource], dict[tuple[str, str], str]]:
    """What the snapshot driver would observe for `targets`, reading the file once (the driver
    reads it once per layer: four times the parse for the same resources)."""
    try:
        data = read_snapshot(path)
        state = State.from_json(data.get("resources", []))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        why = f"failed: snapshot {path}: {exc}"
        return [], {(layer.value, t.name): why for layer, ts in targets.items() for t in ts}
    unreachable = set(data.get("unreachable", []))
    wanted = {(layer, t.name) for layer, ts in targets.items() for t in ts if t.name not in unreachable}
    unobserved = {(layer.value, t.name): f"unreachable: {t.name}: unreachable (snapshot)"
                  for layer, ts in targets.items() for t in ts if t.name in unreachable}
    return [r for r in state if (r.key.layer, r.key.target) in wanted], unobserved
