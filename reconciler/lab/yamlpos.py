"""Line numbers for YAML key paths, so topology errors can say `file:line: problem` (pure).

Contract: `_line_index(text)` maps key paths (tuples of keys / list indexes as strings) to
1-based line numbers; `_Ctx.err(msg, *keys)` builds a TopologyError located at the closest
known ancestor of that path.
"""
from __future__ import annotations

from typing import Any

import yaml


class TopologyError(ValueError):
    """A topology file problem; str() names the file, the line and what is wrong."""


def _line_index(text: str) -> dict[tuple[str, ...], int]:
    """Map key paths (as tuples of strings / list indexes) to 1-based line numbers."""
    out: dict[tuple[str, ...], int] = {}
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return out

    def walk(node: Any, path: tuple[str, ...], depth: int) -> None:
        if depth > 6 or node is None:
            return
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                p = path + (str(k.value),)
                out[p] = k.start_mark.line + 1
                walk(v, p, depth + 1)
        elif isinstance(node, yaml.SequenceNode):
            for i, v in enumerate(node.value):
                p = path + (str(i),)
                out[p] = v.start_mark.line + 1
                walk(v, p, depth + 1)

    walk(root, (), 0)
    return out


class _Ctx:
    def __init__(self, path: str, lines: dict[tuple[str, ...], int]):
        self.path, self.lines = path, lines

    def line(self, *keys: str | int) -> int | None:
        keys_s = tuple(str(k) for k in keys)
        while keys_s:
            if keys_s in self.lines:
                return self.lines[keys_s]
            keys_s = keys_s[:-1]
        return None

    def err(self, msg: str, *keys: str | int) -> TopologyError:
        ln = self.line(*keys)
        where = f"{self.path}:{ln}" if ln else self.path
        return TopologyError(f"{where}: {msg}")
