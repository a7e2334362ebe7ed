"""Lab fixtures shared by every lab test (netns, root).

`app_fabric_lab` (session scope): the reference lab labs/app-fabric.clab.yml, up once per test
session and shared with concurrent sessions (reconciler.lab.shared: refcount under a lock; the
last user takes it down). Its inventory is written to <repo>/inventory/app-fabric.yml and
equals examples/intents/inventory.yml. Skips with the reason when not root or a tool is missing
(reconciler.lab.shared.skip_reason); with CI=true that skip is a failure (tests/conftest.py).

`lab_factory` (function scope): `lab_factory(path, name=..., mgmt_subnet=...)` brings up a
private lab and always takes it down at the end of the test.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.lab import Lab
from reconciler.lab.shared import shared_lab, skip_reason

REPO = Path(__file__).resolve().parents[2]
REFERENCE = REPO / "labs" / "app-fabric.clab.yml"
TOPOLOGIES = Path(__file__).resolve().parent / "topologies"


@pytest.fixture(scope="session")
def app_fabric_lab():
    reason = skip_reason()
    if reason:
        pytest.skip(reason)
    with shared_lab(REFERENCE, inventory_dir=REPO / "inventory") as lab:
        yield lab


@pytest.fixture
def lab_factory(tmp_path):
    labs: list[Lab] = []

    def make(path, name=None, mgmt_subnet=None, features=("base", "ssh")) -> Lab:
        reason = skip_reason(features)
        if reason:
            pytest.skip(reason)
        lab = Lab.from_file(path, name, tmp_path / "inventory", mgmt_subnet)
        labs.append(lab)
        lab.up()
        return lab

    try:
        yield make
    finally:
        for lab in reversed(labs):
            lab.down()
