"""IPv4 addresses and prefixes as ints (pure, cached): the model compares millions of them.

Contract: `ip_int("a.b.c.d")` is the address as an int (ValueError for anything else);
`prefix("a.b.c.d/n")` a `Prefix` (network int with host bits cleared, length) whose
`holds(address)` is containment and whose str is the usual notation. `no_gc()` suspends the
cyclic garbage collector around allocation-heavy, cycle-free work (as the compile does).
"""
from __future__ import annotations

import contextlib
import functools
import gc
from typing import Iterator, NamedTuple


class Prefix(NamedTuple):
    network: int
    prefixlen: int

    def holds(self, address: str) -> bool:
        return ip_int(address) & MASKS[self.prefixlen] == self.network

    def __str__(self) -> str:
        n = self.network
        return f"{n >> 24}.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}/{self.prefixlen}"


MASKS = tuple((0xFFFFFFFF << (32 - n)) & 0xFFFFFFFF for n in range(33))


@functools.lru_cache(maxsize=1 << 18)
def ip_int(address: str) -> int:
    """A dotted-quad IPv4 address as an int (ValueError otherwise); cached: addresses repeat."""
    parts = address.split(".")
    if len(parts) != 4 or not all(p.isdigit() and len(p) <= 3 and int(p) < 256 for p in parts):
        raise ValueError(f"not an IPv4 address: {address!r}")
    a, b, c, d = (int(p) for p in parts)
    return a << 24 | b << 16 | c << 8 | d


@functools.lru_cache(maxsize=1 << 16)
def prefix(text: str) -> Prefix:
    """`a.b.c.d/n` or `a.b.c.d` as a Prefix (host bits cleared)."""
    addr, _, plen = text.partition("/")
    n = int(plen) if plen else 32
    if not 0 <= n <= 32:
        raise ValueError(f"not an IPv4 prefix: {text!r}")
    return Prefix(ip_int(addr) & MASKS[n], n)


@contextlib.contextmanager
def no_gc() -> Iterator[None]:
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()
