"""One exclusive lock between processes on this machine, held through a file.

Contract: `with exclusive(path):` blocks until this process holds an exclusive `flock(2)` on
`path` (created if missing, its parent too), and releases it on exit, also on an exception.
The kernel drops the lock when the process dies, so a `kill -9` never leaves it held. Used
for lab up/down, the shared lab resources, and creating a SQLite store's schema.
"""
from __future__ import annotations

import contextlib
import fcntl
from pathlib import Path
from typing import Iterator


@contextlib.contextmanager
def exclusive(path: str | Path) -> Iterator[None]:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
