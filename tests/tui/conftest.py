"""Fixtures of the TUI tests: a store filled by REAL engine runs against fixtures.

`demo` runs the engine with the snapshot driver over the example intents repo (a first
sync from an empty network, injected drift, a drift scan, a failing self-heal; see
tui/demo.py) and records every event in a SQLite `Store` in tmp_path. The desired state is
the example intents compiled once and kept in fixtures/demo_desired.json (regenerate with
`python -m tests.tui.conftest`), so changes to the compilers do not move the TUI's pixels;
event times are pinned per run by a step clock. Everything else is what the engine produced.
"""
from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest

from reconciler.service.store import Store, sqlite_url
from tui.actions import LocalActions, snapshot_drivers
from tui.app import ReconcilerApp
from tui.demo import build_demo, pinned, step_clock
from tui.storemodel import StoreReadModel

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "intents"
DESIRED = Path(__file__).resolve().parent / "fixtures" / "demo_desired.json"


def desired_state():
    from reconciler.model import State
    return State.from_json(json.loads(DESIRED.read_text()))


@dataclass
class Demo:
    store: Store
    model: StoreReadModel
    snapshot: Path
    repo: Path
    clock: Callable[[], float]
    now: float

    def actions(self, **kw) -> LocalActions:
        counter = iter(range(1, 1000))
        return LocalActions(self.repo, snapshot_drivers(self.snapshot), [pinned(self.store.observer, self.clock)],
                            read_model=self.model, revision=lambda _d: "4f9c2e71d0a8b35c6e21f7a90d4b8c13e5f60a27",
                            run_ids=lambda: f"tui-{next(counter):04d}", backoff_s=0.0,
                            compile=lambda _repo: desired_state(), **kw)

    def app(self, actions=None, **kw) -> ReconcilerApp:
        kw.setdefault("poll_s", 0)
        return ReconcilerApp(self.model, actions if actions is not None else self.actions(),
                             clock=lambda: self.now, **kw)


@pytest.fixture(scope="session")
def demo_template(tmp_path_factory) -> tuple[Path, float]:
    """The demo runs, once per session: the store file, the snapshot and the intents repo."""
    base = tmp_path_factory.mktemp("tui-demo")
    repo = base / "intents"
    shutil.copytree(EXAMPLES, repo)
    store = Store(sqlite_url(base / "state.db"))
    clock = step_clock()
    build_demo(repo, base, [store.observer], clock=clock, desired=desired_state())
    assert store.flush()
    store.close()
    return base, clock()


@pytest.fixture
def demo(demo_template, tmp_path: Path) -> Demo:
    """A private copy of the demo store (each test may change it)."""
    base, clock_end = demo_template
    for name in ("state.db", "observed.json"):
        shutil.copy2(base / name, tmp_path / name)
    shutil.copytree(base / "intents", tmp_path / "intents")
    store = Store(sqlite_url(tmp_path / "state.db"))
    model = StoreReadModel(store, source="demo store")
    try:
        yield Demo(store, model, tmp_path / "observed.json", tmp_path / "intents", step_clock(clock_end),
                   now=1_764_000_000.0 + 600)
    finally:
        store.close()


async def wait_for(pilot, cond: Callable[[], bool], timeout_s: float = 30.0) -> None:
    """Let the app run until `cond()` holds (bounded)."""
    import time
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s}s")
        await pilot.pause(0.05)


if __name__ == "__main__":  # regenerate fixtures/demo_desired.json from examples/intents
    from reconciler.compile import Compiler
    from reconciler.intents.validate import load_repo
    DESIRED.write_text(Compiler().compile(load_repo(str(EXAMPLES))).dumps() + "\n")
    print(DESIRED)
