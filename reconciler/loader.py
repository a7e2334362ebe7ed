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
_SAFE_NESTING_BOUND = 2000  # below this, libyaml's recursive composer is safe

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

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
    """One parsed YAML file: `data` plus lazy line lookup through the node tree."""

    __slots__ = ("file", "data", "root")

    def __init__(self, file: str, data: Any, root: Node):
        self.file = display(file)
        self.data = data
        self.root = root

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


def _nesting_bound(text: str) -> int:
    # Block nesting needs growing indentation (at most ~2 levels per column); flow nesting
    # needs one bracket per level. Cheap upper bound on the depth libyaml will recurse to.
    longest = max((len(line) for line in text.split("\n")), default=0)
    return 2 * longest + text.count("[") + text.count("{") + 4


def _check_depth_by_events(file: str, text: str) -> None:
    depth = 0
    try:
        for ev in yaml.parse(text, Loader=_Loader):
            if isinstance(ev, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
                depth += 1
                if depth > MAX_DEPTH:
                    raise _fail(file, ev.start_mark.line + 1, f"nesting deeper than {MAX_DEPTH} levels")
            elif isinstance(ev, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
                depth -= 1
    except yaml.YAMLError:
        return  # syntax errors are reported with their position by the composer below


def parse_yaml(file: str, raw: bytes) -> Doc:
    text = decode(file, raw)
    if _nesting_bound(text) > _SAFE_NESTING_BOUND:
        _check_depth_by_events(file, text)
    loader = _Loader(text)
    try:
        root = loader.get_single_node()
    except yaml.composer.ComposerError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark else 1
        if "single document" in str(e.context or "") or "single document" in str(e.problem or ""):
            raise _fail(file, line, "more than one YAML document in the file; put one document per file") from None
        raise _fail(file, line, f"invalid YAML: {e.problem or e}") from None
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark else 1
        what = " ".join(x for x in (e.context, e.problem) if x) or "syntax error"
        raise _fail(file, line, f"invalid YAML: {what}") from None
    except yaml.YAMLError as e:  # ReaderError (control characters) and friends
        pos = getattr(e, "position", None)
        line = text.count("\n", 0, pos) + 1 if isinstance(pos, int) else 1
        raise _fail(file, line, f"invalid YAML: {getattr(e, 'reason', None) or e}") from None
    except RecursionError:
        raise _fail(file, 1, f"nesting deeper than {MAX_DEPTH} levels") from None
    finally:
        loader.dispose()
    if root is None:
        raise _fail(file, 1, "file is empty (no YAML document)")
    return Doc(file, _Builder(file).build(root), root)


_SCALAR_TAGS = {
    "tag:yaml.org,2002:int": SafeConstructor.construct_yaml_int,
    "tag:yaml.org,2002:float": SafeConstructor.construct_yaml_float,
    "tag:yaml.org,2002:bool": SafeConstructor.construct_yaml_bool,
    "tag:yaml.org,2002:null": SafeConstructor.construct_yaml_null,
}
_STR = "tag:yaml.org,2002:str"
_TIMESTAMP = "tag:yaml.org,2002:timestamp"
_MAP = "tag:yaml.org,2002:map"
_SEQ = "tag:yaml.org,2002:seq"
_MERGE = "tag:yaml.org,2002:merge"


class _Builder:
    """Node tree -> plain data, refusing what intents have no use for (see module doc)."""

    def __init__(self, file: str):
        self.file = file
        self.count = 0
        self.ctor = SafeConstructor()

    def _err(self, node: Node, message: str, path: PathT) -> LoadFailed:
        return _fail(self.file, node.start_mark.line + 1, message, format_path(path))

    def build(self, root: Node) -> Any:
        return self._node(root, (), 0)

    def _node(self, node: Node, path: PathT, depth: int) -> Any:
        self.count += 1
        if self.count > MAX_NODES:
            raise self._err(node, f"more than {MAX_NODES} values after expanding aliases", path)
        if depth > MAX_DEPTH:
            raise self._err(node, f"nesting deeper than {MAX_DEPTH} levels", path)
        tag = node.tag
        if isinstance(node, ScalarNode):
            if tag == _STR or tag == _TIMESTAMP:
                return node.value  # dates stay text: no field of ours is a date
            fn = _SCALAR_TAGS.get(tag)
            if fn is None:
                raise self._err(node, f"unsupported YAML tag {show(tag)}", path)
            try:
                return fn(self.ctor, node)
            except (ValueError, yaml.YAMLError):
                raise self._err(node, f"invalid value {show(node.value)} for tag {show(tag)}", path) from None
        if isinstance(node, SequenceNode):
            if tag != _SEQ:
                raise self._err(node, f"unsupported YAML tag {show(tag)}", path)
            return [self._node(v, path + (i,), depth + 1) for i, v in enumerate(node.value)]
        if isinstance(node, MappingNode):
            if tag != _MAP:
                raise self._err(node, f"unsupported YAML tag {show(tag)}", path)
            out: dict[str, Any] = {}
            for k, v in node.value:
                if k.tag == _MERGE:
                    raise self._err(k, "YAML merge keys (<<) are not supported; write the fields out", path)
                if not isinstance(k, ScalarNode) or k.tag != _STR:
                    shown = k.value if isinstance(k, ScalarNode) else type(k).__name__
                    raise self._err(k, f"key {show(shown)} is not a string (quote it)", path)
                key = k.value
                if key in out:
                    raise self._err(k, f"duplicate key {show(key)}", path + (key,))
                out[key] = self._node(v, path + (key,), depth + 1)
            return out
        raise self._err(node, "unsupported YAML node", path)  # pragma: no cover


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
        real = self._resolve(rel)
        try:
            st = real.stat()
        except OSError as e:
            raise _fail(rel, 1, f"cannot read file: {e.strerror}") from None
        if not stat.S_ISREG(st.st_mode):
            raise _fail(rel, 1, "not a regular file")
        if st.st_size > MAX_FILE_BYTES:
            raise _fail(rel, 1, f"file is {st.st_size} bytes, more than the limit of {MAX_FILE_BYTES} bytes")
        try:
            with open(real, "rb") as f:
                return f.read(MAX_FILE_BYTES + 1)
        except OSError as e:
            raise _fail(rel, 1, f"cannot read file: {e.strerror}") from None

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
