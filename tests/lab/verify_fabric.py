"""The reference lab with the example intents, for the verify lab tests: converge through the
real drivers of the given layers, observe and verify (optionally editing the observation first,
e.g. to add what the host layer does not report), and probe with real traffic."""
from __future__ import annotations

from typing import Callable, Sequence

from reconciler.compile import compile_repo
from reconciler.drivers.registry import build_drivers, targets_of
from reconciler.engine import Engine
from reconciler.intents.validate import load_repo
from reconciler.model import Layer, Resource, State
from reconciler.verify.compare import compare
from reconciler.verify.observe import model_of, observe
from reconciler.verify.probe import probe
from reconciler.verify.verdict import DestResult, Verifier

EXAMPLES = "examples/intents"


class Fabric:
    def __init__(self, lab, layers: Sequence[Layer]) -> None:
        self.lab = lab
        self.names = [layer.value for layer in layers]
        self.repo = load_repo(EXAMPLES, inventory_override=str(lab.inventory_path))
        drivers = build_drivers(list(layers), {"inventory_path": str(lab.inventory_path), "timeout_s": 120})
        self.engine = Engine(drivers, attempts=3, backoff_s=0.5)
        self.desired = State.of(r for r in compile_repo(self.repo) if r.key.layer in layers)
        self.targets = {lay: ts for lay, ts in targets_of(self.repo.inventory).items() if lay in layers}

    def converge(self) -> None:
        report = self.engine.run(self.desired, self.targets, prune=False)
        assert report.converged, [(t.target, t.outcome, t.error) for t in report.targets.values()]

    def verify(self, edit: Callable[[list[Resource]], list[Resource]] | None = None):
        resources, unobserved = observe(self.repo, str(self.lab.inventory_path), self.names)
        assert not unobserved, unobserved
        resources = edit(resources) if edit is not None else resources
        m, scope = model_of(self.repo, resources, unobserved, self.names)
        return compare(Verifier(m, scope, expand=True).run())

    def probe(self, cmp, pairs: set[tuple[str, str]] | None = None):
        results = cmp.results if pairs is None else [
            DestResult(r.dest, [p for p in r.pairs if (p[0].id, r.dest.id) in pairs]) for r in cmp.results]
        return probe(self.lab, results)
