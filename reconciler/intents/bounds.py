"""The bound on errors per file: at most `MAX_ERRORS_PER_FILE` listed, then one `and N more` line.

Contract:
- `bound_errors(errors)` -> the errors sorted, at most `MAX_ERRORS_PER_FILE` per file, and for
  a file with more, one extra `ValidationError` placed at the first error not listed, whose
  message is `and N more error(s) in this file` (`and at least N more ...` when the producer
  stopped counting). Summaries already in `errors` (from `FileErrors`) are merged, not listed
  as errors, and so are `Doc.error`'s overflow markers (one `more` each). Idempotent.
- `FileErrors(doc)` collects the errors of one file for a producer that could make very many
  (alias expansion multiplies them: a 20 KB file can describe 800,000 errors): it looks up the
  line of the first `MAX_ERRORS_PER_FILE + 1` errors only (a line lookup walks the node tree)
  and counts the rest; `full` tells the producer it may stop, `count_more(n)` records errors
  counted without being made, `at_least()` that counting stopped early. `result()` gives the
  bounded list (with its summary line).
Producers stop making errors early; this module only keeps the output (and the memory of what
is reported, e.g. refused revisions in the store) small.
- `alias_growth(doc, raw)` -> None, or why the file's YAML aliases repeat too much: aliases may
  share what a file writes (a ports list used by several services) but not multiply it. The
  loader's own alias bound (MAX_NODES values) still lets 20 KB describe 260,000 instances, ~400 MB
  of typed models; here expanded values may be at most ALIAS_GROWTH times the values written
  (plus ALIAS_SLACK), so memory stays proportional to the bytes of the input.
"""
from __future__ import annotations

import re
from operator import attrgetter
from typing import Iterable, Sequence

from reconciler.intents.loader import MAX_ERRORS_PER_FILE, OVERFLOW_MESSAGE, Doc, ValidationError, format_path

__all__ = ["MAX_ERRORS_PER_FILE", "MAX_COUNTED_PER_FILE", "FileErrors", "alias_growth", "bound_errors", "more_error",
           "total_errors"]
# How many errors beyond the listed ones a producer may still count (cheaply, without line
# lookups) before it reports "at least N more": counting is not free either (~0.1 ms each).
MAX_COUNTED_PER_FILE = 10 * MAX_ERRORS_PER_FILE

ALIAS_GROWTH = 1.5
ALIAS_SLACK = 100
_ORDER = attrgetter("file", "line", "path", "message")  # as ValidationError orders, but in C
_MORE = re.compile(r"^and (at least )?([0-9]+) more error\(s\) in this file")


def more_error(file: str, line: int, path: str, count: int, at_least: bool = False) -> ValidationError:
    """The summary line of a file: `count` errors not listed, starting at `line`/`path`."""
    prefix = "at least " if at_least else ""
    return ValidationError(file, line, path, f"and {prefix}{count} more error(s) in this file (not listed)")


def _summary(e: ValidationError) -> tuple[int, bool] | None:
    """(count, at least) of a summary line or a Doc overflow marker; None for an error."""
    if e.message == OVERFLOW_MESSAGE:
        return 1, False
    m = _MORE.match(e.message)
    return (int(m.group(2)), bool(m.group(1))) if m else None


def bound_errors(errors: Iterable[ValidationError]) -> list[ValidationError]:
    """Sorted, at most MAX_ERRORS_PER_FILE per file, then one `and N more` line per file."""
    by_file: dict[str, list[ValidationError]] = {}
    more: dict[str, tuple[int, bool, ValidationError]] = {}
    for e in errors:
        s = _summary(e)
        if s is None:
            by_file.setdefault(e.file, []).append(e)
            continue
        n, at_least, first = more.get(e.file, (0, False, e))
        more[e.file] = (n + s[0], at_least or s[1], min(first, e))
    out: list[ValidationError] = []
    for file in sorted(set(by_file) | set(more)):
        errs = sorted(set(by_file.get(file, ())), key=_ORDER)
        n, at_least, where = more.get(file, (0, False, None))
        if len(errs) > MAX_ERRORS_PER_FILE:
            extra = errs[MAX_ERRORS_PER_FILE:]
            n += len(extra)
            where = extra[0] if where is None else min(where, extra[0])
            errs = errs[:MAX_ERRORS_PER_FILE]
        out.extend(errs)
        if n and where is not None:
            out.append(more_error(file, where.line, where.path, n, at_least))
    return sorted(out, key=_ORDER)


class FileErrors:
    """The errors of one file, located only as far as they will be listed (see module doc)."""

    __slots__ = ("doc", "errors", "more", "first_more", "stopped")

    def __init__(self, doc: Doc):
        self.doc = doc
        self.errors: list[ValidationError] = []
        self.more = 0
        self.first_more: Sequence[str | int] | None = None
        self.stopped = False

    @property
    def full(self) -> bool:
        """Listing is done and counting too: the producer may stop looking."""
        return len(self.errors) >= MAX_ERRORS_PER_FILE and self.more >= MAX_COUNTED_PER_FILE

    def add(self, path: Sequence[str | int], message: str) -> None:
        if len(self.errors) < MAX_ERRORS_PER_FILE:
            self.errors.append(self.doc.error(path, message))
            return
        if self.first_more is None:
            self.first_more = tuple(path)
        self.more += 1

    def count_more(self, n: int, path: Sequence[str | int] | None = None) -> None:
        """`n` errors found but not made (e.g. counted from a schema iterator)."""
        if n > 0 and self.first_more is None and path is not None:
            self.first_more = tuple(path)
        self.more += n

    def at_least(self) -> None:
        """The producer stopped before finding every error: the count is a lower bound."""
        self.stopped = True

    def __len__(self) -> int:
        return len(self.errors) + self.more

    def result(self) -> list[ValidationError]:
        out = list(self.errors)
        if self.more:
            path = self.first_more if self.first_more is not None else ()
            out.append(more_error(self.doc.file, self.doc.line_of(path), format_path(path), self.more, self.stopped))
        return bound_errors(out)


def alias_growth(doc: Doc, raw: bytes) -> str | None:
    """Why the aliases of `doc` repeat too much, or None (see module doc). Aliased collections
    are the same Python objects (the loader hands out the anchored value), so one walk that
    visits each object once counts both: O(values written)."""
    if b"*" not in raw:  # no alias in the text: nothing repeated
        return None
    written, expanded = _value_counts(doc.data)
    if expanded <= ALIAS_GROWTH * written + ALIAS_SLACK:
        return None
    return (f"YAML aliases expand this file to {expanded} values from {written} written; aliases may repeat at most "
            f"{ALIAS_GROWTH:g} times what a file writes: write the repeated parts out")


def _value_counts(data: object) -> tuple[int, int]:
    """(values written, values after expanding aliases) of plain loaded data."""
    size: dict[int, int] = {}   # id of a collection -> its expanded size (each collection sized once)
    written = 1  # the root; then every slot of every collection once (an alias is one slot)
    todo: list[tuple[object, bool]] = [(data, False)]
    while todo:  # iterative post-order; bounded by the collections written (each expanded once)
        v, children_done = todo.pop()
        if not isinstance(v, (dict, list)) or (id(v) in size and not children_done):
            continue
        items = list(v.values()) if isinstance(v, dict) else v
        if not children_done:
            size[id(v)] = 0  # placeholder: an anchor cannot contain itself (the loader refuses that)
            written += len(items)
            todo.append((v, True))
            todo.extend((x, False) for x in items)
            continue
        size[id(v)] = 1 + sum(size[id(x)] if isinstance(x, (dict, list)) else 1 for x in items)
    return written, size.get(id(data), 1)


def total_errors(errors: Iterable[ValidationError]) -> str:
    """How many errors a bounded list stands for: summary lines count what they summarise
    (`"1234"`, or `"at least 1234"` when a producer stopped counting)."""
    n, at_least = 0, False
    for e in errors:
        s = _summary(e)
        if s is None or e.message == OVERFLOW_MESSAGE:
            n += 1
        else:
            n += s[0]
            at_least = at_least or s[1]
    return f"at least {n}" if at_least else str(n)
