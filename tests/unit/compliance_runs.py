"""REAL engine runs into a REAL store, for the compliance report tests.

`Runs(tmp)` copies the example intents repo, compiles it, and drives the real `Engine` with the
snapshot driver of every layer on `tmp/observed.json`, every event going to a SQLite `Store`
(`publish_state=True`, as the daemon runs it). The steps, each returning the engine's own
`RunReport` that the tests check the report's figures against:
  first()  `run-1` (commit REV1): from an empty network, creates everything;
  drift()  a person on the devices: a shop firewall set on h3 loses an element, host h4
           (analytics) becomes unreachable;
  scan()   `run-2` (drift-scan, dry run): finds that drift;
  heal()   `run-3` (self-heal, shop only, commit REV2): repairs shop.
Needs only files (no root, no network).
"""
from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

from reconciler.compile import Compiler
from reconciler.drivers.registry import targets_of
from reconciler.drivers.snapshot import SnapshotDriver, read_snapshot, write_snapshot
from reconciler.engine import Engine
from reconciler.events import EventBus
from reconciler.intents.validate import load_repo
from reconciler.model import Layer
from reconciler.report import RunReport
from reconciler.service.store import Store, sqlite_url

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "intents"
REV1 = "1111111111111111111111111111111111111111"
REV2 = "2222222222222222222222222222222222222222"
FIREWALL_SET = "host/h3/nft-set/netintent_shop/allow_api_grpc"
UNREACHABLE_HOST = "h4"


class Runs:
    def __init__(self, tmp: Path) -> None:
        self.repo_dir = tmp / "intents"
        shutil.copytree(EXAMPLES, self.repo_dir)
        self.repo = load_repo(str(self.repo_dir))
        self.desired = Compiler().compile(self.repo)
        self.targets = targets_of(self.repo.inventory)
        self.snapshot = tmp / "observed.json"
        write_snapshot(self.snapshot, {"resources": []})
        self.store = Store(sqlite_url(tmp / "state.db"))
        bus = EventBus()
        bus.subscribe(self.store.observer)
        self.engine = Engine({layer: SnapshotDriver(layer, self.snapshot) for layer in Layer}, bus, attempts=2,
                             backoff_s=0.0, sleep=lambda _s: None, publish_state=True)
        self.reports: dict[str, RunReport] = {}

    def _run(self, run_id: str, trigger: str, revision: str, **kw) -> RunReport:
        rep = self.engine.run(self.desired, self.targets, prune=self.repo.config.sync.prune,
                              ignore=self.repo.config.ignore, revision=revision, run_id=run_id, trigger=trigger, **kw)
        assert self.store.flush()
        self.reports[run_id] = rep
        return rep

    def first(self) -> RunReport:
        return self._run("run-1", "commit", REV1)

    def drift(self) -> None:
        data = read_snapshot(self.snapshot)
        fw = next(r for r in data["resources"] if r["key"] == FIREWALL_SET)
        assert len(fw["spec"]["elements"]) > 1
        fw["spec"]["elements"] = fw["spec"]["elements"][:-1]
        data.setdefault("unreachable", []).append(UNREACHABLE_HOST)
        write_snapshot(self.snapshot, data)

    def scan(self) -> RunReport:
        return self._run("run-2", "drift-scan", REV1, dry_run=True)

    def heal(self) -> RunReport:
        return self._run("run-3", "self-heal", REV2, apps=["shop"])

    def desired_counts(self) -> Counter:
        """(app, layer, target) -> how many resources the intents want there."""
        return Counter((r.app, r.key.layer.value, r.key.target) for r in self.desired)

    def finished(self, run_id: str) -> float:
        row = self.store.run(run_id)
        assert row is not None and row.finished is not None
        return row.finished
