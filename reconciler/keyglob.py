"""Could an fnmatch pattern match some key of a given shape? (pure)

Contract: `may_match(pattern, template)` is True exactly when some string is matched both by
`pattern` under `fnmatch.fnmatchcase` rules (`*` any run of characters, `/` included; `?` one
character; `[seq]` / `[!seq]` one character in / not in seq; an unclosed `[` is a literal) and
by `template`, whose `*` stands for one name: one or more characters other than `/` (a host,
an application). Strings are over printable ASCII (what resource keys are made of) plus the
characters the patterns name. validate uses it to tell whether an ignore rule's `key` could
ever match a protected resource (`host/*/nft-table/netintent_*`), whatever the applications
and hosts are: no enumeration of keys, no false negatives, no false positives.
It walks pairs of token positions of the two patterns (at most len(pattern) x len(template)),
without recursion.
"""
from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from functools import lru_cache

# The alphabet of resource keys; two one-character tokens overlap when some letter is in both.
_ALPHABET = tuple(chr(c) for c in range(0x20, 0x7F))


@dataclass(frozen=True)
class _Star:
    """Any run of characters, none of them in `excluded`."""

    excluded: str = ""


def _pattern_tokens(pattern: str) -> list[_Star | str]:
    """fnmatch tokens: `*` (runs collapsed), `?`, a `[...]` class (an unclosed `[` becomes the
    class `[[]`, a literal), or a literal character."""
    out: list[_Star | str] = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        i += 1
        if c == "*":
            if not out or out[-1] != _Star():
                out.append(_Star())
        elif c == "[":
            j = i
            if j < n and pattern[j] == "!":
                j += 1
            if j < n and pattern[j] == "]":
                j += 1
            while j < n and pattern[j] != "]":
                j += 1
            if j >= n:
                out.append("[[]")
            else:
                out.append(pattern[i - 1:j + 1])
                i = j + 1
        else:
            out.append(c)  # a literal, or `?`: both are one-character fnmatch patterns
    return out


def _template_tokens(template: str) -> list[_Star | str]:
    """Template tokens: each `*` is one character other than `/`, then any run of them."""
    out: list[_Star | str] = []
    for tok in _pattern_tokens(template):
        out.extend(("[!/]", _Star("/")) if isinstance(tok, _Star) else (tok,))
    return out


@lru_cache(maxsize=4096)
def _chars_overlap(x: str, y: str, excluded: str = "") -> bool:
    """Some character matches both one-character patterns and is not in `excluded`."""
    if len(x) == 1 and x != "?":
        letters: tuple[str, ...] = (x,)
    elif len(y) == 1 and y != "?":
        letters = (y,)
    else:
        letters = _ALPHABET + tuple(sorted(set(x + y)))
    return any(c not in excluded and fnmatch.fnmatchcase(c, x) and fnmatch.fnmatchcase(c, y) for c in letters)


def _steps(a: list, b: list, i: int, j: int) -> list[tuple[int, int]]:
    """Moves from token positions (i, j): a star ends, a star takes the other side's next
    character, or both sides take one character. (Both stars taking one character leaves the
    state as it was, so it never helps.)"""
    out = []
    ta = a[i] if i < len(a) else None
    tb = b[j] if j < len(b) else None
    if isinstance(ta, _Star):
        out.append((i + 1, j))
        if isinstance(tb, _Star) or (tb is not None and _chars_overlap("?", tb, ta.excluded)):
            out.append((i, j + 1))
    if isinstance(tb, _Star):
        out.append((i, j + 1))
        if isinstance(ta, _Star) or (ta is not None and _chars_overlap(ta, "?", tb.excluded)):
            out.append((i + 1, j))
    if isinstance(ta, str) and isinstance(tb, str) and _chars_overlap(ta, tb):
        out.append((i + 1, j + 1))
    return out


def may_match(pattern: str, template: str) -> bool:
    a, b = _pattern_tokens(pattern), _template_tokens(template)
    seen: set[tuple[int, int]] = set()
    todo = [(0, 0)]
    while todo:
        state = todo.pop()
        if state in seen:
            continue
        seen.add(state)
        if state == (len(a), len(b)):
            return True
        todo.extend(_steps(a, b, *state))
    return False
