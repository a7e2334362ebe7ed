"""The ONE driver registry: which factory builds each layer's driver, and which targets an
inventory gives each layer.

Contract:
- `FACTORIES` is the table `{Layer: "module:function"}`; it is data, so adding a layer or
  swapping a transport is one line here. Driver modules are imported only when a layer is
  built (grpc, netmiko and ansible-runner stay out of processes that do not need them).
- `build_drivers(layers, settings)` returns `{Layer: Driver}` for the layers asked for. A
  layer whose module or one of its dependencies cannot be imported raises `DriverLoadError`
  naming the layer and the missing module: a layer never vanishes without a word.
- `snapshot_drivers(path, layers)` builds the offline snapshot driver for each layer
  (`--observed SNAPSHOT.json`).
- `factory_drivers(spec, layers, settings)` builds drivers from a `module:function` given on
  the command line (tests and embedders); the function gets `layer=` and the settings and may
  return None for a layer it does not serve.
- `drivers_for(targets, settings, layers=, observed=, factory=)` is what the CLI, the daemon
  and the TUI call: the `factory`'s drivers when given (with `path=observed`), snapshot
  drivers for `observed`, else
  the real driver of every wanted layer that has targets in the inventory.
- `targets_of(inventory)` (from base) gives the targets of every layer.
The CLI, the daemon and the TUI all build their drivers here.
"""
from __future__ import annotations

import importlib
from typing import Any, Callable, Iterable, Mapping

from reconciler.drivers.base import Driver, targets_of
from reconciler.model import Layer

__all__ = ["FACTORIES", "DriverLoadError", "build_drivers", "drivers_for", "factory_drivers", "layers_named",
           "snapshot_drivers", "targets_of"]

FACTORIES: Mapping[Layer, str] = {
    Layer.SWITCH: "reconciler.drivers.switch.driver:make_switch_driver",
    Layer.HYPERVISOR: "reconciler.drivers.ansible.hypervisor:make_hypervisor_driver",
    Layer.HOST: "reconciler.drivers.ansible.host:make_host_driver",
    Layer.SIDECAR: "reconciler.drivers.sidecar:factory",
}
SNAPSHOT_FACTORY = "reconciler.drivers.snapshot:snapshot_driver"


class DriverLoadError(Exception):
    """A layer's driver could not be built; names the layer and the missing module."""


def _resolve(spec: str, what: str) -> Callable[..., Any]:
    module, _, func = spec.partition(":")
    try:
        return getattr(importlib.import_module(module), func)
    except ModuleNotFoundError as exc:
        raise DriverLoadError(f"{what}: cannot load {module}: module {exc.name!r} is not installed "
                              f"(pip install the project again, or leave this layer out)") from None
    except ImportError as exc:
        raise DriverLoadError(f"{what}: cannot load {module}: {exc}") from None
    except AttributeError:
        raise DriverLoadError(f"{what}: {module} has no {func!r}") from None


def layers_named(names: Iterable[str] | None) -> tuple[Layer, ...]:
    """Layers in creation order; all when `names` is empty. Unknown names are an error."""
    names = [n for n in (names or ()) if n]
    if not names:
        return Layer.ordered()
    known = {layer.value: layer for layer in Layer}
    bad = sorted(set(names) - set(known))
    if bad:
        raise DriverLoadError(f"unknown layer(s) {', '.join(bad)} (known: {', '.join(known)})")
    return tuple(layer for layer in Layer.ordered() if layer.value in names)


def build_drivers(layers: Iterable[Layer], settings: Mapping[str, Any]) -> dict[Layer, Driver]:
    """Real drivers; `settings` (inventory_path, publish, timeout_s, ...) go to every factory."""
    return {layer: _resolve(FACTORIES[layer], f"{layer.value} layer")(**settings) for layer in layers}


def snapshot_drivers(path: str, layers: Iterable[Layer]) -> dict[Layer, Driver]:
    factory = _resolve(SNAPSHOT_FACTORY, "snapshot driver")
    return {layer: factory(layer, path) for layer in layers}


def factory_drivers(spec: str, layers: Iterable[Layer], settings: Mapping[str, Any]) -> dict[Layer, Driver]:
    factory = _resolve(spec, f"driver factory {spec}")
    out = {layer: factory(layer=layer, **settings) for layer in layers}
    return {k: v for k, v in out.items() if v is not None}


def drivers_for(targets: Mapping[Layer, Any], settings: Mapping[str, Any], *, layers: Iterable[str] | None = None,
                observed: str | None = None, factory: str | None = None) -> dict[Layer, Driver]:
    wanted = layers_named(layers)
    if factory:
        return factory_drivers(factory, wanted, {**settings, "path": observed})
    if observed:
        return snapshot_drivers(observed, wanted)
    return build_drivers([layer for layer in wanted if targets.get(layer)], settings)
