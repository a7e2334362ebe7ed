"""Safe YAML loading of intent files with line numbers kept, from a directory or a tree in memory.

Contract:
- `parse_yaml(file, raw)` turns the bytes of one file into a `Doc`: plain JSON-like data
  (dict/list/str/int/float/bool/None) plus the YAML node tree, so that `doc.line_of(path)`
  gives the 1-based line of any JSON path. Line lookup is lazy: it walks the node tree only
  when an error is reported, so loading stays fast. Anything wrong raises `LoadFailed` with
  one `ValidationError(file, line, path, message)`; never another exception for bad input.
  Refused: files over `MAX_FILE_BYTES`, invalid UTF-8, YAML syntax errors, empty files,
  several documents in one file, duplicate keys, non-string keys, merge keys (`<<`), custom
  tags, nesting deeper than `MAX_DEPTH` and alias bombs (more than `MAX_NODES` nodes once
  aliases are expanded). libyaml's composer recurses in C and crashes on absurd nesting, so
  nesting is bounded cheaply before it runs.
- `DirSource(root)` and `TreeSource(files)` give the same read interface over a checkout or
  over `{relative path: bytes | Symlink}` (e.g. blobs read out of git objects). Both refuse
  symlinks that leave the repo, directories where a file is expected and oversized files
  (checked before reading, so a 10 MB file costs a stat, not a parse).
"""
from __future__ import annotations

import json
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Iterable, Mapping, Sequence, Union

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

MAX_FILE_BYTES = 1 << 20  # 1 MiB per intent file
MAX_DEPTH = 64
MAX_NODES = 1_000_000

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

    __slots__ = ("file", "data", "text", "_root")

    def __init__(self, file: str, data: Any, text: str, root: Node | None = None):
        self.file = display(file)
        self.data = data
        self.text = text
        self._root = root

    @property
    def root(self) -> Node:
        if self._root is None:
            loader = _Loader(self.text)
            try:
                self._root = loader.get_single_node()
            finally:
                loader.dispose()
        return self._root  # type: ignore[return-value]

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
        return ValidationError(self.file, self.line_of(path), format_path(path), message)


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
    if isinstance(e, yaml.MarkedYAMLError):
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark else 1
        what = " ".join(x for x in (e.context, e.problem) if x) or "syntax error"
        lines = text.split("\n", line)
        if mark and len(lines) >= line and "\t" in lines[line - 1][: len(lines[line - 1]) - len(lines[line - 1].lstrip())]:
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
_NUMBERS = {
    "tag:yaml.org,2002:int": SafeConstructor.construct_yaml_int,
    "tag:yaml.org,2002:float": SafeConstructor.construct_yaml_float,
}
_CTOR = SafeConstructor()
_NO_KEY = object()


class _Frame:
    __slots__ = ("value", "path", "anchor", "count", "key", "is_map")

    def __init__(self, value: Any, path: PathT, anchor: str | None, is_map: bool):
        self.value, self.path, self.anchor, self.is_map = value, path, anchor, is_map
        self.count = 1
        self.key: Any = _NO_KEY


class _EventBuilder:
    """libyaml events -> plain data, iteratively (no recursion: any nesting is safe to reject).

    Refuses what intents have no use for (see module doc). Anchors are registered when their
    node is complete, so a node cannot contain itself; every alias adds the size of what it
    copies to the node budget."""

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

    def _scalar(self, ev: Any, path: PathT) -> Any:
        tag = ev.tag
        if tag is None or tag == "!":
            tag = loader_resolve(ev.value, ev.implicit)
        if tag == _STR or tag == _TIMESTAMP:
            return ev.value  # dates stay text: no field of ours is a date
        if tag == _NULL:
            return None
        if tag == _BOOL:
            v = _CTOR.bool_values.get(ev.value.lower())
            if v is None:
                raise self._err(ev, f"invalid boolean {show(ev.value)}", path)
            return v
        fn = _NUMBERS.get(tag)
        if fn is None:
            if tag == _MERGE:
                raise self._err(ev, "YAML merge keys (<<) are not supported; write the fields out", path)
            raise self._err(ev, f"unsupported YAML tag {show(tag)}", path)
        try:
            return fn(_CTOR, ScalarNode(tag, ev.value))
        except (ValueError, yaml.YAMLError):
            raise self._err(ev, f"invalid value {show(ev.value)} for tag {show(tag)}", path) from None

    def _run(self, loader: Any) -> Any:
        anchors: dict[str, tuple[Any, int]] = {}
        stack: list[_Frame] = []
        total = 0
        root: Any = _NO_KEY
        get = loader.get_event
        ev = get()  # StreamStart
        ev = get()
        if isinstance(ev, yaml.StreamEndEvent):
            raise _fail(self.file, 1, "file is empty (no YAML document)")
        # ev is DocumentStart
        while True:
            ev = get()
            cls = type(ev)
            if cls is yaml.DocumentEndEvent:
                break
            top = stack[-1] if stack else None
            if top is not None and top.is_map and top.key is _NO_KEY:
                # expecting a key
                if cls is yaml.ScalarEvent:
                    key = self._scalar(ev, top.path)
                    if not isinstance(key, str):
                        raise self._err(ev, f"key {show(ev.value)} is not a string (quote it)", top.path)
                    if key in top.value:
                        raise self._err(ev, f"duplicate key {show(key)}", top.path + (key,))
                    top.key = key
                    continue
                if cls is yaml.MappingEndEvent:
                    pass  # handled below
                else:
                    raise self._err(ev, "keys must be plain strings", top.path)
            if top is None:
                path: PathT = ()
            elif top.is_map:
                path = top.path + (top.key,)
            else:
                path = top.path + (len(top.value),)
            if cls is yaml.ScalarEvent:
                value, size = self._scalar(ev, path), 1
                total += 1
                if ev.anchor is not None:
                    anchors[ev.anchor] = (value, 1)
            elif cls is yaml.AliasEvent:
                if ev.anchor not in anchors:
                    raise self._err(ev, f"undefined (or self-referencing) alias {show(ev.anchor)}", path)
                value, size = anchors[ev.anchor]
                total += size
                if total > MAX_NODES:
                    raise self._err(ev, f"more than {MAX_NODES} values after expanding aliases", path)
            elif cls is yaml.MappingStartEvent or cls is yaml.SequenceStartEvent:
                total += 1
                is_map = cls is yaml.MappingStartEvent
                if ev.tag is not None and ev.tag != "!" and ev.tag != (_MAP if is_map else _SEQ):
                    raise self._err(ev, f"unsupported YAML tag {show(ev.tag)}", path)
                if len(stack) >= MAX_DEPTH:
                    raise self._err(ev, f"nesting deeper than {MAX_DEPTH} levels", path[:MAX_DEPTH])
                stack.append(_Frame({} if is_map else [], path, ev.anchor, is_map))
                continue
            elif cls is yaml.MappingEndEvent or cls is yaml.SequenceEndEvent:
                done = stack.pop()
                value, size = done.value, done.count
                if done.anchor is not None:
                    anchors[done.anchor] = (value, size)
                top = stack[-1] if stack else None
            else:
                raise self._err(ev, "unexpected YAML event", path)  # pragma: no cover
            if top is None:
                root = value
                continue
            if top.is_map:
                top.value[top.key] = value
                top.key = _NO_KEY
            else:
                top.value.append(value)
            top.count += size
        ev = get()
        if not isinstance(ev, yaml.StreamEndEvent):
            raise self._err(ev, "more than one YAML document in the file; put one document per file", ())
        return root


def loader_resolve(value: str, implicit: Any) -> str:
    return _RESOLVER.resolve(ScalarNode, value, implicit)


# ---------------------------------------------------------------------------------------
# Sources: a checkout on disk or a tree in memory


@dataclass(frozen=True)
class Symlink:
    """A symbolic link inside an in-memory tree (git mode 120000); `target` as stored."""

    target: str


def _norm(rel: str) -> str | None:
    """Normalise a repo-relative posix path; None if it leaves the repo."""
    parts: list[str] = []
    for part in PurePosixPath(rel).parts:
        if part in ("", "."):
            continue
        if part == "/":
            return None
        if part == "..":
            if not parts:
                return None
            parts.pop()
        else:
            parts.append(part)
    return "/".join(parts)


class DirSource:
    """Files of an intents repo checked out at `root`."""

    def __init__(self, root: str | os.PathLike[str]):
        self.root = Path(root).resolve()
        self._dirs: dict[str, Path] = {}

    def describe(self) -> str:
        return str(self.root)

    def _resolve(self, rel: str) -> Path:
        p = (self.root / rel)
        try:
            real = p.resolve(strict=True)
        except FileNotFoundError:
            raise _fail(rel, 1, "file not found") from None
        except (OSError, RuntimeError) as e:  # symlink loops
            raise _fail(rel, 1, f"cannot resolve path: {e.__class__.__name__}") from None
        if real != self.root and self.root not in real.parents:
            raise _fail(rel, 1, "symlink points outside the repo; refusing to read it")
        return real

    def exists(self, rel: str) -> bool:
        return os.path.lexists(self.root / rel)

    def read(self, rel: str) -> bytes:
        # Fast path: the parent directory is resolved (and checked) once and cached; only an
        # entry that is itself a symlink needs a full resolve.
        parent, _, name = rel.rpartition("/")
        real_parent = self._dirs.get(parent)
        if real_parent is None:
            real_parent = self._dirs[parent] = self._resolve(parent) if parent else self.root
        path = real_parent / name
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            raise _fail(rel, 1, "file not found") from None
        except OSError as e:
            raise _fail(rel, 1, f"cannot read file: {e.strerror}") from None
        if stat.S_ISLNK(st.st_mode):
            path = self._resolve(rel)
            try:
                st = os.stat(path)
            except OSError as e:
                raise _fail(rel, 1, f"cannot read file: {e.strerror}") from None
        if not stat.S_ISREG(st.st_mode):
            raise _fail(rel, 1, "not a regular file")
        if st.st_size > MAX_FILE_BYTES:
            raise _fail(rel, 1, f"file is {st.st_size} bytes, more than the limit of {MAX_FILE_BYTES} bytes")
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))  # path is resolved: no link left
        except OSError as e:
            raise _fail(rel, 1, f"cannot read file: {e.strerror}") from None
        try:
            chunks, size = [], 0
            while size <= MAX_FILE_BYTES:
                chunk = os.read(fd, MAX_FILE_BYTES + 1 - size)
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
        finally:
            os.close(fd)
        data = b"".join(chunks)
        if len(data) > MAX_FILE_BYTES:  # grew after the stat
            raise _fail(rel, 1, f"file is larger than the limit of {MAX_FILE_BYTES} bytes")
        return data

    def list_dir(self, rel: str) -> list[str]:
        """Names (not paths) of entries in directory `rel`; [] when it does not exist."""
        if not self.exists(rel):
            return []
        real = self._resolve(rel)
        if not real.is_dir():
            raise _fail(rel, 1, "expected a directory")
        return sorted(os.listdir(real))


class TreeSource:
    """Files of an intents repo given as `{relative posix path: bytes | Symlink}`."""

    def __init__(self, files: Mapping[str, Union[bytes, Symlink]], label: str = "<tree>"):
        self.files: dict[str, Union[bytes, Symlink]] = {}
        for k, v in files.items():
            n = _norm(k)
            if n:
                self.files[n] = v
        self.label = label
        self.dirs = {str(p) for k in self.files for p in PurePosixPath(k).parents if str(p) != "."}

    def describe(self) -> str:
        return self.label

    def _resolve(self, rel: str) -> str:
        cur = _norm(rel)
        if cur is None:
            raise _fail(rel, 1, "path leaves the repo")
        for _ in range(40):  # bounded: symlink loops end here
            # resolve symlinks on each prefix, like the OS would
            parts = cur.split("/") if cur else []
            for i in range(1, len(parts) + 1):
                prefix = "/".join(parts[:i])
                entry = self.files.get(prefix)
                if isinstance(entry, Symlink):
                    if entry.target.startswith("/"):
                        raise _fail(rel, 1, "symlink points outside the repo; refusing to read it")
                    base = "/".join(parts[: i - 1])
                    nxt = _norm(f"{base}/{entry.target}" if base else entry.target)
                    if nxt is None:
                        raise _fail(rel, 1, "symlink points outside the repo; refusing to read it")
                    rest = "/".join(parts[i:])
                    cur = f"{nxt}/{rest}" if rest and nxt else (rest or nxt)
                    break
            else:
                return cur
        raise _fail(rel, 1, "too many levels of symbolic links")

    def exists(self, rel: str) -> bool:
        n = _norm(rel)
        return n is not None and (n in self.files or n in self.dirs)

    def read(self, rel: str) -> bytes:
        real = self._resolve(rel)
        data = self.files.get(real)
        if data is None:
            if real in self.dirs:
                raise _fail(rel, 1, "not a regular file")
            raise _fail(rel, 1, "file not found")
        assert isinstance(data, (bytes, bytearray))
        if len(data) > MAX_FILE_BYTES:
            raise _fail(rel, 1, f"file is {len(data)} bytes, more than the limit of {MAX_FILE_BYTES} bytes")
        return bytes(data)

    def list_dir(self, rel: str) -> list[str]:
        if not self.exists(rel):
            return []
        real = self._resolve(rel)
        if real in self.files:
            raise _fail(rel, 1, "expected a directory")
        prefix = real + "/" if real else ""
        names = {k[len(prefix):].split("/", 1)[0] for k in self.files if k.startswith(prefix)}
        return sorted(names)


Source = Union[DirSource, TreeSource]
