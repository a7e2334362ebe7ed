"""Safe YAML loading of intent files with line numbers kept, from a directory or a tree in memory.

Contract:
- `parse_yaml(file, raw)` turns the bytes of one file into a `Doc`: plain JSON-like data
  (dict/list/str/int/float/bool/None, YAML 1.1 scalars as PyYAML's SafeLoader reads them,
  dates kept as text) and the text, so that `doc.line_of(path)` gives the 1-based line of any
  JSON path. Data is built iteratively from libyaml's event stream; the node tree (for line
  numbers) is composed only when an error is reported, so loading stays fast and small.
  Anything wrong raises `LoadFailed` with one `ValidationError(file, line, path, message)`;
  never another exception for bad input. Refused: files over `MAX_FILE_BYTES`, invalid UTF-8,
  YAML syntax errors, empty files, several documents in one file, duplicate keys, non-string
  keys, merge keys (`<<`), tags other than the core schema's, nesting deeper than
  `MAX_DEPTH` (libyaml's composer recurses in C and crashes on absurd nesting: it never sees
  such a file) and alias bombs (more than `MAX_NODES` values once aliases are expanded).
- `Doc.error(path, message)` locates at most `MAX_ERRORS_PER_FILE` errors per validation
  (`Doc.reset_errors()`); beyond that it returns one shared overflow marker, which
  reconciler.intents.bounds.bound_errors folds into an `and N more` line.
- `DirSource`, `TreeSource` and `Symlink` (in reconciler.intents.sources) read a
  checkout or an in-memory tree `{relative path: bytes | Symlink}` with the same limits.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence, Union

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

MAX_FILE_BYTES = 1 << 20  # 1 MiB per intent file
MAX_DEPTH = 64
MAX_NODES = 1_000_000
# Errors one file lists (reconciler.intents.bounds); `Doc.error` locates no more than these.
MAX_ERRORS_PER_FILE = 100
OVERFLOW_MESSAGE = "(error beyond the per-file limit, not located)"

_BaseLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _MemoResolver(yaml.resolver.Resolver):
    """YAML 1.1 implicit tags (the Python part of parsing, called per scalar), memoised."""

    _memo: dict[tuple[str, tuple[bool, bool]], str] = {}

    def resolve(self, kind: type, value: Any, implicit: Any) -> str:
        if kind is ScalarNode and implicit is not None:
            key = (value, tuple(implicit))
            tag = self._memo.get(key)
            if tag is None:
                if len(self._memo) > 100_000:
                    self._memo.clear()
                tag = self._memo[key] = super().resolve(kind, value, implicit)
            return tag
        return super().resolve(kind, value, implicit)


_RESOLVER = _MemoResolver()


class _Loader(_BaseLoader):  # type: ignore[misc, valid-type]
    def resolve(self, kind: type, value: Any, implicit: Any) -> str:
        return _RESOLVER.resolve(kind, value, implicit)


PathT = tuple[Union[str, int], ...]


@dataclass(frozen=True, order=True)
class ValidationError:
    """One problem in the intents repo, sortable by file, line, path, message."""

    file: str
    line: int
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.path}: {self.message}"

    def to_json(self) -> dict[str, Any]:
        return {"file": self.file, "line": self.line, "path": self.path, "message": self.message}


class LoadFailed(Exception):
    def __init__(self, error: ValidationError):
        super().__init__(str(error))
        self.error = error


_PLAIN_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2066-\u2069\ufeff]")


def show(value: Any, limit: int = 60) -> str:
    """A value for an error message: quoted, control/bidi characters escaped, truncated."""
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    if len(text) > limit:
        text = text[:limit] + "..."
    text = _UNPRINTABLE.sub(lambda m: "\\u%04x" % ord(m.group()), text.replace("\\", "\\\\"))
    return '"' + text.replace('"', '\\"') + '"' if isinstance(value, str) else text


def display(file: str) -> str:
    """A file name safe to print (control and bidi characters escaped)."""
    return _UNPRINTABLE.sub(lambda m: "\\u%04x" % ord(m.group()), file)


def format_path(path: Iterable[str | int]) -> str:
    """`$.spec.services.web.instances[0].address`; odd keys as `$["we b"]` (escaped)."""
    out = ["$"]
    for p in path:
        if isinstance(p, int):
            out.append(f"[{p}]")
        elif _PLAIN_KEY.match(p):
            out.append("." + p)
        else:
            out.append("[" + show(p, 40) + "]")
    text = "".join(out)
    return text if len(text) <= 200 else text[:100] + "..." + text[-60:]


class Doc:
    """One parsed YAML file: `data` plus line lookup through the node tree.

    The node tree is not kept after loading (it costs ~50x the data in memory); the text is,
    and the tree is composed again, once, the first time a line is asked for."""

    __slots__ = ("file", "data", "text", "_root", "errors_made", "_overflow")

    def __init__(self, file: str, data: Any, text: str, root: Node | None = None):
        self.file = display(file)
        self.data = data
        self.text = text
        self._root = root
        self.errors_made = 0
        self._overflow: ValidationError | None = None

    @property
    def root(self) -> Node:
        if self._root is None:
            loader = _Loader(self.text)
            try:
                self._root = loader.get_single_node()
            finally:
                loader.dispose()
        return self._root

    def line_of(self, path: Sequence[str | int]) -> int:
        """Line of the node at `path`; for a mapping member, the line of its key.

        Stops at the deepest node that exists, so a missing field reports its parent."""
        node: Node = self.root
        line = node.start_mark.line + 1
        for step in path:
            if isinstance(node, MappingNode) and isinstance(step, str):
                for k, v in node.value:
                    if isinstance(k, ScalarNode) and k.value == step:
                        line, node = k.start_mark.line + 1, v
                        break
                else:
                    return line
            elif isinstance(node, SequenceNode) and isinstance(step, int) and 0 <= step < len(node.value):
                node = node.value[step]
                line = node.start_mark.line + 1
            else:
                return line
        return line

    def error(self, path: Sequence[str | int], message: str) -> ValidationError:
        """A located error. Beyond MAX_ERRORS_PER_FILE of them since `reset_errors()`, the one shared
        overflow marker instead (message OVERFLOW_MESSAGE, located at the first error not listed):
        aliases let a small file describe ~10^6 errors, and a line lookup walks the node tree.
        reconciler.intents.bounds.fold_overflow turns the markers into one `and N more` line."""
        self.errors_made += 1
        if self.errors_made <= MAX_ERRORS_PER_FILE:
            return ValidationError(self.file, self.line_of(path), format_path(path), message)
        if self._overflow is None:
            self._overflow = ValidationError(self.file, self.line_of(path), format_path(path), OVERFLOW_MESSAGE)
        return self._overflow

    def reset_errors(self) -> None:
        """Start a new error budget (one per validation: a Doc is reused while its file is unchanged)."""
        self.errors_made, self._overflow = 0, None


def _fail(file: str, line: int, message: str, path: str = "$") -> LoadFailed:
    return LoadFailed(ValidationError(display(file), line, path, message))


def decode(file: str, raw: bytes) -> str:
    if len(raw) > MAX_FILE_BYTES:
        raise _fail(file, 1, f"file is {len(raw)} bytes, more than the limit of {MAX_FILE_BYTES} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        raise _fail(file, line, f"not valid UTF-8 (byte 0x{raw[e.start]:02x} at offset {e.start})") from None
    return text[1:] if text.startswith("\ufeff") else text


def _yaml_error(file: str, text: str, e: Exception) -> LoadFailed:
    if isinstance(e, yaml.MarkedYAMLError) and "maximum nesting depth" in str(e.problem or ""):
        # PyYAML >= 6.0.4 stops absurd flow nesting in its scanner, before our own bound sees
        # the events: report it in the same words.
        mark = e.problem_mark or e.context_mark
        return _fail(file, mark.line + 1 if mark else 1, f"nesting deeper than {MAX_DEPTH} levels")
    if isinstance(e, yaml.MarkedYAMLError):
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark else 1
        what = " ".join(x for x in (e.context, e.problem) if x) or "syntax error"
        lines = text.split("\n", line)
        bad = lines[line - 1] if mark and len(lines) >= line else ""
        if "\t" in bad[: len(bad) - len(bad.lstrip())]:
            what += " (tabs are not allowed for indentation; use spaces)"
        return _fail(file, line, f"invalid YAML: {what}")
    pos = getattr(e, "position", None)  # ReaderError: control characters and friends
    line = text.count("\n", 0, pos) + 1 if isinstance(pos, int) else 1
    return _fail(file, line, f"invalid YAML: {getattr(e, 'reason', None) or e}")


def parse_yaml(file: str, raw: bytes) -> Doc:
    text = decode(file, raw)
    return Doc(file, _EventBuilder(file, text).build(), text)


_STR = "tag:yaml.org,2002:str"
_TIMESTAMP = "tag:yaml.org,2002:timestamp"
_MAP = "tag:yaml.org,2002:map"
_SEQ = "tag:yaml.org,2002:seq"
_MERGE = "tag:yaml.org,2002:merge"
_BOOL = "tag:yaml.org,2002:bool"
_NULL = "tag:yaml.org,2002:null"
_INT = "tag:yaml.org,2002:int"
_NUMBERS = {
    "tag:yaml.org,2002:int": SafeConstructor.construct_yaml_int,
    "tag:yaml.org,2002:float": SafeConstructor.construct_yaml_float,
}
_CTOR = SafeConstructor()
_NO_KEY = object()


class _Frame:
    __slots__ = ("value", "anchor", "count", "key", "is_map")

    def __init__(self, value: Any, anchor: str | None, is_map: bool):
        self.value, self.anchor, self.is_map = value, anchor, is_map
        self.count = 1
        self.key: Any = _NO_KEY


def _stack_path(stack: list[_Frame]) -> PathT:
    """JSON path of the node being built: one component per open collection (computed on error only)."""
    out: list[str | int] = []
    for f in stack:
        if f.is_map:
            if f.key is _NO_KEY:
                break
            out.append(f.key)
        else:
            out.append(len(f.value))
    return tuple(out)


class _EventBuilder:
    """libyaml events -> plain data, iteratively (no recursion: any nesting is safe to reject).

    Refuses what intents have no use for (see module doc). Anchors are registered when their
    node is complete, so a node cannot contain itself; every alias adds the size of what it
    copies to the node budget. Paths are computed only for errors."""

    def __init__(self, file: str, text: str):
        self.file, self.text = file, text

    def _err(self, ev: Any, message: str, path: PathT) -> LoadFailed:
        return _fail(self.file, ev.start_mark.line + 1, message, format_path(path))

    def build(self) -> Any:
        loader = _Loader(self.text)
        try:
            return self._run(loader)
        except yaml.YAMLError as e:
            raise _yaml_error(self.file, self.text, e) from None
        finally:
            loader.dispose()

    def _scalar(self, ev: Any, tag: str, stack: list[_Frame]) -> Any:
        """Non-string scalars (the string case is inlined in _run)."""
        if tag == _NULL:
            return None
        if tag == _BOOL:
            v = _CTOR.bool_values.get(ev.value.lower())
            if v is None:
                raise self._err(ev, f"invalid boolean {show(ev.value)}", _stack_path(stack))
            return v
        if tag == _INT and ev.value.isdigit() and ev.value.isascii() and (ev.value[0] != "0" or ev.value == "0"):
            return int(ev.value)  # plain decimal: the common case
        fn = _NUMBERS.get(tag)
        if fn is None:
            if tag == _MERGE:
                raise self._err(ev, "YAML merge keys (<<) are not supported; write the fields out", _stack_path(stack))
            raise self._err(ev, f"unsupported YAML tag {show(tag)}", _stack_path(stack))
        try:
            return fn(_CTOR, ScalarNode(tag, ev.value))
        except (ValueError, yaml.YAMLError):
            raise self._err(ev, f"invalid value {show(ev.value)} for tag {show(tag)}", _stack_path(stack)) from None

    def _run(self, loader: Any) -> Any:
        get = loader.get_event
        get()  # StreamStart
        if isinstance(get(), yaml.StreamEndEvent):
            raise _fail(self.file, 1, "file is empty (no YAML document)")
        root = self._document(get)
        ev = get()
        if not isinstance(ev, yaml.StreamEndEvent):
            raise self._err(ev, "more than one YAML document in the file; put one document per file", ())
        return root

    def _document(self, get: Callable[[], Any]) -> Any:
        """The events of one document, up to its DocumentEnd, as plain data (the hot loop: the
        common cases stay inline, the checks of rarer events are methods)."""
        Scalar, Alias = yaml.ScalarEvent, yaml.AliasEvent
        MapStart, SeqStart = yaml.MappingStartEvent, yaml.SequenceStartEvent
        MapEnd, SeqEnd, DocEnd = yaml.MappingEndEvent, yaml.SequenceEndEvent, yaml.DocumentEndEvent
        memo = _MemoResolver._memo
        resolve = _RESOLVER.resolve
        anchors: dict[str, tuple[Any, int]] = {}
        stack: list[_Frame] = []
        total = 0
        root: Any = _NO_KEY
        top: _Frame | None = None
        while True:
            ev = get()
            cls = type(ev)
            if cls is Scalar:
                tag = ev.tag
                if tag is None or tag == "!":
                    tag = memo.get((ev.value, ev.implicit)) or resolve(ScalarNode, ev.value, ev.implicit)
                value = ev.value if (tag == _STR or tag == _TIMESTAMP) else self._scalar(ev, tag, stack)
                if top is not None and top.is_map and top.key is _NO_KEY:
                    if type(value) is not str or value in top.value:
                        raise self._bad_key(ev, value, stack)
                    top.key = value
                    continue
                size = 1
                total += 1
                if ev.anchor is not None:
                    anchors[ev.anchor] = (value, 1)
            elif cls is MapStart or cls is SeqStart:
                top = self._open(ev, cls is MapStart, top, stack)
                total += 1
                stack.append(top)
                continue
            elif cls is MapEnd or cls is SeqEnd:
                done = stack.pop()
                value, size = done.value, done.count
                if done.anchor is not None:
                    anchors[done.anchor] = (value, size)
                top = stack[-1] if stack else None
            elif cls is Alias:
                value, size = self._alias(ev, top, stack, anchors)
                total += size
                if total > MAX_NODES:
                    raise self._err(ev, f"more than {MAX_NODES} values after expanding aliases", _stack_path(stack))
            elif cls is DocEnd:
                return root
            else:
                raise self._err(ev, "unexpected YAML event", _stack_path(stack))  # pragma: no cover
            if top is None:
                root = value
                continue
            if top.is_map:
                top.value[top.key] = value
                top.key = _NO_KEY
            else:
                top.value.append(value)
            top.count += size

    def _bad_key(self, ev: Any, value: Any, stack: list[_Frame]) -> LoadFailed:
        """The error for a scalar key that is not a string or is already in its mapping."""
        if type(value) is not str:
            return self._err(ev, f"key {show(ev.value)} is not a string (quote it)", _stack_path(stack))
        return self._err(ev, f"duplicate key {show(value)}", _stack_path(stack) + (value,))

    def _open(self, ev: Any, is_map: bool, top: _Frame | None, stack: list[_Frame]) -> _Frame:
        """The frame of a mapping or sequence that starts (not as a key, core tag, within MAX_DEPTH)."""
        if top is not None and top.is_map and top.key is _NO_KEY:
            raise self._err(ev, "keys must be plain strings", _stack_path(stack))
        if ev.tag is not None and ev.tag != "!" and ev.tag != (_MAP if is_map else _SEQ):
            raise self._err(ev, f"unsupported YAML tag {show(ev.tag)}", _stack_path(stack))
        if len(stack) >= MAX_DEPTH:
            raise self._err(ev, f"nesting deeper than {MAX_DEPTH} levels", _stack_path(stack))
        return _Frame({} if is_map else [], ev.anchor, is_map)

    def _alias(self, ev: Any, top: _Frame | None, stack: list[_Frame],
               anchors: dict[str, tuple[Any, int]]) -> tuple[Any, int]:
        """The value an alias copies and its size in values (not as a key, anchor complete)."""
        if top is not None and top.is_map and top.key is _NO_KEY:
            raise self._err(ev, "keys must be plain strings", _stack_path(stack))
        if ev.anchor not in anchors:
            raise self._err(ev, f"undefined (or self-referencing) alias {show(ev.anchor)}", _stack_path(stack))
        return anchors[ev.anchor]


def loader_resolve(value: str, implicit: Any) -> str:
    return _RESOLVER.resolve(ScalarNode, value, implicit)

