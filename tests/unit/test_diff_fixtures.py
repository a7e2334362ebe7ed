"""Table-driven diff/plan fixtures: tests/fixtures/diff/<case>/{desired,observed,expected}.json."""
import json
from pathlib import Path

import pytest

import reconciler.compile  # noqa: F401  (registers the layers' normalizers with diff)
from reconciler.model import IgnoreRule, State
from reconciler.plan import apply_plan, make_plan

CASES = sorted(p for p in (Path(__file__).parent.parent / "fixtures" / "diff").iterdir() if p.is_dir())


def _load(case: Path, name: str):
    return json.loads((case / name).read_text())


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_diff_fixture(case: Path) -> None:
    desired = State.from_json(_load(case, "desired.json"))
    observed = State.from_json(_load(case, "observed.json"))
    exp = _load(case, "expected.json")
    ignore = [IgnoreRule(**r) for r in exp["ignore"]]
    plan = make_plan(desired, observed, prune=exp["prune"], ignore=ignore)

    got = [[c.action.value, str(c.key), [d.path for d in c.diffs]] for c in plan.changes]
    assert got == exp["changes"]
    assert [[c.action.value, str(c.key), []] for c in plan.orphans] == exp["orphans"]
    if "added" in exp:
        (d,) = plan.changes[0].diffs
        assert list(d.added) == exp["added"] and list(d.removed) == exp["removed"]
    # round trip over what the plan is allowed to touch
    after = apply_plan(plan, observed)
    assert make_plan(desired, after, prune=exp["prune"], ignore=ignore).empty


def test_fixture_corpus_is_not_empty() -> None:
    assert len(CASES) >= 10
