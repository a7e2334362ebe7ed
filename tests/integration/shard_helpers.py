"""Helpers for the shard tests: devices in one snapshot file shared by several daemon processes.

`locked_factory` builds snapshot drivers whose read-modify-write of the file is serialized
across processes with `flock` on `<snapshot>.lock` (the stock driver serializes threads of one
process only), so daemons writing different apps never lose each other's writes;
`locked_edit(path, fn)` changes the file by hand (drift) under the same lock.
"""
from __future__ import annotations

import fcntl
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

from reconciler.drivers import snapshot as snap
from reconciler.drivers.snapshot import SnapshotDriver


@contextmanager
def file_lock(path: Path | str) -> Iterator[None]:
    fd = os.open(f"{path}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


class LockedSnapshot(SnapshotDriver):
    def apply(self, plans, dry_run=False):  # noqa: ANN001
        if dry_run:
            return super().apply(plans, dry_run)
        with file_lock(self.path):
            return super().apply(plans, dry_run)


def locked_factory(layer, path, **_kw: Any):  # noqa: ANN001
    return LockedSnapshot(layer, path)


def locked_edit(path: Path, fn: Callable[[dict], None]) -> None:
    with file_lock(path), snap._LOCK:
        data = snap.read_snapshot(path)
        fn(data)
        snap.write_snapshot(path, data)
