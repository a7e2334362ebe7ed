"""Incremental compile and re-plan at scale: equal to a full compile and a full plan after any
one-app edit (property), bounded conflict reports, the persistent maps under them, and the
scale bench's generator (bench/scale_repo.py) producing valid repos."""
import importlib.util
import random
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.cli import main
from reconciler.compile import CompileConflict, CompileConflicts, Compiler, changed_apps, compile_repo
from reconciler.compile.context import FlowIndex
from reconciler.intents.models import Application
from reconciler.model import Layer, PersistentMap, ResourceIndex, ResourceKey
from reconciler.plan import make_plan

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "intents"


def _load_scale_repo():
    spec = importlib.util.spec_from_file_location("scale_repo", ROOT / "bench" / "scale_repo.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("scale_repo", mod)
    spec.loader.exec_module(mod)
    return mod


scale = _load_scale_repo()
LAYOUT = scale.Layout.of(60, 300)  # 3 leaves, 20 apps and VLANs per leaf; hosts 40-99 of a leaf are free
FULL = scale.make_repo(LAYOUT)
BASE = FULL.model_copy(update={"apps": {n: a for n, a in FULL.apps.items() if int(n[3:]) % 6 != 5}})  # room to add


# ---- bounded conflict reports ---------------------------------------------------------------
def _conflicts(n: int) -> CompileConflicts:
    return CompileConflicts([CompileConflict(ResourceKey(Layer.HOST, "h1", "address", f"eth1:10.0.{i // 250}.{i % 250}"),
                                             ("a", "b")) for i in range(n)])


def test_conflict_message_lists_at_most_100_then_how_many_more():
    exc = _conflicts(5000)
    assert len(exc.conflicts) == 5000  # all kept as data
    text = str(exc)
    assert text.count("wanted by more than one application") == CompileConflicts.LIMIT
    assert text.endswith("; and 4900 more") and len(text) < 20_000
    lines = exc.lines()
    assert len(lines) == 101 and lines[0].startswith("conflict: host/h1/address/") and lines[-1] == "and 4900 more"
    few = _conflicts(3)
    assert few.lines() == [f"conflict: {c}" for c in few.conflicts] and "and " not in str(few)


def test_real_conflicts_of_a_large_repo_stay_bounded():
    # every app twice under another name: each resource key is wanted by two apps
    twins = {f"twin{i}": a.model_copy(update={"metadata": a.metadata.model_copy(update={"name": f"twin{i}"})})
             for i, a in enumerate(BASE.apps.values())}
    with pytest.raises(CompileConflicts) as err:
        compile_repo(BASE.model_copy(update={"apps": {**BASE.apps, **twins}}))
    assert len(err.value.conflicts) > 500
    assert str(err.value).count("; ") == CompileConflicts.LIMIT and len(str(err.value)) < 20_000


def test_cli_prints_at_most_100_conflicts(tmp_path, capsys, monkeypatch):
    def clash(self, repo):
        raise _conflicts(250)
    monkeypatch.setattr(Compiler, "compile", clash)
    assert main(["plan", str(EXAMPLES), "--no-color"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 101 and err[-1] == "and 150 more"


# ---- incremental compile + re-plan == full -------------------------------------------------
def _dump(app: Application) -> dict:
    return app.model_dump(mode="json", by_alias=True, exclude={"source"})


def _edit(apps: dict, kind: str, i: int, j: int, rev: int) -> dict:
    """One edit of app i (j: another app or a number). Returns the new apps map."""
    names = sorted(apps)
    name, other = names[i % len(names)], names[j % len(names)]
    if kind == "remove":
        return {n: a for n, a in apps.items() if n != name}
    if kind == "add":  # an app whose layout slot is free
        free = [k for k in range(LAYOUT.apps) if f"app{k}" not in apps]
        return {**apps, f"app{free[j % len(free)]}": scale.make_app(free[j % len(free)], LAYOUT, rev)} if free else apps
    if kind == "same":  # an equal app that is another object: nothing to compile
        return {**apps, name: Application.model_validate(_dump(apps[name]))}
    d = _dump(apps[name])
    spec = d["spec"]
    api = "api" if "api" in spec["services"] else "api2"  # "rename-service" renames it back and forth
    if kind == "port":
        spec["services"]["web"]["ports"][0]["port"] = 8000 + rev
    elif kind in ("call", "call-far"):  # a flow to a neighbour (mostly under the same leaf) or any app
        callee = names[(i + 1 + j % 3) % len(names)] if kind == "call" else other
        spec["policy"]["allow"].append({"from": "web", "to": f"{callee}/api", **({"ports": ["grpc"]} if j % 2 else {})})
    elif kind == "uncall":
        spec["policy"]["allow"] = [r for r in spec["policy"]["allow"] if "/" not in r["to"]]
    elif kind == "move":  # the api instance to a free host of any leaf (another hypervisor, maybe leaf)
        inst = spec["services"][api]["instances"][0]
        inst["host"] = f"h{(j % LAYOUT.leaves) * LAYOUT.hosts_per_leaf + 40 + j % 60}"
        inst["interface"] = "eth1"
    elif kind == "rename-port":
        spec["services"][api]["ports"][0]["name"] = f"p{rev}"
    elif kind == "mtls":
        spec["traffic"][api] = {**spec["traffic"].get(api, {}), "mtls": ["strict", "permissive", "disable"][j % 3]}
    elif kind == "rename-service":  # callers' flows to <app>/api stop resolving (or resolve again)
        to = "api2" if api == "api" else "api"
        spec["services"][to] = spec["services"].pop(api)
        spec["exports"] = [to]
        spec["policy"]["allow"] = [r for r in spec["policy"]["allow"] if r["to"] != api]
        spec["traffic"] = {}
    return {**apps, name: Application.model_validate(d)}


EDITS = ["port", "call", "call-far", "uncall", "move", "remove", "add", "rename-port", "mtls", "rename-service", "same"]
edits = st.lists(st.tuples(st.sampled_from(EDITS), st.integers(0, 10_000), st.integers(0, 10_000)),
                 min_size=1, max_size=6)


@settings(max_examples=60, deadline=None)
@given(edits)
def test_incremental_compile_and_replan_equal_full(steps):
    compiler = Compiler()
    repo = BASE
    before = compiler.compile(repo)
    for rev, (kind, i, j) in enumerate(steps, start=1):
        repo2 = repo.model_copy(update={"apps": _edit(dict(repo.apps), kind, i, j, rev)})
        # half the time the caller names the apps it touched (as a commit's files would)
        hint = [n for n in {*repo.apps, *repo2.apps} if repo.apps.get(n) is not repo2.apps.get(n)] \
            if (i + j) % 2 else None
        try:
            full = compile_repo(repo2)
        except CompileConflicts as exc:
            with pytest.raises(CompileConflicts) as err:
                compiler.compile(repo2, changed=hint)
            assert {str(c.key) for c in err.value.conflicts} <= {str(c.key) for c in exc.conflicts}
            continue  # the compiler kept its previous result: the next edit starts from `repo`
        after = compiler.compile(repo2, changed=hint)
        assert after == full
        assert dict(after.by_app.items()) == {a: k for a, k in full.by_app.items() if a in after.by_app}
        if kind == "same":
            assert compiler.last_compiled == ()
        for prune in (False, True):
            assert make_plan(after, before, prune=prune, apps=compiler.last_changed) == \
                make_plan(after, before, prune=prune)
        repo, before = repo2, after


@settings(max_examples=40, deadline=None)
@given(edits)
def test_flow_index_evolves_like_a_rebuild(steps):
    apps = dict(BASE.apps)
    index = FlowIndex.of(apps)
    for rev, (kind, i, j) in enumerate(steps, start=1):
        new = _edit(dict(apps), kind, i, j, rev)
        index, apps = index.evolve(new, changed_apps(apps, new)), new
        rebuilt = FlowIndex.of(apps)
        for part in ("declared", "named", "named_by", "touching"):
            assert dict(getattr(index, part).items()) == dict(getattr(rebuilt, part).items()), part


def test_one_app_edit_compiles_the_app_and_its_partners_only():
    compiler = Compiler()
    compiler.compile(BASE)
    # app0 calls app1 (every 50th app calls the next one under its leaf)
    repo2 = BASE.model_copy(update={"apps": _edit(dict(BASE.apps), "port", sorted(BASE.apps).index("app0"), 0, 1)})
    compiler.compile(repo2)
    assert compiler.last_compiled == ("app0", "app1") and compiler.last_changed == ("app0", "app1")
    compiler.compile(repo2.model_copy(update={"apps": dict(repo2.apps)}))  # same apps, another map
    assert compiler.last_compiled == () and compiler.last_changed == ()


# ---- persistent maps ----------------------------------------------------------------------
@pytest.mark.parametrize("cls,key", [(PersistentMap, lambda i: i),
                                     (ResourceIndex, lambda i: ResourceKey(Layer.HOST, f"h{i % 7}", "k", str(i)))])
def test_persistent_maps_evolve_like_dicts_and_never_change(cls, key):
    rng = random.Random(7)
    model: dict = {}
    m = cls()
    history = []
    for step in range(1500):
        drop = [key(rng.randrange(3000)) for _ in range(rng.randrange(5))]
        put = {key(rng.randrange(3000)): step for _ in range(rng.randrange(40))}
        history.append((m, dict(model)))
        m = m.evolve(drop, put)
        for k in drop:
            model.pop(k, None)
        model.update(put)
        assert len(m) == len(model) and m == model and dict(m.items()) == model
    assert all(old == snapshot for old, snapshot in history)  # every earlier map is untouched
    assert all(m[k] == v and k in m for k, v in model.items()) and m.get(key(-1)) is None and key(-1) not in m
    assert m.evolve() is m and cls(model) == m


# ---- the bench's generator --------------------------------------------------------------
@pytest.mark.parametrize("apps,hosts", [(1, 2), (7, 2), (300, 100), (4093, 100), (2500, 300)])
def test_scale_generator_produces_valid_repos(apps, hosts):
    layout = scale.Layout.of(apps, hosts)
    assert scale.validate(scale.make_repo(layout)) == []
    assert layout.apps_per_leaf <= 4093 and layout.ifaces_per_host * layout.hosts_per_leaf // 2 >= layout.apps_per_leaf


def test_scale_generator_sizes_100k_apps_and_refuses_impossible_ones():
    big = scale.Layout.of(100_000, 10_000)
    assert (big.leaves, big.apps_per_leaf, big.ifaces_per_host) == (100, 1000, 20)
    with pytest.raises(ValueError, match="give at least 1300 hosts"):
        scale.Layout.of(50_000, 1000)


def test_a_hint_that_misses_an_added_or_removed_app_falls_back_to_a_scan():
    compiler = Compiler()
    compiler.compile(BASE)
    free = next(k for k in range(LAYOUT.apps) if f"app{k}" not in BASE.apps)
    grown = BASE.model_copy(update={"apps": {**BASE.apps, f"app{free}": scale.make_app(free, LAYOUT)}})
    assert compiler.compile(grown, changed=[]) == compile_repo(grown)
    assert compiler.last_compiled == (f"app{free}",)
    assert compiler.compile(BASE, changed=["app0"]) == compile_repo(BASE)  # removed app not named
    assert compiler.last_changed == (f"app{free}",)


# ---- plan order ---------------------------------------------------------------------------
_names = st.text(alphabet="ab-./:0_", min_size=0, max_size=4)
_keys = st.builds(ResourceKey, st.sampled_from(list(Layer)), _names, st.sampled_from(["port", "port-x", "set"]), _names)


@settings(max_examples=200, deadline=None)
@given(st.sets(_keys, max_size=30), st.sets(_keys, max_size=30))
def test_plan_orders_changes_underlay_first_then_by_key_and_deletes_overlay_first(wanted, present):
    from reconciler.model import Resource, State
    from reconciler.status import Action
    desired = State.of(Resource(k, {"v": 1}, "a") for k in wanted)
    observed = State.of(Resource(k, {"v": 2}, "a") for k in present)
    plan = make_plan(desired, observed, prune=True)
    ups = [c.key for c in plan.changes if c.action is not Action.DELETE]
    dels = [c.key for c in plan.changes if c.action is Action.DELETE]
    assert ups == sorted(wanted, key=ResourceKey.sort_key)
    assert dels == sorted(present - wanted, key=lambda k: (k.layer.prune_rank, k.target, k.kind, k.name))
    assert plan.changes == tuple(c for c in plan.changes if c.action is not Action.DELETE) + \
        tuple(c for c in plan.changes if c.action is Action.DELETE)
