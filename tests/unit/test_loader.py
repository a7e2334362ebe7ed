"""YAML loading with line numbers, limits, and the Ansible YAML inventory (groups, var precedence)."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from reconciler.intents.inventory import expand_hosts, parse_inventory
from reconciler.intents.loader import MAX_FILE_BYTES, LoadFailed, format_path, parse_yaml

ROOT = Path(__file__).resolve().parents[2]


def err(text: bytes | str) -> str:
    raw = text.encode() if isinstance(text, str) else text
    with pytest.raises(LoadFailed) as exc:
        parse_yaml("f.yaml", raw)
    return str(exc.value.error)


def test_data_matches_safe_load_and_lines_point_at_keys():
    raw = (ROOT / "examples/intents/apps/shop.yaml").read_bytes()
    doc = parse_yaml("apps/shop.yaml", raw)
    assert doc.data == yaml.safe_load(raw)
    assert doc.line_of(("spec", "services", "api", "instances", 1, "address")) == 18
    assert doc.line_of(("spec", "traffic")) == 25
    assert doc.line_of(("spec", "services", "nope", "x")) == 7  # deepest existing: the services key
    assert doc.line_of(()) == 1


@pytest.mark.parametrize("text,expected", [
    ("", "f.yaml:1: $: file is empty"),
    ("# only\n# comments\n", "f.yaml:1: $: file is empty"),
    ("a: 1\n---\nb: 2\n", "f.yaml:2: $: more than one YAML document"),
    ("a: 1\nb: [1\n", "f.yaml:3: $: invalid YAML"),
    ("a:\n  b: 1\n  b: 2\n", "f.yaml:3: $.a.b: duplicate key \"b\""),
    ("yes: 1\n", "f.yaml:1: $: key \"yes\" is not a string (quote it)"),
    ("a: !!python/name:os.system x\n", "f.yaml:1: $.a: unsupported YAML tag"),
    ("a: &x [*x]\n", "undefined (or self-referencing) alias \"x\""),
    ("b: {<<: {c: 1}}\n", "f.yaml:1: $.b: YAML merge keys (<<) are not supported"),
    ("x: \"\x07\"\n", "f.yaml:1: $: invalid YAML: control characters are not allowed"),
    ("a:\n\tb: 1\n", "tabs are not allowed for indentation"),
])
def test_refusals(text: str, expected: str):
    assert expected in err(text)


def test_not_utf8_names_the_line():
    assert err(b"a: 1\nb: caf\xe9\n") == "f.yaml:2: $: not valid UTF-8 (byte 0xe9 at offset 11)"


def test_size_limit_is_checked_before_parsing():
    assert "more than the limit" in err(b"a" * (MAX_FILE_BYTES + 1))


@pytest.mark.parametrize("n", [100, 100_000, 500_000])
def test_absurd_nesting_is_refused_without_crashing(n: int):
    assert "nesting deeper than 64 levels" in err("[" * n + "]" * n)
    assert "nesting deeper than 64 levels" in err("- " * n + "x")


def test_alias_bomb_is_refused():
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 9)]
    assert "more than 1000000 values after expanding aliases" in err("\n".join(lines))


def test_scalars_keep_their_meaning():
    doc = parse_yaml("f", b"a: 0x10\nb: 1.5\nc: ~\nd: 2024-01-02\ne: '007'\nf: true\n")
    assert doc.data == {"a": 16, "b": 1.5, "c": None, "d": "2024-01-02", "e": "007", "f": True}


def test_format_path_escapes_odd_keys():
    assert format_path(("spec", "services", "we b", "instances", 0)) == '$.spec.services["we b"].instances[0]'
    assert format_path(("a\x1b[2J",)) == '$["a\\u001b[2J"]'


# ---- inventory ------------------------------------------------------------------------
INV = b"""
all:
  vars: {netintent_bridge: all-group, ansible_user: root}
  children:
    hosts:
      vars: {netintent_bridge: hosts-group, netintent_interface: eth1}
      hosts:
        h[1:3]: {netintent_hypervisor: hv1}
      children:
        web:
          vars: {netintent_bridge: web-group}
          hosts:
            h2: {netintent_bridge: host, netintent_hypervisor_port: eth9}
    hypervisors:
      hosts:
        hv1: {netintent_leaf: leaf1, netintent_leaf_port: eth1}
    switches:
      hosts:
        leaf1: {netintent_vtep: 10.255.0.1, netintent_asn: 65001}
"""


def test_inventory_groups_ranges_and_var_precedence():
    inv, errors = parse_inventory("inventory.yml", INV)
    assert inv is not None
    assert sorted(inv.hosts) == ["h1", "h2", "h3", "hv1", "leaf1"]
    assert inv.hosts["h2"].groups == ("hosts", "web")      # parent groups included, `all` not
    assert inv.hosts["h2"].var("netintent_bridge") == "host"               # host > child group > parent > all
    assert inv.hosts["h1"].var("netintent_bridge") == "hosts-group"
    assert inv.hosts["hv1"].var("netintent_bridge") == "all-group"
    assert inv.hosts["h1"].var("ansible_user") == "root"
    # h1 and h3 lack netintent_hypervisor_port: reported with their line
    assert [str(e) for e in errors] == [
        "inventory.yml:8: $.all.children.hosts.hosts[\"h[1:3]\"]: host \"h1\" of group hosts needs netintent_hypervisor_port",
        "inventory.yml:8: $.all.children.hosts.hosts[\"h[1:3]\"]: host \"h3\" of group hosts needs netintent_hypervisor_port",
    ]


def test_expand_hosts():
    assert expand_hosts("web[01:03].lab") == ["web01.lab", "web02.lab", "web03.lab"]
    assert expand_hosts("n[a:c]") == ["na", "nb", "nc"]
    assert expand_hosts("n[0:10:5]") == ["n0", "n5", "n10"]
    assert isinstance(expand_hosts("n[0:99999999]"), str)


def test_example_inventory_is_clean():
    inv, errors = parse_inventory("inventory.yml", (ROOT / "examples/intents/inventory.yml").read_bytes())
    assert errors == [] and inv is not None
    assert [h.name for h in inv.group("switches")] == ["leaf1", "leaf2"]
    assert inv.hosts["h3"].var("netintent_hypervisor") == "hv2"


def test_inventory_group_cycle_and_bad_shapes():
    raw = b"all:\n  children:\n    a:\n      children:\n        a: {}\n    b: [x]\n"
    _, errors = parse_inventory("i.yml", raw)
    text = [str(e) for e in errors]
    assert 'i.yml:5: $.all.children.a.children.a: group "a" contains itself through children' in text
    assert "i.yml:6: $.all.children.b: a group must be a mapping with hosts, vars and/or children" in text
