"""The inventory variables an intents repo may set, and the values each may take.

Contract: the inventory lives in the intents repo, so whoever can push sets it; the reconciler
hands that file to Ansible (running as root on the reconciler host) and to netmiko. So only the
variables of `ALLOWED` (docs/inventory.md, one row each) are accepted, each with a value check:
- `var_problem(name, value, key_dirs)` -> None when `name: value` is acceptable, else what is
  wrong (a sentence starting with "is" / "must be", or for a refused name why it is refused).
  Refused on purpose: ssh arguments and executables (`ansible_ssh_common_args: -o
  ProxyCommand=...` runs any command on the reconciler host), become, connection plugins other
  than `ssh` (`local` would make the reconciler host a target), interpreters other than an
  absolute `ansible_python_interpreter`, and everything else nobody reads.
- `jinja_marker(text)` -> the Jinja delimiter in `text` (`{{`, `{%`, `{#`) or None: Ansible
  renders inventory strings as templates, so `{{ lookup('pipe', ...) }}` anywhere would run.
- Key and known_hosts paths must be absolute, normalised, free of characters ssh would split,
  and inside one of the key directories: `key_dirs_from_env()` reads RECONCILER_KEY_DIR
  (`os.pathsep`-separated absolute directories; default `DEFAULT_KEY_DIR`). Checked by name,
  not on disk: the pre-receive hook validates on the git server, where the files do not exist.
- `netintent_platform` must name a platform of reconciler/drivers/switch/platforms.
"""
from __future__ import annotations

import difflib
import ipaddress
import os
import re
from dataclasses import dataclass
from typing import Any, Callable

from reconciler.names import SWITCH_PLATFORMS, is_interface_name

HOST_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}\Z")
ADDR_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,252}\Z")
DEVTYPE_RE = re.compile(r"^[a-z][a-z0-9_]{0,40}\Z")
XDS_NODE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}\Z")
USER_RE = re.compile(r"^[a-z_][a-z0-9_.-]{0,31}\Z")
MAC_RE = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}\Z")
ABS_PATH_RE = re.compile(r"^/[A-Za-z0-9_./+-]{1,4094}\Z")   # absolute, nothing ssh or a shell would split
_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
DNS_NAME_RE = re.compile(rf"^(?=.{{1,253}}\Z){_LABEL}(\.{_LABEL})*\Z")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
JINJA_MARKERS = ("{{", "{%", "{#")
KEY_DIR_ENV = "RECONCILER_KEY_DIR"
DEFAULT_KEY_DIR = "/var/lib/netintent"
ANSIBLE_VAR_DIRS = ("group_vars", "host_vars")


def jinja_marker(text: str) -> str | None:
    for m in JINJA_MARKERS:
        if m in text:
            return m
    return None


def key_dirs_from_env() -> tuple[str, ...]:
    """Directories key and known_hosts files named by a repo's inventory must be in."""
    raw = os.environ.get(KEY_DIR_ENV, "") or DEFAULT_KEY_DIR
    return tuple(os.path.normpath(d) for d in raw.split(os.pathsep) if d.startswith("/"))


def _int_in(lo: int, hi: int) -> Callable[[Any, tuple[str, ...]], bool]:
    return lambda v, _: isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi


def _rx(rx: re.Pattern[str]) -> Callable[[Any, tuple[str, ...]], bool]:
    return lambda v, _: isinstance(v, str) and bool(rx.match(v))


def _plain_abs_path(v: Any) -> bool:
    return isinstance(v, str) and bool(ABS_PATH_RE.match(v)) and os.path.normpath(v) == v and "/./" not in v + "/"


def _key_path(v: Any, key_dirs: tuple[str, ...]) -> bool:
    return _plain_abs_path(v) and any(v.startswith(d.rstrip("/") + "/") for d in key_dirs)


def _ipv4(v: Any, _: tuple[str, ...] = ()) -> bool:
    try:
        ipaddress.IPv4Address(v)
        return isinstance(v, str)
    except ValueError:
        return False


def _host_port(v: Any, _: tuple[str, ...]) -> bool:
    """`host:port` of a gRPC endpoint: DNS name or IPv4 address, or `[IPv6]`; port 1..65535."""
    if not isinstance(v, str) or len(v) > 300:
        return False
    host, sep, port = v.rpartition(":")
    if not sep or not port.isascii() or not port.isdigit() or len(port) > 5 or not 1 <= int(port) <= 65535:
        return False
    if host.startswith("[") and host.endswith("]"):
        try:
            return ipaddress.IPv6Address(host[1:-1]).scope_id is None
        except ValueError:
            return False
    return _ipv4(host) or (bool(DNS_NAME_RE.match(host)) and not host.replace(".", "").isdigit())


def _password(v: Any, _: tuple[str, ...]) -> bool:
    return isinstance(v, str) and 0 < len(v) <= 1024 and not _CONTROL.search(v)


def _platform(v: Any, _: tuple[str, ...]) -> bool:
    return isinstance(v, str) and v in SWITCH_PLATFORMS


def _known_platforms() -> str:
    return ", ".join(sorted(SWITCH_PLATFORMS))


def _iface(v: Any, _: tuple[str, ...] = ()) -> bool:
    return is_interface_name(v)


@dataclass(frozen=True)
class VarRule:
    check: Callable[[Any, tuple[str, ...]], bool]
    what: str  # what the value must be, for the message


# name -> rule. docs/inventory.md has one row per name (tests/unit/test_inventory_trust.py checks).
ALLOWED: dict[str, VarRule] = {
    "ansible_host": VarRule(_rx(ADDR_RE), "a host name or IP address"),
    "ansible_port": VarRule(_int_in(1, 65535), "a port number 1..65535"),
    "ansible_user": VarRule(_rx(USER_RE), "a user name"),
    "ansible_password": VarRule(_password, "a password of 1..1024 printable characters (a quoted string)"),
    "ansible_connection": VarRule(lambda v, _: v == "ssh", 'ssh (other connection plugins are refused: "local" '
                                  "would run the playbooks on the reconciler host itself)"),
    "ansible_ssh_private_key_file": VarRule(_key_path, "an absolute, normalised path inside a key directory"),
    "ansible_python_interpreter": VarRule(lambda v, _: _plain_abs_path(v), "an absolute, normalised path"),
    "ansible_group_priority": VarRule(_int_in(1, 10000), "an integer 1..10000"),
    "netintent_known_hosts": VarRule(_key_path, "an absolute, normalised path inside a key directory"),
    "netintent_interface": VarRule(_iface, "an interface name (not all/default)"),
    "netintent_hypervisor": VarRule(_rx(HOST_RE), "a host name of group hypervisors"),
    "netintent_hypervisor_port": VarRule(_iface, "an interface name (not all/default)"),
    "netintent_hypervisor_ports": VarRule(
        lambda v, _: isinstance(v, dict) and len(v) <= 64 and all(_iface(k) and _iface(x) for k, x in v.items()),
        "a mapping of interface names to hypervisor interface names"),
    "netintent_mac": VarRule(_rx(MAC_RE), "a lower-case MAC address"),
    "netintent_bridge": VarRule(_iface, "a bridge name"),
    "netintent_uplink": VarRule(_iface, "an interface name (not all/default)"),
    "netintent_leaf": VarRule(_rx(HOST_RE), "a host name of group switches"),
    "netintent_leaf_port": VarRule(_iface, "an interface name (not all/default)"),
    "netintent_vtep": VarRule(_ipv4, "an IPv4 address"),
    "netintent_asn": VarRule(_int_in(1, 4294967295), "an AS number 1..4294967295"),
    "netintent_fabric_ports": VarRule(lambda v, _: isinstance(v, list) and len(v) <= 64 and all(_iface(x) for x in v),
                                      "a list of interface names"),
    "netintent_device_type": VarRule(_rx(DEVTYPE_RE), "a netmiko device type"),
    "netintent_platform": VarRule(_platform, "a switch platform of reconciler/drivers/switch/platforms"),
    "netintent_xds_node": VarRule(_rx(XDS_NODE_RE), "an xDS node id"),
    "netintent_csds": VarRule(_host_port, "host:port of the CSDS admin port (DNS name, IPv4 or [IPv6]; port 1..65535)"),
    "netintent_csds_port": VarRule(_int_in(1, 65535), "a port number 1..65535"),
    "netintent_ads": VarRule(_host_port, "host:port of the reconciler's ADS server as seen from the host"),
}

# Names people reach for, with what to do instead (everything else not in ALLOWED: a generic refusal).
_HINTS = {
    "ansible_ssh_host": "use ansible_host", "ansible_ssh_port": "use ansible_port",
    "ansible_ssh_user": "use ansible_user", "ansible_ssh_pass": "use ansible_password",
}
_RUNS_COMMANDS = re.compile(r"^ansible_(.*_args|.*_executable|.*_interpreter|become.*|shell_.*|ssh_.*|"
                            r"connection|.*_transfer_method|module_.*|pipelining|sudo.*|su_.*|remote_tmp)$")


def var_problem(name: str, value: Any, key_dirs: tuple[str, ...]) -> str | None:
    """What is wrong with `name: value` in a repo's inventory (None: nothing). See module doc."""
    rule = ALLOWED.get(name)
    if rule is None:
        return _refusal(name)
    if rule.check(value, key_dirs):
        return None
    what = rule.what
    if rule.check is _key_path:
        what += f" ({', '.join(key_dirs) or 'none configured'}; set {KEY_DIR_ENV})"
    elif rule.check is _platform and isinstance(value, str):
        what += f" (known: {_known_platforms()})"
    return f"must be {what}"


def _refusal(name: str) -> str:
    if name in _HINTS:
        return f"is not accepted: {_HINTS[name]}"
    if _RUNS_COMMANDS.match(name):
        return ("is refused: Ansible runs as root on the reconciler host and this variable could run commands "
                "there (ssh options such as ProxyCommand, executables, interpreters, become, connection plugins); "
                "the inventory accepts only the variables of docs/inventory.md")
    close = difflib.get_close_matches(name, list(ALLOWED), n=1, cutoff=0.8)
    hint = f"; did you mean {close[0]}?" if close else ""
    return f"is not a variable the reconciler reads (the inventory accepts only those of docs/inventory.md){hint}"
