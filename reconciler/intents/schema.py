"""The JSON Schemas of intent files: loading, checking, and located, readable error messages.

Contract: `schema_errors(doc, name)` returns every violation of schemas/<name>.schema.json by
`doc.data` as `ValidationError`s naming file, line, JSON path and a message written for
people (unknown field -> the allowed ones; bad pattern -> what the value must look like, from
the schema's own description). The common case (valid) costs one call of the compiled check
from reconciler.intents.schemacheck; jsonschema (Draft 2020-12, with `pattern`'s `$` meaning end of
string) runs only for invalid documents, to find and word every error. Both are built once.
"""
from __future__ import annotations

import json
import re
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping

from jsonschema import Draft202012Validator, validators
from jsonschema.exceptions import ValidationError as SchemaError

from reconciler.intents.loader import Doc, ValidationError, show
from reconciler.intents.schemacheck import compile_schema, ecma_pattern

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "schemas"

_RX_CACHE: dict[str, re.Pattern[str]] = {}


def _pattern(validator: Any, patrn: str, instance: Any, schema: Mapping[str, Any]) -> Any:
    if not validator.is_type(instance, "string"):
        return
    rx = _RX_CACHE.get(patrn)
    if rx is None:
        rx = _RX_CACHE[patrn] = ecma_pattern(patrn)
    if not rx.search(instance):
        yield SchemaError(f"{instance!r} does not match {patrn!r}")


_Validator = validators.extend(Draft202012Validator, {"pattern": _pattern})


@lru_cache(maxsize=None)
def load_schema(name: str) -> dict[str, Any]:
    with open(SCHEMA_DIR / f"{name}.schema.json", encoding="utf-8") as f:
        schema = json.load(f)
    Draft202012Validator.check_schema(schema)
    return schema


@lru_cache(maxsize=None)
def schema_validator(name: str) -> Any:
    """jsonschema validator for schemas/<name>.schema.json (cached): the reference, and the error writer."""
    return _Validator(load_schema(name))


@lru_cache(maxsize=None)
def fast_check(name: str) -> Any:
    """Compiled yes/no check (reconciler.intents.schemacheck), sound for "valid"; cached."""
    return compile_schema(load_schema(name))


_JSON_TYPES = {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean", int: "an integer",
               float: "a number", type(None): "null"}
_ARTICLE = {"object": "a mapping", "array": "a list", "string": "a string", "integer": "an integer",
            "number": "a number", "boolean": "a boolean (true/false)", "null": "null"}


def _lc(title: str) -> str:
    """'Application name' -> 'application name'; 'IPv4 address' stays."""
    return title[:1].lower() + title[1:] if title[1:2].islower() else title


def _hint(schema: Mapping[str, Any]) -> str:
    desc = str(schema.get("description", ""))
    first = re.split(r"(?<!e\.g)\. ", desc)[0].rstrip(".")
    return f": {first}" if first else ""


def schema_errors(doc: Doc, name: str) -> list[ValidationError]:
    """All schema violations of `doc.data` against schema `name`, located in the file."""
    if fast_check(name)(doc.data):
        return []
    v = schema_validator(name)
    out: list[ValidationError] = []
    for e in v.iter_errors(doc.data):
        out.extend(_convert(doc, e))
    return out


def _convert(doc: Doc, e: SchemaError) -> list[ValidationError]:
    path = tuple(e.absolute_path)
    kw, schema, inst, val = e.validator, e.schema, e.instance, e.validator_value
    if "propertyNames" in e.absolute_schema_path and isinstance(inst, str):
        path = path + (inst,)
        title = _lc(str(schema.get("title", "name")))
        return [doc.error(path, f"invalid {title} {show(inst)}{_hint(schema)}")]
    if kw == "additionalProperties" and isinstance(inst, dict):
        allowed = sorted(schema.get("properties", {}))
        extra = [k for k in inst if k not in schema.get("properties", {})]
        return [doc.error(path + (k,), f"unknown field {show(k)} (allowed: {', '.join(allowed)})") for k in extra]
    if kw == "required" and isinstance(inst, dict):
        return [doc.error(path, f"missing required field {show(r)}") for r in val if r not in inst]
    if kw == "type":
        want = " or ".join(_ARTICLE.get(t, t) for t in ([val] if isinstance(val, str) else val))
        got = _JSON_TYPES.get(type(inst), type(inst).__name__)
        shown = f" {show(inst)}" if not isinstance(inst, (dict, list)) else ""
        return [doc.error(path, f"must be {want}, got {got}{shown}")]
    if kw == "pattern":
        title = _lc(str(schema.get("title", "value")))
        return [doc.error(path, f"invalid {title} {show(inst)}{_hint(schema)}")]
    if kw in ("minimum", "maximum"):
        lo, hi = schema.get("minimum"), schema.get("maximum")
        rng = f"{lo}..{hi}" if lo is not None and hi is not None else (f">= {lo}" if lo is not None else f"<= {hi}")
        return [doc.error(path, f"{show(inst)} is out of range {rng}")]
    if kw == "const":
        return [doc.error(path, f"must be {show(val)}, got {show(inst)}")]
    if kw == "enum":
        return [doc.error(path, f"must be one of {', '.join(show(x) for x in val)}; got {show(inst)}")]
    if kw == "uniqueItems":
        return [doc.error(path, "contains duplicate items")]
    if kw in ("minItems", "maxItems"):
        return [doc.error(path, f"must have {'at least' if kw == 'minItems' else 'at most'} {val} item(s)")]
    if kw in ("minProperties", "maxProperties"):
        return [doc.error(path, f"must have {'at least' if kw == 'minProperties' else 'at most'} {val} "
                                f"entr{'y' if val == 1 else 'ies'}")]
    if kw in ("minLength", "maxLength"):
        return [doc.error(path, f"must be {'at least' if kw == 'minLength' else 'at most'} {val} characters long")]
    return [doc.error(path, show(e.message, 200).strip('"'))]


def render_markdown(name: str) -> str:
    """A field reference of schema `name` from its titles and descriptions (docs/ is built from it)."""
    schema = load_schema(name)
    rows: list[str] = []

    def resolve(node: Mapping[str, Any]) -> Mapping[str, Any]:
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            merged = dict(schema["$defs"][ref.rsplit("/", 1)[1]])
            merged.update({k: v for k, v in node.items() if k != "$ref"})
            return merged
        return node

    def kind(node: Mapping[str, Any]) -> str:
        if "const" in node:
            return f"`{node['const']}`"
        if "enum" in node:
            return " \\| ".join(f"`{v}`" for v in node["enum"])
        t = node.get("type", "")
        bounds = [f"{node[k]}" for k in ("minimum", "maximum") if k in node]
        return f"{t} {'..'.join(bounds)}".strip() if len(bounds) == 2 else str(t)

    def walk(node: Mapping[str, Any], path: str, seen: frozenset[str]) -> None:
        node = resolve(node)
        for key, sub in node.get("properties", {}).items():
            r = resolve(sub)
            required = key in node.get("required", ())
            desc = str(r.get("description", "")).replace("\n", " ").replace("|", "\\|")
            rows.append(f"| `{path}{key}` | {kind(r)}{' (required)' if required else ''} | {desc} |")
            ref = sub.get("$ref")
            if ref is None or ref not in seen:  # recursive $defs are shown once
                walk(sub, f"{path}{key}.", seen | ({ref} if ref else set()))
        addl = node.get("additionalProperties")
        if isinstance(addl, dict):
            r = resolve(addl)
            label = str(resolve(node.get("propertyNames", {})).get("title", "name")).lower().replace(" ", "-")
            if r.get("properties"):
                walk(addl, f"{path}<{label}>.", seen)
            else:
                rows.append(f"| `{path}<{label}>` | {kind(r)} | {r.get('description', '')} |")
        items = node.get("items")
        if isinstance(items, dict) and resolve(items).get("properties"):
            walk(items, f"{path.rstrip('.')}[].", seen)

    walk(schema, "", frozenset())
    head = [f"# {schema.get('title', name)}", "", str(schema.get("description", "")), "",
            "| field | type | meaning |", "|---|---|---|"]
    return "\n".join(head + rows) + "\n"


def reference() -> str:
    """docs/intent-reference.md: both schemas as field tables."""
    note = ("<!-- Generated from schemas/*.schema.json by "
            "`python -m reconciler.intents.schema > docs/intent-reference.md`;"
            " do not edit by hand. -->\n\n")
    return note + render_markdown("reconciler") + "\n" + render_markdown("application")


if __name__ == "__main__":
    import sys

    sys.stdout.write(reference() if len(sys.argv) < 2 else render_markdown(sys.argv[1]))
