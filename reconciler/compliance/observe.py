"""A fresh, read-only observation for the compliance report: the devices against the intents.

Contract: `observe_now(repo_dir, inventory=, observed=, timeout=, layers=)` loads and compiles
the intents repo, observes every target once through the ONE registry and the engine's observe
path (`reconciler.verify.observe.observe`: `drivers_for`, `Engine.observe`; the snapshot file
with `observed`), writes nothing and calls no apply. Each resource gets the status the engine
would publish (synced, create, update, delete, orphan; unknown on a target that could not be
observed, with outcome `unreachable` when the target was unreachable). Reachability is verified
on the same observation when the switch, hypervisor and host layers were observed; a
verification that cannot run is data (`verification_note`), never an exception. Raises only
for bad intents (`RepoInvalid`, `CompileConflicts`) and missing files, which the CLI reports.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, Mapping

from reconciler.compliance.build import FreshObservation
from reconciler.compliance.model import Violation
from reconciler.compliance.records import ResourceRecord
from reconciler.model import DesiredState, FrozenDict, Layer, ObservedState, Resource
from reconciler.plan import make_plan
from reconciler.status import Outcome

_VERIFY_LAYERS = {Layer.SWITCH.value, Layer.HYPERVISOR.value, Layer.HOST.value}


def observe_now(repo_dir: str, *, inventory: str | None = None, observed: str | None = None,
                timeout: float = 60.0, layers: Iterable[str] | None = None) -> FreshObservation:
    from reconciler.compile import Compiler
    from reconciler.drivers.registry import layers_named
    from reconciler.intents.validate import load_repo
    from reconciler.verify.observe import observe

    repo = load_repo(repo_dir, inventory_override=inventory)
    inv_path = str(Path(inventory).resolve()) if inventory else str((Path(repo_dir) / repo.config.inventory).resolve())
    layer_names = list(layers) if layers else None
    wanted = set(layers_named(layer_names))
    compiled = Compiler().compile(repo)
    # layers left out are not reported: their resources are neither observed nor missing
    desired = DesiredState(FrozenDict((k, r) for k, r in compiled.resources.items() if k.layer in wanted))
    resources, unobserved = observe(repo, inv_path, layer_names, observed, timeout)
    records, outcomes = statuses(desired, resources, unobserved, prune=repo.config.sync.prune,
                                 ignore=repo.config.ignore)
    violations, note = _verify(repo, resources, unobserved, layer_names)
    return FreshObservation(
        resources=records, outcomes=outcomes, apps=tuple(sorted(repo.apps)),
        unobserved=tuple(sorted((lay, t, why) for (lay, t), why in unobserved.items())),
        intents_revision=_head(repo_dir), violations=violations, verification_note=note)


def statuses(desired: DesiredState, resources: Iterable[Resource], unobserved: Mapping[tuple[str, str], str], *,
             prune: bool = False, ignore: Iterable = ()) -> tuple[tuple[ResourceRecord, ...], dict[str, str]]:
    """Every resource with the status the engine publishes for a run's first observation, and
    the outcome `unreachable` of desired resources on unreachable targets (pure)."""
    observed = ObservedState(FrozenDict((r.key, r) for r in resources))
    unseen = {(Layer(lay), t): why for (lay, t), why in unobserved.items()}
    plan = make_plan(desired, observed, prune, list(ignore))
    status = {c.key: c.action.value for c in plan.changes}
    status.update((c.key, "orphan") for c in plan.orphans)
    outcomes: dict[str, str] = {}
    out = []
    for key in sorted(desired.resources.keys() | observed.resources.keys(), key=lambda k: k.sort_key()):
        d, o = desired.get(key), observed.get(key)
        if d is None and (o is None or not o.owned):
            continue
        why = unseen.get((key.layer, key.target))
        if why is not None:
            if d is None:
                continue
            out.append(ResourceRecord(str(key), d.app, "unknown"))
            if why.startswith(Outcome.UNREACHABLE.value):
                outcomes[str(key)] = Outcome.UNREACHABLE.value
            continue
        owner = d if d is not None else o
        assert owner is not None
        out.append(ResourceRecord(str(key), owner.app, status.get(key, "synced")))
    return tuple(out), outcomes


def _verify(repo, resources: list[Resource], unobserved: Mapping[tuple[str, str], str],
            layers: list[str] | None) -> tuple[dict[str, tuple[Violation, ...]] | None, str]:
    if layers and not _VERIFY_LAYERS <= set(layers):
        return None, "not verified: reachability needs the switch, hypervisor and host layers observed"
    try:
        from reconciler.verify.compare import LEAK, UNKNOWN_KIND, VIOLATION, compare
        from reconciler.verify.observe import model_of
        from reconciler.verify.verdict import Verifier
        m, scope = model_of(repo, resources, unobserved, layers)
        cmp = compare(Verifier(m, scope).run(()))
    except Exception as exc:  # a verification that cannot run leaves the figures empty, with the reason
        return None, f"not verified: {exc.__class__.__name__}: {exc}"
    out: dict[str, list[Violation]] = {app: [] for app in cmp.apps}   # every verified app, clean ones too
    for f in cmp.findings:
        if f.kind in (VIOLATION, LEAK):
            out.setdefault(f.app, []).append(Violation(f.kind, f.source.id, f.dest.id, f.dest.port))
    unknown = cmp.count(UNKNOWN_KIND)
    note = f"verified on this observation; {unknown} verdict(s) unknown" if unknown else "verified on this observation"
    return {a: tuple(v) for a, v in out.items()}, note


def _head(repo_dir: str) -> str:
    try:
        import git
        return git.Repo(repo_dir, search_parent_directories=False).head.commit.hexsha
    except Exception:  # not a git checkout: the report names no intents revision
        return ""
