"""The compiled yes/no schema check never accepts what jsonschema rejects (it may be stricter).

Checked on the example and corpus documents and on hypothesis mutations of a valid app:
values replaced at random paths by random JSON values, keys added or removed.
"""
from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml
from corpus_util import BAD, BASE
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconciler.intents.schemacheck import compile_schema
from reconciler.intents.validate import fast_check, load_schema, schema_validator

ROOT = Path(__file__).resolve().parents[2]


def _docs() -> list[tuple[str, object]]:
    out = []
    for base in (ROOT / "examples" / "intents", BASE, BAD):
        for p in sorted(base.rglob("*.yaml")):
            try:
                data = yaml.safe_load(p.read_text(encoding="utf-8"))
            except (yaml.YAMLError, UnicodeDecodeError, RecursionError):
                continue
            name = "reconciler" if p.name == "reconciler.yaml" else "application"
            out.append((name, data))
    return out


@pytest.mark.parametrize("name,data", _docs())
def test_fast_check_agrees_on_corpus(name: str, data: object):
    ref = schema_validator(name).is_valid(data)
    fast = fast_check(name)(data)
    assert fast == ref


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 70000) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12) | st.sampled_from(["v1", "h1", "10.60.1.11", "shop\n", "api", "grpc", "spiffe://lab.example/x"]),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.sampled_from(["name", "port", "host", "x"]), children, max_size=3),
    max_leaves=8)


def _paths(value, prefix=()):
    yield prefix
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _paths(v, prefix + (i,))


BASE_APP = yaml.safe_load((BASE / "apps" / "shop.yaml").read_text())
ALL_PATHS = list(_paths(BASE_APP))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(ALL_PATHS), st.sampled_from(["set", "del", "add"]), json_values), min_size=1, max_size=3))
def test_fast_check_never_accepts_what_jsonschema_rejects(edits):
    doc = copy.deepcopy(BASE_APP)
    for path, op, value in edits:
        parent, node = None, doc
        try:
            for step in path:
                parent, node = node, node[step]
        except (KeyError, IndexError, TypeError):
            continue
        if op == "set" and parent is not None:
            parent[path[-1]] = value
        elif op == "del" and parent is not None:
            del parent[path[-1]]
        elif op == "add" and isinstance(node, dict):
            node["extra" if not isinstance(value, str) or not value else value] = value
        elif op == "add" and isinstance(node, list):
            node.append(value)
    ref = schema_validator("application").is_valid(doc)
    fast = fast_check("application")(doc)
    assert not (fast and not ref), doc


def test_pattern_dollar_means_end_of_string():
    check = compile_schema({"type": "string", "pattern": "^[a-z]+$"})
    assert check("shop") and not check("shop\n")
    assert not schema_validator("application").is_valid({**BASE_APP, "metadata": {"name": "shop\n"}})


def test_unknown_keyword_is_refused():
    with pytest.raises(ValueError, match="unsupported JSON Schema keyword"):
        compile_schema({"type": "object", "oneOf": [{"type": "string"}]})


def test_every_property_is_documented():
    for name in ("application", "reconciler"):
        schema = load_schema(name)

        def walk(node, where):
            if isinstance(node, dict):
                for key, sub in node.get("properties", {}).items():
                    assert "title" in sub and "description" in sub, f"{name}: {where}.{key} lacks title/description"
                    walk(sub, f"{where}.{key}")
                for k in ("items", "additionalProperties"):
                    if isinstance(node.get(k), dict):
                        walk(node[k], f"{where}[{k}]")
                for key, sub in node.get("$defs", {}).items():
                    assert "title" in sub and "description" in sub, f"{name}: $defs.{key} lacks title/description"
                    walk(sub, f"$defs.{key}")
                if node.get("type") == "object" and "properties" in node:
                    assert node.get("additionalProperties") is False, f"{name}: {where} is not strict"

        walk(schema, "$")


def test_intent_reference_doc_is_generated_from_the_schemas():
    from reconciler.intents.schema import reference

    doc = (ROOT / "docs" / "intent-reference.md").read_text(encoding="utf-8")
    assert doc == reference(), "regenerate: python -m reconciler.intents.schema > docs/intent-reference.md"
    assert "| `spec.services.<service-name>.instances[].host` | string (required) |" in doc
    assert "| `spec.services.<service-name>.instances[].address` | string |" in doc  # optional: IPAM (issue 19)
