"""Device output -> raw counter readings, one parser per layer (pure).

Contract: each parser takes what one target printed for the telemetry command of its layer
(collect.py) and returns `Raw`s, keeping only counters of state the reconciler marks as its own;
anything else it prints is ignored, never attributed. Bad output raises ValueError (the caller
makes the target's share unknown).
- host (`nft -j list counters`, then one `nft -j list set inet <table> refused` per owned table):
    ("counter", table, name)                     named counters of inet tables `netintent_*`
    ("refused", table, saddr, daddr, dport)      elements of an owned table's `refused` set
- hypervisor (`ovs-ofctl --names dump-flows BR cookie=0x4e49.../0xffff...`, with statistics):
    ("flow", cookie, "priority=P,match")         as compile names flows
- switch (`ip -s -j link show type vxlan`): devices whose alias is `netintent app=<app>`:
    ("link", ifname, app, "rx"|"tx")
"""
from __future__ import annotations

import json
import re
from typing import Any, Iterable

from reconciler.drivers.ansible.driver import SEPARATOR
from reconciler.drivers.ansible.nftables import REFUSED_SET, TABLE_PREFIX
from reconciler.drivers.ansible.ovs import flow_key_name, parse_flow_line
from reconciler.names import COOKIE_PREFIX
from reconciler.telemetry.model import Raw

HOST, HYPERVISOR, SWITCH = "host", "hypervisor", "switch"
ALIAS_PREFIX = "netintent app="
_STATS = re.compile(r"\bn_packets=(\d+), n_bytes=(\d+)")


def _owned(obj: dict) -> bool:
    return obj.get("family") == "inet" and str(obj.get("table", "")).startswith(TABLE_PREFIX)


def _docs(text: str) -> Iterable[dict]:
    dec = json.JSONDecoder()
    text, i = text.strip(), 0
    while i < len(text):
        doc, end = dec.raw_decode(text, i)
        if not isinstance(doc, dict):
            raise ValueError("nft output is not a JSON object")
        yield doc
        i = end
        while i < len(text) and text[i].isspace():
            i += 1


def parse_host(target: str, text: str) -> list[Raw]:
    counters, _, sets = text.partition(SEPARATOR)
    out: list[Raw] = []
    for doc in _docs(counters):
        for item in doc.get("nftables", ()):
            c = item.get("counter")
            if isinstance(c, dict) and _owned(c):
                out.append(Raw(HOST, target, ("counter", c["table"], str(c["name"])),
                               int(c.get("packets", 0)), int(c.get("bytes", 0))))
    for doc in _docs(sets):
        for item in doc.get("nftables", ()):
            s = item.get("set")
            if isinstance(s, dict) and _owned(s) and s.get("name") == REFUSED_SET:
                out.extend(_refused(target, s))
    return out


def _refused(target: str, s: dict) -> list[Raw]:
    out = []
    for e in s.get("elem", ()):
        el = (e.get("elem") if isinstance(e, dict) else None) or {}
        val = el.get("val")
        parts = val.get("concat") if isinstance(val, dict) else None
        if not (isinstance(parts, list) and len(parts) == 3):
            continue
        c = el.get("counter") or {}
        out.append(Raw(HOST, target, ("refused", s["table"], str(parts[0]), str(parts[1]), int(parts[2])),
                       int(c.get("packets", 0)), int(c.get("bytes", 0))))
    return out


def parse_hypervisor(target: str, text: str) -> list[Raw]:
    out = []
    for line in text.splitlines():
        spec = parse_flow_line(line)
        if spec is None or spec["cookie"] >> 48 != COOKIE_PREFIX:
            continue
        m = _STATS.search(line)
        if m is None:
            raise ValueError(f"flow without statistics: {line.strip()[:120]}")
        out.append(Raw(HYPERVISOR, target, ("flow", spec["cookie"], flow_key_name(spec)),
                       int(m.group(1)), int(m.group(2))))
    return out


def parse_switch(target: str, text: str) -> list[Raw]:
    links: Any = json.loads(text) if text.strip() else []
    if not isinstance(links, list):
        raise ValueError("ip -j link output is not a list")
    out = []
    for link in links:
        alias = str(link.get("ifalias") or "")
        if not alias.startswith(ALIAS_PREFIX):
            continue      # not marked as the reconciler's: never attributed
        app, stats = alias[len(ALIAS_PREFIX):], link.get("stats64") or link.get("stats") or {}
        for direction in ("rx", "tx"):
            d = stats.get(direction) or {}
            out.append(Raw(SWITCH, target, ("link", str(link.get("ifname")), app, direction),
                           int(d.get("packets", 0)), int(d.get("bytes", 0))))
    return out
