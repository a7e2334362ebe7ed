"""Snapshot driver: observed state from a JSON file, for offline plan/diff and unit tests.

Contract: the file holds either a list of resources (`State.to_json()` format) or an object
`{"resources": [...], "unreachable": ["target", ...], "reject": ["layer/target/kind/name", ...]}`.
One driver instance serves one layer. `observe` returns the file's resources of each
requested target (UNREACHABLE for targets listed as unreachable). `apply` writes the plan's
effect back to the file (so the offline loop converges), except for keys listed in `reject`,
which fail the target like a device rejecting a change. Writes are atomic (rename).
"""
from __future__ import annotations

import json
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

from reconciler.drivers.base import ApplyResult, Observation, Target, TargetPlan
from reconciler.model import Layer, Resource, State
from reconciler.status import Action, Outcome

_LOCK = threading.Lock()  # layers share one file; serialise read-modify-write
# path -> ((path, inode, mtime_ns, size), data, state); guarded by _LOCK. write_snapshot renames
# a new file into place, so the inode changes with every write even within one mtime tick.
_PARSED: dict[str, tuple[tuple[str, int, int, int], dict[str, Any], State]] = {}


def read_snapshot(path: str | os.PathLike) -> dict[str, Any]:
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    if isinstance(data, list):
        data = {"resources": data}
    if not isinstance(data, dict) or not isinstance(data.get("resources", []), list):
        raise ValueError(f"{path}: a snapshot is a list of resources or an object with 'resources'")
    return data


def write_snapshot(path: str | os.PathLike, data: Mapping[str, Any]) -> None:
    p = Path(path)
    fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=p.name, suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2, sort_keys=True)
    os.replace(tmp, p)


class SnapshotDriver:
    def __init__(self, layer: Layer, path: str | os.PathLike, **_: Any) -> None:
        self.layer = layer
        self.path = Path(path)

    def _load(self) -> tuple[dict[str, Any], State]:
        """The file parsed once per version, shared by the layers' drivers (it can be GBs)."""
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return {"resources": []}, State.from_json([])
        stamp = (str(self.path.resolve()), st.st_ino, st.st_mtime_ns, st.st_size)
        hit = _PARSED.get(stamp[0])
        if hit is not None and hit[0] == stamp:
            return dict(hit[1]), hit[2]
        data = read_snapshot(self.path)
        state = State.from_json(data.get("resources", []))
        _PARSED.clear()  # one file at a time: a cache, not a leak
        _PARSED[stamp[0]] = (stamp, data, state)
        return dict(data), state

    def observe(self, targets: Sequence[Target]) -> dict[str, Observation]:
        with _LOCK:
            data, state = self._load()
        unreachable = set(data.get("unreachable", []))
        out = {}
        for t in targets:
            if t.name in unreachable:
                out[t.name] = Observation(t.name, Outcome.UNREACHABLE, error=f"{t.name}: unreachable (snapshot)")
                continue
            res = tuple(state.for_target(self.layer, t.name))
            out[t.name] = Observation(t.name, Outcome.NOOP, res)
        return out

    def apply(self, plans: Sequence[TargetPlan], dry_run: bool = False) -> dict[str, ApplyResult]:
        out: dict[str, ApplyResult] = {}
        with _LOCK:
            data, state = self._load()
            index = dict(state.resources)
            unreachable = set(data.get("unreachable", []))
            reject = set(data.get("reject", []))
            for tp in plans:
                name = tp.target.name
                t0 = time.monotonic()
                if not tp.changes:
                    out[name] = ApplyResult(name, Outcome.NOOP)
                    continue
                if name in unreachable:
                    out[name] = ApplyResult(name, Outcome.UNREACHABLE, error=f"{name}: unreachable (snapshot)")
                    continue
                bad = [str(c.key) for c in tp.changes if str(c.key) in reject]
                if bad:
                    out[name] = ApplyResult(name, Outcome.FAILED, error=f"{name}: change rejected: {', '.join(bad)}",
                                            failed_keys=tuple(bad))
                    continue
                if dry_run:
                    out[name] = ApplyResult(name, Outcome.DRY_RUN,
                                            details=tuple(f"{c.action.value} {c.key}" for c in tp.changes))
                    continue
                mine = {r.key: r for r in state.for_target(self.layer, name)}
                for c in tp.changes:
                    if c.action is Action.DELETE:
                        index.pop(c.key, None)
                        mine.pop(c.key, None)
                    else:
                        index[c.key] = mine[c.key] = c.desired
                out[name] = ApplyResult(name, Outcome.APPLIED, writes=len(tp.changes),
                                        details=tuple(f"{c.action.value} {c.key}" for c in tp.changes),
                                        duration_s=time.monotonic() - t0, observed=tuple(mine.values()))
            if not dry_run:
                data["resources"] = [r.to_json() for r in sorted(index.values(), key=lambda r: r.key.sort_key())]
                write_snapshot(self.path, data)
        return out


def snapshot_driver(layer: Layer, path: str | os.PathLike, **kw: Any) -> SnapshotDriver:
    return SnapshotDriver(layer, path, **kw)


def snapshot_of(resources: Sequence[Resource]) -> dict[str, Any]:
    return {"resources": [r.to_json() for r in resources]}
