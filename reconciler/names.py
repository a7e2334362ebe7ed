"""Names that compiled resources and the devices share, so compile, drivers and the xDS
runtime agree on them without importing one another (and without any proto module).

Contract: pure helpers. OVS: every owned flow carries a cookie whose top 16 bits are
`COOKIE_PREFIX`; flow matches are compared in `canonical_match` form (OVS print order).
Switches: `SWITCH_PLATFORMS` names each platform the switch driver has, and the module under
drivers/switch/platforms that implements it (validate checks `netintent_platform` against it).
xDS: `server_listener_name` must match the bootstrap's
`server_listener_resource_name_template` (SERVER_LISTENER_TEMPLATE) with "%s" = "IP:PORT".
"""
from __future__ import annotations

import re
import zlib

SERVER_LISTENER_PREFIX = "grpc/server?xds.resource.listening_address="
SERVER_LISTENER_TEMPLATE = SERVER_LISTENER_PREFIX + "%s"


def server_listener_name(address: str, port: int) -> str:
    return f"{SERVER_LISTENER_PREFIX}{address}:{port}"


COOKIE_PREFIX = 0x4E49  # "NI": top 16 bits of every flow cookie the reconciler owns


def app_cookie(app: str) -> int:
    return (COOKIE_PREFIX << 48) | (zlib.crc32(app.encode()) & 0xFFFFFFFF)


# The order in which `ovs-ofctl dump-flows` prints match fields (after the protocol shorthand).
# Compile writes matches in this order and the driver normalises what it reads to it, so the
# two compare as plain strings. Fields not listed sort after these, alphabetically.
PROTOCOL_SHORTHANDS = ("ip", "ipv6", "arp", "rarp", "tcp", "udp", "sctp", "icmp", "tcp6", "udp6", "sctp6",
                       "icmp6", "mpls", "mplsm")
FIELD_ORDER = ("in_port", "dl_vlan", "dl_vlan_pcp", "vlan_tci", "dl_src", "dl_dst", "dl_type", "nw_src",
               "nw_dst", "arp_spa", "arp_tpa", "arp_sha", "arp_tha", "nw_proto", "nw_tos", "tp_src", "tp_dst")


def canonical_match(match: str) -> str:
    """`in_port=eth2,ip,nw_src=10.0.0.1` -> `ip,in_port=eth2,nw_src=10.0.0.1` (OVS print order)."""
    toks = [t.strip() for t in match.split(",") if t.strip()]

    def rank(tok: str) -> tuple:
        name, _, value = tok.partition("=")
        if not value and name in PROTOCOL_SHORTHANDS:
            return (0, PROTOCOL_SHORTHANDS.index(name), "")
        if name in FIELD_ORDER:
            return (1, FIELD_ORDER.index(name), "")
        return (2, 0, name)

    out = []
    for t in sorted(toks, key=rank):
        name, eq, value = t.partition("=")
        if name in ("dl_src", "dl_dst", "arp_sha", "arp_tha"):
            value = value.lower()
        elif name in ("nw_src", "nw_dst", "arp_spa", "arp_tpa") and value.endswith("/32"):
            value = value[:-3]  # OVS prints host addresses without the mask
        out.append(f"{name}{eq}{value}")
    return ",".join(out)


# netintent_platform -> module under reconciler.drivers.switch.platforms that defines PLATFORM
# Interface names the kernel refuses (`all` and `default` are the sysctl directories
# /proc/sys/net/*/conf/{all,default}; `.` and `..` are paths). They pass a character-class
# check, so every place that accepts an interface name refuses these too.
RESERVED_IFNAMES = frozenset({"all", "default", ".", ".."})


def is_interface_name(name: object, max_len: int = 15) -> bool:
    """A Linux interface name the kernel accepts, in the portable subset the reconciler allows."""
    return (isinstance(name, str) and name not in RESERVED_IFNAMES
            and re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,%d}" % (max_len - 1), name) is not None)


SWITCH_PLATFORMS = {"linux_ovs_frr": "linux_ovs_frr.render"}


def nft_ident(name: str) -> str:
    """An intent name (`[a-z][a-z0-9-]*`) as an nft identifier: nft(8) documents letters, digits,
    `_`, `.`, `/` and `\\` (Debian's nft 1.0.6 happens to lex `-` too; a documented grammar is the
    contract), so `-` becomes `_`. Intent names have no `_`, so this alone is one-to-one."""
    return name.replace("-", "_")


def svc_set_name(service: str) -> str:
    """The host layer's nft set of a local service's instance addresses (compile/host.py)."""
    return f"svc_{nft_ident(service)}"


def nft_set_name(service: str, port: str) -> str:
    """The host layer's nft set of allowed callers of `service` on `port` (compile/host.py). Not
    one-to-one (`pay-api`+`http` and `pay`+`api-http`): validate (intents/app_checks.py) refuses such pairs."""
    return f"allow_{nft_ident(service)}_{nft_ident(port)}"
