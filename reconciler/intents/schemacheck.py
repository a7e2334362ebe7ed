"""A fast yes/no JSON Schema check, compiled once, for the subset of draft 2020-12 our schemas use.

Contract: `compile_schema(schema)` returns `check(instance) -> bool`. It is *sound for
"valid"*: when it returns True, jsonschema's Draft 2020-12 validator (with our `pattern`
semantics: `$` = end of string) accepts the instance too. It may return False for an
instance jsonschema accepts (then the caller asks jsonschema, which also writes the error
messages), so it only has to be fast on the common, valid case. Compiling a schema that uses a
keyword outside the supported subset raises `ValueError`, so a schema edit can never silently
weaken validation. Supported: type, properties, additionalProperties, required, propertyNames,
minProperties, maxProperties, items, minItems, maxItems, uniqueItems, pattern, minLength,
maxLength, minimum, maximum, const, enum, local `$ref` (`#/$defs/...`, also recursive);
annotations (title, description, default, examples, $comment, $schema, $id, $defs, x-*) are
ignored.
"""
from __future__ import annotations

import re
from functools import partial
from typing import Any, Callable, Mapping

Check = Callable[[Any], bool]


# Check builders bound with functools.partial (the value checked comes last).
def _is_exactly(t: type, x: Any) -> bool:
    return type(x) is t


def _any_of(checks: list[Check], x: Any) -> bool:
    return any(f(x) for f in checks)


def _in_enum(options: list[Any], x: Any) -> bool:
    return any(_strict_equal(x, o) for o in options)


def _matches(rx: "re.Pattern[str]", x: Any) -> bool:
    return type(x) is not str or rx.search(x) is not None

_ANNOTATIONS = {"title", "description", "default", "examples", "$comment", "$schema", "$id", "$defs"}
_SUPPORTED = {"type", "properties", "additionalProperties", "required", "propertyNames", "minProperties",
              "maxProperties", "items", "minItems", "maxItems", "uniqueItems", "pattern", "minLength",
              "maxLength", "minimum", "maximum", "const", "enum", "$ref"}


def ecma_pattern(pattern: str) -> re.Pattern[str]:
    """ECMA-262 `$` without the multiline flag matches only at the end; Python's also before a final \\n."""
    src = pattern[:-1] + r"\Z" if pattern.endswith("$") and not pattern.endswith("\\$") else pattern
    return re.compile(src)


def _is_integer(x: Any) -> bool:
    return (type(x) is int) or (type(x) is float and x.is_integer())


_TYPES: dict[str, Check] = {
    "object": lambda x: type(x) is dict,
    "array": lambda x: type(x) is list,
    "string": lambda x: type(x) is str,
    "integer": _is_integer,
    "number": lambda x: type(x) in (int, float),
    "boolean": lambda x: type(x) is bool,
    "null": lambda x: x is None,
}


_EXACT = {"object": dict, "array": list, "string": str, "boolean": bool}


def _strict_equal(a: Any, b: Any) -> bool:
    return type(a) is type(b) and a == b and type(a) in (str, int, float, bool, type(None))


class _Compiler:
    def __init__(self, root: Mapping[str, Any]):
        self.root = root
        self.refs: dict[str, Check] = {}

    def ref(self, ref: str) -> Check:
        if ref in self.refs:
            return self.refs[ref]
        if not ref.startswith("#/"):
            raise ValueError(f"only local $ref is supported, got {ref!r}")
        target: Any = self.root
        for part in ref[2:].split("/"):
            target = target[part.replace("~1", "/").replace("~0", "~")]
        holder: list[Check] = []
        self.refs[ref] = lambda x: holder[0](x)  # recursion-safe: resolved after compiling
        holder.append(self.compile(target))
        self.refs[ref] = holder[0]
        return holder[0]

    def compile(self, schema: Any) -> Check:
        if schema is True:
            return lambda x: True
        if schema is False:
            return lambda x: False
        if not isinstance(schema, Mapping):
            raise ValueError(f"schema must be an object or a boolean, got {schema!r}")
        unknown = {k for k in schema if k not in _SUPPORTED and k not in _ANNOTATIONS and not k.startswith("x-")}
        if unknown:
            raise ValueError(f"unsupported JSON Schema keyword(s): {sorted(unknown)}")
        checks: list[Check] = []
        if "$ref" in schema:
            checks.append(self.ref(schema["$ref"]))
        if "type" in schema:
            ts = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
            if len(ts) == 1 and ts[0] in _EXACT:
                exact = _EXACT[ts[0]]
                checks.append(partial(_is_exactly, exact))
            else:
                tfs = [_TYPES[t] for t in ts]
                checks.append(partial(_any_of, tfs))
        if "const" in schema:
            c = schema["const"]
            checks.append(partial(_strict_equal, c))
        if "enum" in schema:
            opts = list(schema["enum"])
            checks.append(partial(_in_enum, opts))
        checks.extend(self._object(schema))
        checks.extend(self._array(schema))
        checks.extend(self._scalar(schema))
        if not checks:
            return lambda x: True
        if len(checks) == 1:
            return checks[0]
        if len(checks) == 2:
            a, b = checks
            return lambda x: a(x) and b(x)
        cs = tuple(checks)

        def chain(x: Any) -> bool:
            for c in cs:
                if not c(x):
                    return False
            return True

        return chain

    def _object(self, s: Mapping[str, Any]) -> list[Check]:
        out: list[Check] = []
        props = {k: self.compile(v) for k, v in s.get("properties", {}).items()}
        addl = s.get("additionalProperties", True)
        addl_check = None if addl is True else self.compile(addl)
        required = tuple(s.get("required", ()))
        names = self.compile(s["propertyNames"]) if "propertyNames" in s else None
        lo, hi = s.get("minProperties"), s.get("maxProperties")
        if not (props or addl_check or required or names or lo is not None or hi is not None):
            return out

        def obj(x: Any) -> bool:
            if type(x) is not dict:
                return True
            if lo is not None and len(x) < lo or hi is not None and len(x) > hi:
                return False
            for r in required:
                if r not in x:
                    return False
            for k, v in x.items():
                if names is not None and not names(k):
                    return False
                f = props.get(k)
                if f is not None:
                    if not f(v):
                        return False
                elif addl_check is not None and not addl_check(v):
                    return False
            return True

        out.append(obj)
        return out

    def _array(self, s: Mapping[str, Any]) -> list[Check]:
        items = self.compile(s["items"]) if "items" in s else None
        lo, hi, uniq = s.get("minItems"), s.get("maxItems"), bool(s.get("uniqueItems"))
        if items is None and lo is None and hi is None and not uniq:
            return []

        def arr(x: Any) -> bool:
            if type(x) is not list:
                return True
            if lo is not None and len(x) < lo or hi is not None and len(x) > hi:
                return False
            if uniq:  # conservative: only hashable scalars are judged unique here
                if not all(type(i) in (str, int) for i in x):
                    return False
                if len({(type(i), i) for i in x}) != len(x):
                    return False
            if items is not None:
                for i in x:
                    if not items(i):
                        return False
            return True

        return [arr]

    def _scalar(self, s: Mapping[str, Any]) -> list[Check]:
        out: list[Check] = []
        if "pattern" in s:
            rx = ecma_pattern(s["pattern"])
            out.append(partial(_matches, rx))
        lo_len, hi_len = s.get("minLength"), s.get("maxLength")
        if lo_len is not None or hi_len is not None:
            out.append(lambda x: type(x) is not str or ((lo_len is None or len(x) >= lo_len)
                                                       and (hi_len is None or len(x) <= hi_len)))
        lo, hi = s.get("minimum"), s.get("maximum")
        if lo is not None or hi is not None:
            out.append(lambda x: type(x) not in (int, float) or ((lo is None or x >= lo) and (hi is None or x <= hi)))
        return out


def compile_schema(schema: Mapping[str, Any]) -> Check:
    return _Compiler(schema).compile(schema)
