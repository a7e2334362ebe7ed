"""Per-layer normalizers: each layer's compile module declares its volatile and set-valued fields
as data (`NORMALIZER`); reconciler.compile registers them with diff, which never imports compile.
"""
from __future__ import annotations

import ast
import random
import subprocess
import sys
from pathlib import Path

import pytest

from reconciler.compile import LAYER_NORMALIZERS, compile_repo, host, hypervisor, sidecar, switch
from reconciler.diff import COMMON, Normalizer, diff_specs, normalize_spec, normalizer, register_normalizer
from reconciler.intents.validate import load_repo
from reconciler.model import Layer, Resource, ResourceKey, State, freeze, thaw
from reconciler.plan import make_plan

ROOT = Path(__file__).resolve().parents[2]

# The global tables diff had before the per-layer normalizers: nothing may be lost in the move.
LEGACY_VOLATILE = {"uuid", "_uuid", "handle", "n_packets", "n_bytes", "duration", "idle_age", "hard_age",
                   "last_updated", "version_info",
                   "packets", "bytes"}   # + nft counter values (telemetry, issue 18)
LEGACY_SET_FIELDS = {"elements", "flood", "networks", "neighbors", "trunks", "ct_state"}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return out


@pytest.mark.parametrize("module", ["diff.py", "plan.py"])
def test_diff_and_plan_never_import_compile(module):
    assert not {m for m in _imports(ROOT / "reconciler" / module) if m.startswith("reconciler.compile")}


def test_importing_diff_and_plan_loads_no_compile_module():
    code = ("import sys, reconciler.diff, reconciler.plan; "
            "print(sorted(m for m in sys.modules if m.startswith('reconciler.compile')))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("entry", ["reconciler.cli", "reconciler.service.daemon", "reconciler.revision"])
def test_entry_points_register_every_layer(entry):
    code = (f"import {entry}; from reconciler.diff import normalizer; from reconciler.model import Layer; "
            "from reconciler.compile import LAYER_NORMALIZERS as L; "
            "print(all(normalizer(l) == normalizer(l) | L[l] for l in Layer) and len(L) == len(Layer))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True"


def test_every_layer_module_declares_its_normalizer():
    assert LAYER_NORMALIZERS == {Layer.SWITCH: switch.NORMALIZER, Layer.HYPERVISOR: hypervisor.NORMALIZER,
                                 Layer.HOST: host.NORMALIZER, Layer.SIDECAR: sidecar.NORMALIZER}
    for layer, n in LAYER_NORMALIZERS.items():
        assert normalizer(layer) == COMMON | n


def test_nothing_of_the_global_tables_was_lost():
    volatile = set(COMMON.volatile_of("*")).union(*(n.volatile_of("*") for n in LAYER_NORMALIZERS.values()))
    sets = set(COMMON.set_fields).union(*(n.set_fields for n in LAYER_NORMALIZERS.values()))
    assert volatile == LEGACY_VOLATILE and sets == LEGACY_SET_FIELDS


def test_normalizer_merge_and_per_kind_fields():
    a = Normalizer(volatile={"*": ("x",), "flow": ("n",)}, set_fields={"s"})
    b = Normalizer(volatile={"*": ("y", "x")}, set_fields={"t"})
    m = a | b
    assert m.volatile_of("flow") == {"x", "y", "n"} and m.volatile_of("port") == {"x", "y"}
    assert m.set_fields == {"s", "t"}
    assert hash(m) is not None  # frozen data


# (key, desired spec, observed spec, expected [path, added, removed] of the diff)
CASES = [
    ("host/h1/nft-set/netintent_a/local", {"elements": ["1", "2"]}, {"elements": ["1", "2"], "handle": 4}, []),
    ("host/h1/nft-set/netintent_a/local", {"elements": ["1", "2"]}, {"elements": ["2", "3"]},
     [["elements", ["1"], ["3"]]]),
    ("host/h1/nft-table/netintent_a", {"rules": [{"ct_state": ["new", "est"]}]}, {"rules": [{"ct_state": ["est", "rel"]}]},
     [["rules[0].ct_state", ["new"], ["rel"]]]),
    ("hypervisor/hv1/ovs-flow/priority=1,in_port=p", {"actions": "drop"},
     {"actions": "drop", "n_packets": 9, "n_bytes": 1, "duration": "1s", "idle_age": 1, "hard_age": 2, "_uuid": "u"}, []),
    ("hypervisor/hv1/ovs-port/p", {"trunks": [1, 2]}, {"trunks": [3, 1]}, [["trunks", [2], [3]]]),
    ("hypervisor/hv1/ovs-port/p", {"tag": 1}, {"tag": 1, "handle": 3}, [["handle", [], []]]),   # nft's, not OVS's
    ("switch/leaf1/vxlan/vxlan5001", {"flood": ["10.0.0.2", "10.0.0.3"]}, {"flood": ["10.0.0.3"], "_uuid": "u"},
     [["flood", ["10.0.0.2"], []]]),
    ("switch/leaf1/bgp/65001", {"neighbors": ["e1", "e2"], "networks": ["a"]},
     {"neighbors": ["e3", "e1"], "networks": ["b"]}, [["neighbors", ["e2"], ["e3"]], ["networks", ["a"], ["b"]]]),
    ("sidecar/n1/cluster/c", {"lb": "rr"}, {"lb": "rr", "version_info": "7", "last_updated": "t"}, []),
    ("sidecar/n1/route/r", {"elements": ["a", "b"]}, {"elements": ["c", "a"]},                 # no set fields here
     [["elements[0]", [], []], ["elements[1]", [], []]]),
    ("sidecar/n1/route/r", {"x": 1}, {"x": 1, "uuid": "u"}, []),                              # COMMON: every layer
]


@pytest.mark.parametrize("key,desired,observed,expected", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_diff_is_per_layer(key, desired, observed, expected):
    k = ResourceKey.parse(key)
    plan = make_plan(State.of([Resource(k, desired, "a")]), State.of([Resource(k, observed, "a")]))
    got = [[d.path, list(d.added), list(d.removed)] for c in plan.changes for d in c.diffs]
    assert got == expected


def test_diff_specs_without_a_layer_uses_every_layers_set_fields():
    """Callers with no key (the TUI diff view, the switch driver's verify) keep today's behaviour."""
    d = diff_specs(freeze({"flood": ["a", "b"], "elements": ["x"]}), freeze({"flood": ["b"], "elements": ["y"]}))
    assert [(f.path, f.added, f.removed) for f in d] == [("elements", ("x",), ("y",)), ("flood", ("a",), ())]
    key = ResourceKey.parse("host/h1/nft-set/t/s")
    assert normalize_spec(key, freeze({"a": 1, "handle": 2, "uuid": 3})) == {"a": 1}


@pytest.fixture
def legacy_registry():
    """Every layer normalised with the old global tables; the per-layer ones restored after."""
    legacy = Normalizer(volatile={"*": tuple(sorted(LEGACY_VOLATILE))}, set_fields=LEGACY_SET_FIELDS)

    def use(which: str) -> None:
        for layer in Layer:
            register_normalizer(layer, legacy if which == "legacy" else LAYER_NORMALIZERS[layer])
    yield use
    use("per-layer")


def _noisy(spec, layer: Layer, rng: random.Random):
    """What a driver of `layer` could report for `spec`: its volatile fields, lists reordered or changed."""
    spec = thaw(spec)
    volatile = sorted(normalizer(layer).volatile_of("*"))
    if rng.random() < .5:
        spec[rng.choice(volatile)] = rng.randint(0, 9)
    for k, v in list(spec.items()):
        if isinstance(v, list) and rng.random() < .5:
            v = v[:]
            rng.shuffle(v)
            if v and rng.random() < .3:
                v.pop()
            spec[k] = v + (["10.9.9.9"] if rng.random() < .3 else [])
        elif isinstance(v, int) and not isinstance(v, bool) and rng.random() < .1:
            spec[k] = v + 1
    return spec


def test_per_layer_plans_equal_the_global_tables_on_compiled_state(legacy_registry):
    desired = compile_repo(load_repo(ROOT / "examples" / "intents"))
    rng = random.Random(7)
    for _ in range(100):
        observed = State.of(Resource(r.key, _noisy(r.spec, r.key.layer, rng), r.app)
                            for r in desired if rng.random() < .9)
        per_layer = make_plan(desired, observed, prune=True).to_json()
        legacy_registry("legacy")
        legacy = make_plan(desired, observed, prune=True).to_json()
        legacy_registry("per-layer")
        assert per_layer == legacy
