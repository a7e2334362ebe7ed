"""Per-platform data for the switch driver: command sets, parsers, renderers, negation rules.

Contract: the switch driver (switch.py) is platform-agnostic. Everything that depends on the
switch's operating system lives in one `Platform` value, found in `platforms()` by the
inventory variable `netintent_platform` (default `linux_ovs_frr`):
  device_type     netmiko device type used when the inventory does not say
                  (`netintent_device_type` overrides it)
  observe         (section, command template) pairs; templates see the target's vars
                  (`{bridge}`, `{cookie}`, ...) already validated and shell-quoted. A section
                  whose `needs` var is absent on the target is not run (e.g. FRR on a switch
                  without `netintent_asn`).
  parse           raw section outputs -> typed resources (same kinds and spec shapes that
                  reconciler/compile/switch.py produces; unowned state has owned=False)
  running_config  raw section outputs -> canonical JSON-able snapshot of the running config
                  (what a rollback must restore byte for byte)
  render          (changes, observed, desired) -> ordered `Command`s (argv + the key it
                  serves); negation rules (how to remove a kind) are part of the renderer
  session         name of the session style in switch.SESSIONS that sends a command batch
                  as one unit (`posix_script`: one fail-fast sh script)
  kind_order      creation order of kinds in one session (deletes run in reverse)
Adding a platform (Cumulus NVUE, SONiC, EOS) means adding a module with these functions and
one entry here; the engine has no per-platform branches.
"""
from __future__ import annotations

import ipaddress
import re
import shlex
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

from reconciler.model import Resource
from reconciler.names import SWITCH_PLATFORMS


class InvalidValue(ValueError):
    """A value that must not reach a device (names the field and the value)."""


@dataclass(frozen=True)
class Command:
    argv: tuple[str, ...]
    key: str = ""            # ResourceKey (str) this command serves; '' = housekeeping

    def text(self) -> str:
        return shlex.join(self.argv)


@dataclass(frozen=True)
class ObserveSection:
    name: str
    template: str            # shell text; placeholders filled with quoted, validated vars
    needs: str = ""          # target var that must be set for the section to run


RenderFn = Callable[[Sequence[Any], Sequence[Resource], Sequence[Resource], Mapping[str, Any]],
                    list[Command]]


@dataclass(frozen=True)
class Platform:
    name: str
    device_type: str
    observe: tuple[ObserveSection, ...]
    template_vars: Callable[[Mapping[str, Any]], dict[str, str]]
    parse: Callable[[str, Mapping[str, str], Mapping[str, Any]], list[Resource]]
    running_config: Callable[[Mapping[str, str]], dict]
    render: RenderFn
    health: Callable[[Mapping[str, str]], list[str]]
    session: str = "posix_script"
    kind_order: tuple[str, ...] = ()
    prompt_timeout_s: float = 10.0


# ---- validators shared by platforms (values never reach a device unchecked) ------------------
IFNAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,14}$")
MAC_RE = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
APP_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


def ifname(v: Any, field: str = "interface") -> str:
    if not isinstance(v, str) or not IFNAME_RE.match(v):
        raise InvalidValue(f"{field}: invalid interface name {v!r}")
    return v


def vlan(v: Any, field: str = "vlan") -> int:
    if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 4094:
        raise InvalidValue(f"{field}: VLAN must be an integer 1..4094, got {v!r}")
    return v


def vni(v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 16777215:
        raise InvalidValue(f"vni: must be an integer 1..16777215, got {v!r}")
    return v


def ipv4(v: Any, field: str = "address") -> str:
    try:
        return str(ipaddress.IPv4Address(str(v)))
    except ValueError:
        raise InvalidValue(f"{field}: invalid IPv4 address {v!r}") from None


def prefix(v: Any, field: str = "network") -> str:
    try:
        return str(ipaddress.IPv4Network(str(v)))
    except ValueError:
        raise InvalidValue(f"{field}: invalid IPv4 prefix {v!r}") from None


def mac(v: Any) -> str:
    if not isinstance(v, str) or not MAC_RE.match(v.lower()):
        raise InvalidValue(f"mac: invalid MAC address {v!r}")
    return v.lower()


def asn(v: Any) -> int:
    try:
        n = int(v)
    except (TypeError, ValueError):
        raise InvalidValue(f"asn: invalid AS number {v!r}") from None
    if isinstance(v, bool) or not 1 <= n <= 4294967295:
        raise InvalidValue(f"asn: AS number out of range {v!r}")
    return n


def app_name(v: Any) -> str:
    if v in ("", None):
        return ""
    if not isinstance(v, str) or not APP_RE.match(v):
        raise InvalidValue(f"app: invalid application name {v!r}")
    return v


PLATFORM_MODULES = tuple(SWITCH_PLATFORMS.values())   # modules under this package defining PLATFORM
DEFAULT_PLATFORM = "linux_ovs_frr"
_PLATFORMS: dict[str, Platform] = {}


def platforms() -> dict[str, Platform]:
    """name -> Platform (loaded on first use, so platform modules may import this one)."""
    if not _PLATFORMS:
        import importlib
        for mod in PLATFORM_MODULES:
            p = importlib.import_module(f"{__package__}.{mod}").PLATFORM
            _PLATFORMS[p.name] = p
    return _PLATFORMS


def platform_of(vars: Mapping[str, Any]) -> Platform:
    name = str(vars.get("netintent_platform", DEFAULT_PLATFORM))
    try:
        return platforms()[name]
    except KeyError:
        raise InvalidValue(f"netintent_platform: unknown switch platform {name!r} "
                           f"(known: {', '.join(sorted(platforms()))})") from None
