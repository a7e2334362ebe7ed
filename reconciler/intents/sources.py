"""Where intent files come from: a checkout on disk or a tree in memory (e.g. git objects).

Contract: `DirSource(root)` and `TreeSource({relative posix path: bytes | Symlink})` offer the
same interface: `exists(rel)`, `read(rel) -> bytes`, `list_dir(rel) -> [names]`, raising
`LoadFailed` with a located `ValidationError` for anything wrong. Both refuse symlinks that
leave the repo, directories or FIFOs where a file is expected (never opening them, so nothing
blocks), and files over `MAX_FILE_BYTES` (checked before reading: a 10 MB file costs a stat).
"""
from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Mapping, Union

from reconciler.intents.loader import MAX_FILE_BYTES, _fail

_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)

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
        self._dirs: dict[str, str] = {}

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
        # The parent directory is resolved (and checked to be inside the repo) once and cached.
        # The entry is opened without following a symlink (ELOOP: resolve and check it, then
        # open the real file) and without blocking (a FIFO opens at once and is refused).
        parent, _, name = rel.rpartition("/")
        real_parent = self._dirs.get(parent)
        if real_parent is None:
            real_parent = self._dirs[parent] = str(self._resolve(parent) if parent else self.root)
        try:
            fd = os.open(os.path.join(real_parent, name), _OPEN_FLAGS)
        except FileNotFoundError:
            raise _fail(rel, 1, "file not found") from None
        except OSError as e:
            if e.errno != errno.ELOOP:
                raise _fail(rel, 1, f"cannot read file: {e.strerror}") from None
            try:
                fd = os.open(self._resolve(rel), _OPEN_FLAGS)
            except OSError as e2:
                raise _fail(rel, 1, f"cannot read file: {e2.strerror}") from None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise _fail(rel, 1, "not a regular file")
            if st.st_size > MAX_FILE_BYTES:
                raise _fail(rel, 1, f"file is {st.st_size} bytes, more than the limit of {MAX_FILE_BYTES} bytes")
            chunks, size = [], 0
            while size <= MAX_FILE_BYTES:
                chunk = os.read(fd, MAX_FILE_BYTES + 1 - size)
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
        except OSError as e:
            raise _fail(rel, 1, f"cannot read file: {e.strerror}") from None
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
