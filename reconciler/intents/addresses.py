"""IPv4 addresses and subnets as validate reads them: canonical dotted quads only (no leading
zeros, octets <= 255), subnets with no host bits, at most /30 and unicast.

Contract: pure functions over text. `parse_ip` gives an int or None; `parse_subnet` gives a
`Net` or None with the reason, phrased for the user (the caller adds the file and line).
"""
from __future__ import annotations

import re
import socket
from dataclasses import dataclass

from reconciler.intents.loader import show

_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_IPV4 = re.compile(rf"{_OCTET}\.{_OCTET}\.{_OCTET}\.{_OCTET}\Z")


def parse_ip(text: str) -> int | None:
    """Dotted-quad IPv4 address -> int; None unless canonical (no leading zeros, octets <= 255)."""
    if not _IPV4.match(text):
        return None
    return int.from_bytes(socket.inet_aton(text), "big")


def dotted(value: int) -> str:
    return f"{value >> 24}.{value >> 16 & 255}.{value >> 8 & 255}.{value & 255}"


@dataclass(frozen=True)
class Net:
    start: int
    end: int
    prefix: int

    def __str__(self) -> str:
        return f"{dotted(self.start)}/{self.prefix}"

    def __contains__(self, addr: int) -> bool:
        return self.start <= addr <= self.end


# Ranges no application segment may touch: "this network", loopback, link-local, multicast, reserved.
FORBIDDEN = [(parse_ip(a), parse_ip(b)) for a, b in (("0.0.0.0", "0.255.255.255"), ("127.0.0.0", "127.255.255.255"),
                                              ("169.254.0.0", "169.254.255.255"), ("224.0.0.0", "255.255.255.255"))]


def touches_forbidden(start: int, end: int) -> bool:
    for lo, hi in FORBIDDEN:
        if start <= hi and lo <= end:  # type: ignore[operator]
            return True
    return False


def parse_subnet(text: str) -> tuple[Net | None, str]:
    addr_s, _, plen_s = text.partition("/")
    addr = parse_ip(addr_s)
    if addr is None or not plen_s.isdigit() or not plen_s.isascii() or int(plen_s) > 32 \
            or (len(plen_s) > 1 and plen_s[0] == "0"):
        return None, f"invalid IPv4 subnet {show(text)}"
    plen = int(plen_s)
    mask = (0xFFFFFFFF << (32 - plen)) & 0xFFFFFFFF
    net = Net(addr & mask, (addr & mask) | (~mask & 0xFFFFFFFF), plen)
    if net.start != addr:
        return None, f"subnet {show(text)} has host bits set; did you mean {net}?"
    if plen > 30:
        return None, f"subnet {show(text)} is too small: at most /30 (room for a gateway and instances)"
    if plen < 8 or touches_forbidden(net.start, net.end):
        return None, (f"subnet {show(text)} is not a unicast range usable for workloads "
                      "(loopback, link-local, multicast, reserved or larger than /8)")
    return net, ""
