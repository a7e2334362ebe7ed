"""The one driver registry: every layer of the table loads, a layer that cannot load is a
clear error naming the module (CLI exit 2, never a silently missing layer), and layers
without targets are not built."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from reconciler.cli import main
from reconciler.drivers import registry
from reconciler.drivers.base import Driver
from reconciler.model import Layer

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "intents"


def test_every_layer_in_the_table_builds_a_driver(tmp_path):
    inv = tmp_path / "inventory.yml"
    inv.write_text("all: {}\n")
    from reconciler.xds.server import XdsServer
    device_layers = [layer for layer in Layer.ordered() if layer is not Layer.SIDECAR]
    drivers = registry.build_drivers(device_layers, {"inventory_path": str(inv), "timeout_s": 5})
    # the sidecar factory gets a server object it must use (never started: no port is bound)
    drivers.update(registry.build_drivers([Layer.SIDECAR], {"xds_server": XdsServer("127.0.0.1:0")}))
    assert set(drivers) == set(Layer)
    assert all(isinstance(d, Driver) for d in drivers.values())


def test_a_layer_whose_module_is_missing_is_an_error_naming_it(monkeypatch):
    monkeypatch.setitem(registry.FACTORIES, Layer.SIDECAR, "reconciler.drivers.no_such_module:factory")
    with pytest.raises(registry.DriverLoadError, match="sidecar layer.*no_such_module"):
        registry.drivers_for({Layer.SIDECAR: ["w1"]}, {})


def test_layers_without_targets_are_not_built(monkeypatch):
    monkeypatch.setitem(registry.FACTORIES, Layer.SIDECAR, "reconciler.drivers.no_such_module:factory")
    built = registry.drivers_for({Layer.HOST: []}, {"inventory_path": "/nonexistent"}, layers=["host", "sidecar"])
    assert built == {}


def test_unknown_layer_names_are_refused():
    with pytest.raises(registry.DriverLoadError, match="unknown layer"):
        registry.layers_named(["hosts"])


def test_cli_diff_reports_a_layer_that_cannot_load(tmp_path, monkeypatch, capsys):
    repo = tmp_path / "repo"
    shutil.copytree(EXAMPLES, repo)
    monkeypatch.setitem(registry.FACTORIES, Layer.SIDECAR, "reconciler.drivers.no_such_module:factory")
    rc = main(["diff", str(repo)])
    err = capsys.readouterr().err
    assert rc == 2
    assert "error: sidecar layer: cannot load reconciler.drivers.no_such_module" in err
    assert "internal error" not in err


def test_the_platform_names_validate_accepts_are_the_driver_platforms():
    from reconciler.drivers.switch.platforms import platforms
    from reconciler.names import SWITCH_PLATFORMS
    assert set(platforms()) == set(SWITCH_PLATFORMS)
