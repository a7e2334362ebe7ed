"""Property: applying plan(desired, observed) to observed yields desired; equal states plan nothing."""
from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.model import Layer, Resource, ResourceKey, State
from reconciler.plan import apply_plan, make_plan
from reconciler.status import Action

names = st.sampled_from(["a", "b", "c", "d"])
scalars = st.one_of(st.integers(-3, 3), st.sampled_from(["x", "y", "10.0.0.1"]), st.booleans())
specs = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(["k", "elements", "tag", "rules"]), inner, max_size=3)),
    max_leaves=8).map(lambda v: {"v": v})
keys = st.builds(ResourceKey, st.sampled_from(list(Layer)), names, st.sampled_from(["port", "set"]), names)


def states(owned=st.just(True)):
    return st.dictionaries(keys, st.tuples(specs, st.sampled_from(["shop", "billing"]), owned), max_size=12).map(
        lambda d: State.of(Resource(k, spec, app, o) for k, (spec, app, o) in d.items()))


def owned_part(s: State) -> State:
    return State.of(r for r in s if r.owned)


@settings(max_examples=300, deadline=None)
@given(states(), states(st.booleans()))
def test_round_trip_with_prune(desired, observed):
    plan = make_plan(desired, observed, prune=True)
    after = apply_plan(plan, observed)
    # every wanted resource is there as wanted; no owned resource is left that nobody wants
    assert {k: after.get(k).spec if after.get(k) else None for k in desired.resources} == \
        {k: r.spec for k, r in desired.resources.items()}
    assert set(owned_part(after).resources) <= set(desired.resources)
    # unowned state is never deleted
    for r in observed:
        if not r.owned and r.key not in desired.resources:
            assert after.get(r.key) == r
    assert make_plan(desired, after, prune=True).empty


@settings(max_examples=200, deadline=None)
@given(states(), states())
def test_without_prune_nothing_is_deleted(desired, observed):
    plan = make_plan(desired, observed, prune=False)
    assert all(c.action is not Action.DELETE for c in plan.changes)
    assert {c.key for c in plan.orphans} == set(observed.resources) - set(desired.resources)


@settings(max_examples=200, deadline=None)
@given(states())
def test_equal_states_plan_nothing(state):
    assert make_plan(state, state, prune=True).empty
    assert make_plan(state, State.from_json(state.to_json()), prune=True).empty


@settings(max_examples=100, deadline=None)
@given(states(), states())
def test_creates_before_deletes_in_layer_order(desired, observed):
    plan = make_plan(desired, observed, prune=True)
    ranks = [(c.action is Action.DELETE,
              c.key.layer.prune_rank if c.action is Action.DELETE else c.key.layer.create_rank) for c in plan.changes]
    assert ranks == sorted(ranks)
