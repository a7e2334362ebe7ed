"""The inventory comes from the intents repo: nothing in it may run a command on the reconciler host.

Covers reconciler.intents.inventory / inventory_vars (allow-list of variables, Jinja anywhere,
key directories, platforms, CSDS addresses, size limits), reconciler.intents.bounds (errors per
file, alias growth) and the proof that a refused inventory never reaches Ansible: the same
payload run through our Ansible runner does touch its marker files (positive control), and
`reconciler apply` / the daemon's loader refuse it before any driver exists (the Ansible and
netmiko entry points are replaced by functions that fail the test, so the markers cannot
appear later either: nothing was started).
"""
from __future__ import annotations

import io
import os
import re
import shutil
import time
from pathlib import Path

import pytest
import yaml
from corpus_util import BASE

from reconciler.intents.bounds import MAX_ERRORS_PER_FILE, alias_growth, bound_errors
from reconciler.intents.cli import main as validate_main
from reconciler.intents.inventory import MAX_HOSTS, parse_inventory
from reconciler.intents.inventory_vars import ALLOWED, KEY_DIR_ENV
from reconciler.intents.loader import OVERFLOW_MESSAGE, ValidationError, parse_yaml
from reconciler.intents.validate import check_repo, check_tree

ROOT = Path(__file__).resolve().parents[2]
LINE = re.compile(r"^(.+?):(\d+): (\$.*?): (.+)$")
KEYS = ("/var/lib/netintent",)


def inv_errors(text: str, key_dirs: tuple[str, ...] = KEYS) -> list[str]:
    _, errors = parse_inventory("inventory.yml", text.encode(), key_dirs)
    return [str(e) for e in errors]


def one_host(hvars: str, group_vars: str = "{}") -> str:
    return f"all:\n  vars: {group_vars}\n  hosts:\n    h1: {hvars}\n"


# ---- the allow-list --------------------------------------------------------------------------
RUNS_COMMANDS = [
    ("ansible_ssh_common_args", "'-o ProxyCommand=\"touch /tmp/x\"'"),
    ("ansible_ssh_extra_args", "'-o ProxyCommand=sh'"),
    ("ansible_ssh_args", "'-o ProxyCommand=sh'"),
    ("ansible_scp_extra_args", "'-S /tmp/evil'"),
    ("ansible_sftp_extra_args", "'-S /tmp/evil'"),
    ("ansible_ssh_executable", "/tmp/evil"),
    ("ansible_shell_executable", "/tmp/evil"),
    ("ansible_become", "true"),
    ("ansible_become_exe", "/tmp/evil"),
    ("ansible_become_method", "su"),
    ("ansible_perl_interpreter", "/usr/bin/perl"),
    ("ansible_ssh_pipelining", "true"),
]


@pytest.mark.parametrize("var,value", RUNS_COMMANDS)
def test_variables_that_could_run_commands_are_refused_where_defined(var: str, value: str):
    for text, line, path in ((one_host(f"{{{var}: {value}}}"), 4, f"$.all.hosts.h1.{var}"),
                             (one_host("{}", f"{{{var}: {value}}}"), 2, f"$.all.vars.{var}")):
        errors = inv_errors(text)
        assert len(errors) == 1, errors
        assert errors[0].startswith(f"inventory.yml:{line}: {path}: {var} of ")
        assert "is refused" in errors[0] and "docs/inventory.md" in errors[0]


@pytest.mark.parametrize("var,value,words", [
    ("ansible_connection", "local", "must be ssh"),
    ("ansible_connection", "docker", "must be ssh"),
    ("ansible_python_interpreter", "'python3 -c \"import os\"'", "absolute, normalised path"),
    ("ansible_python_interpreter", "bin/python3", "absolute, normalised path"),
    ("ansible_python_interpreter", "/usr/bin/../../tmp/py", "absolute, normalised path"),
    ("ansible_host", "-oProxyCommand=x", "a host name or IP address"),
    ("ansible_user", "'root -o x'", "a user name"),
    ("ansible_port", "70000", "1..65535"),
    ("netintent_known_hosts", "known_hosts", "inside a key directory"),
    ("netintent_known_hosts", "/etc/ssh/ssh_known_hosts", "inside a key directory (/var/lib/netintent"),
    ("netintent_known_hosts", "/var/lib/netintent/../../etc/shadow", "normalised"),
    ("ansible_ssh_private_key_file", "/root/.ssh/id_rsa", "inside a key directory"),
    ("ansible_ssh_private_key_file", "'/var/lib/netintent/k -oProxyCommand=x'", "inside a key directory"),
    ("netintent_platform", "cumulus", "(known: linux_ovs_frr)"),
    ("netintent_csds", "'10.0.0.1:70000'", "port 1..65535"),
    ("netintent_csds", "'10.0.0.1'", "host:port"),
    ("netintent_csds", "'10.0.0.1:18000;id'", "host:port"),
    ("netintent_csds", "'-x:18000'", "host:port"),
    ("netintent_csds", "'[::1:18000'", "host:port"),
    ("foo", "1", "not a variable the reconciler reads"),
    ("netintent_bridg", "br0", "did you mean netintent_bridge?"),
    ("ansible_ssh_host", "10.0.0.1", "use ansible_host"),
])
def test_values_are_checked(var: str, value: str, words: str):
    errors = inv_errors(one_host(f"{{{var}: {value}}}"))
    assert len(errors) == 1 and errors[0].startswith(f"inventory.yml:4: $.all.hosts.h1.{var}: {var} of host \"h1\" ")
    assert words in errors[0], errors


@pytest.mark.parametrize("var,value", [
    ("ansible_connection", "ssh"), ("ansible_python_interpreter", "/usr/bin/python3"),
    ("ansible_ssh_private_key_file", "/var/lib/netintent/lab/x/id_ed25519"),
    ("netintent_known_hosts", "/var/lib/netintent/lab/x/known_hosts"), ("ansible_password", "'s3cret {x}'"),
    ("netintent_platform", "linux_ovs_frr"), ("netintent_csds", "'10.0.0.1:18000'"),
    ("netintent_csds", "'[fd00::1]:18000'"), ("netintent_csds", "'h1.lab.example:65535'"),
    ("ansible_group_priority", "5"),
])
def test_good_values_pass(var: str, value: str):
    assert inv_errors(one_host(f"{{{var}: {value}}}")) == []


def test_a_bad_password_is_not_echoed():
    errors = inv_errors(one_host('{ansible_password: "hunter2\\u0007"}'))
    assert len(errors) == 1 and "hunter2" not in errors[0]


def test_key_dirs_come_from_the_environment(monkeypatch: pytest.MonkeyPatch):
    key = one_host("{ansible_ssh_private_key_file: /etc/netintent/keys/id_ed25519}")
    _, errors = parse_inventory("i.yml", key.encode())
    assert errors and "(/var/lib/netintent; set RECONCILER_KEY_DIR)" in str(errors[0])
    monkeypatch.setenv(KEY_DIR_ENV, f"/srv/k{os.pathsep}/etc/netintent/keys")
    assert parse_inventory("i.yml", key.encode())[1] == []
    monkeypatch.setenv(KEY_DIR_ENV, "/etc/netintent/keys2")   # a prefix is not a parent directory
    assert parse_inventory("i.yml", key.encode())[1]


def test_an_operator_inventory_may_name_keys_beside_it(tmp_path: Path):
    inv = tmp_path / "lab" / "inventory.yml"
    inv.parent.mkdir()
    text = (BASE / "inventory.yml").read_text().replace(
        "    ansible_user: root\n", f"    ansible_user: root\n    ansible_ssh_private_key_file: {inv.parent}/id_ed25519\n")
    inv.write_text(text)
    repo, errors = check_repo(BASE, inventory_override=inv)
    assert errors == [] and repo is not None
    # the repo's own inventory may not: the same text, in the repo
    repo, errors = check_tree({**_tree(BASE), "inventory.yml": text.encode()})
    assert repo is None and "inside a key directory" in str(errors[0])


def test_docs_list_every_allowed_variable():
    doc = (ROOT / "docs" / "inventory.md").read_text()
    rows = set(re.findall(r"`((?:ansible|netintent)_[a-z_]+)`", doc))
    assert set(ALLOWED) <= rows, sorted(set(ALLOWED) - rows)


# ---- Jinja ---------------------------------------------------------------------------------
@pytest.mark.parametrize("marker", ["{{ lookup('pipe', 'id') }}", "{% if 1 %}x{% endif %}", "{# c #}"])
def test_jinja_is_refused_anywhere(marker: str):
    text = f"""all:
  vars:
    netintent_fabric_ports: [eth1, "{marker}"]
  children:
    web:
      vars:
        netintent_hypervisor_ports: {{eth1: eth2, "{marker}": eth3}}
      hosts:
        h1: {{ansible_host: "10.0.0.1{marker}"}}
"""
    errors = inv_errors(text)
    assert [e.split(": ")[0] + ": " + e.split(": ")[1] for e in errors] == [
        "inventory.yml:3: $.all.vars.netintent_fabric_ports[1]",
        f"inventory.yml:7: $.all.children.web.vars.netintent_hypervisor_ports[{_q(marker)}]",
        "inventory.yml:9: $.all.children.web.hosts.h1.ansible_host"]
    assert all("Jinja delimiter" in e and "reconciler host" in e for e in errors)


def _q(text: str) -> str:
    from reconciler.intents.loader import show
    return show(text, 40)


def test_jinja_in_a_refused_variable_reports_both():
    errors = inv_errors(one_host("{ansible_ssh_common_args: \"{{ lookup('pipe', 'id') }}\"}"))
    assert len(errors) == 2 and "Jinja" in errors[0] + errors[1] and "is refused" in errors[0] + errors[1]


# ---- shapes Ansible would treat differently ---------------------------------------------------
def test_shebang_and_plugin_key_are_refused():
    assert "Ansible would run an executable inventory as a script" in inv_errors("#!/bin/sh\nall: {}\n")[0]
    errors = inv_errors("plugin: ansible.builtin.constructed\nall: {}\n")
    assert errors == ['inventory.yml:1: $.plugin: `plugin:` would make Ansible load that inventory plugin instead '
                      "of reading this file; only plain YAML inventories are accepted"]


@pytest.mark.parametrize("where", ["group_vars/all.yml", "host_vars/h1.yml", "group_vars/all/x.yml"])
def test_ansible_var_dirs_beside_the_repo_inventory_are_refused(where: str):
    files = {**_tree(BASE), where: b"ansible_ssh_common_args: -o ProxyCommand=x\n"}
    repo, errors = check_tree(files)
    assert repo is None
    assert [str(e) for e in errors] == [f"{where.split('/')[0]}:1: $: Ansible would read variables from "
                                        f"{where.split('/')[0]}/ beside the inventory, unvalidated; put them in the "
                                        "inventory itself"]


def test_group_cycles_are_refused():
    text = "all:\n  children:\n    a: {children: {b: {}}}\n    b: {children: {a: {}}}\n"
    assert any("contain each other through children" in e for e in inv_errors(text))


# ---- limits ------------------------------------------------------------------------------------
def test_host_ranges_are_bounded_before_expanding():
    lines = ["all:", "  hosts:"] + [f"    g{i}x[0:9999]:" for i in range(1300)]
    t0 = time.process_time()
    errors = inv_errors("\n".join(lines) + "\n")
    assert time.process_time() - t0 < 5
    assert errors == ['inventory.yml:4: $.all.hosts["g1x[0:9999]"]: the inventory has more than 10000 hosts; the '
                      'reconciler accepts at most 10000 hosts, 50000 host entries in groups and 1000 groups']
    lines = ["all:", "  children:"] + [f"    g{i}:\n      hosts:\n        n[0:9999]:" for i in range(1300)]
    errors = inv_errors("\n".join(lines) + "\n")
    assert errors == ['inventory.yml:20: $.all.children.g5.hosts["n[0:9999]"]: the inventory has more than 50000 host '
                      'entries in groups (at "n[0:9999]"); the reconciler accepts at most 10000 hosts, 50000 host '
                      'entries in groups and 1000 groups']
    assert "more than 10000" in inv_errors("all:\n  hosts:\n    n[0:99999]:\n")[0]
    assert "more than 10000" in inv_errors("all:\n  hosts:\n    n[0:999][0:999]:\n")[0]
    assert "bad host range" in inv_errors("all:\n  hosts:\n    n[0:99999999999999999999]:\n")[0]


def test_distinct_hosts_are_bounded():
    lines = ["all:", "  children:"] + [f"    g{i}:\n      hosts:\n        a{i}x[0:999]:" for i in range(MAX_HOSTS // 1000 + 1)]
    errors = inv_errors("\n".join(lines) + "\n")
    assert len(errors) == 1 and f"more than {MAX_HOSTS} hosts" in errors[0]
    lines = ["all:", "  children:"] + [f"    g{i}: {{}}" for i in range(1001)]
    assert "more than 1000 groups" in inv_errors("\n".join(lines) + "\n")[0]


# ---- errors per file ----------------------------------------------------------------------------
def test_bound_errors_keeps_100_per_file_then_one_line():
    errs = [ValidationError("a.yaml", i, f"$.x[{i}]", "bad") for i in range(1, 251)] + [ValidationError("b.yaml", 1, "$", "x")]
    out = bound_errors(errs)
    assert len(out) == 102 and out[-1] == ValidationError("b.yaml", 1, "$", "x")
    assert str(out[100]) == "a.yaml:101: $.x[101]: and 150 more error(s) in this file (not listed)"
    assert bound_errors(out) == out                                   # idempotent
    marker = ValidationError("a.yaml", 7, "$.y", OVERFLOW_MESSAGE)
    assert "a.yaml:7: $.y: and 155 more error(s) in this file (not listed)" in map(str, bound_errors(out + [marker] * 5))


def test_doc_error_locates_only_the_first_hundred():
    doc = parse_yaml("f.yaml", b"a: 1\n")
    made = [doc.error(("a",), f"e{i}") for i in range(MAX_ERRORS_PER_FILE + 50)]
    assert len({id(e) for e in made[MAX_ERRORS_PER_FILE:]}) == 1 and made[-1].message == OVERFLOW_MESSAGE
    doc.reset_errors()
    assert doc.error(("a",), "again").message == "again"


def _bomb(aliases: int = 807) -> bytes:
    lines = ["apiVersion: netintent/v1", "kind: Application", "metadata: {name: bomb}", "spec:",
             "  segment: {vni: 5999, subnet: 10.59.1.0/24}", "  services:",
             "    s0: {ports: &p [" + ",".join(["0"] * 1000) + "]}"] + [f"    s{i}: {{ports: *p}}" for i in range(1, aliases + 1)]
    return ("\n".join(lines) + "\n").encode()


def test_eight_hundred_thousand_schema_errors_are_cheap(monkeypatch: pytest.MonkeyPatch):
    """The 20 KB file describing 808,809 errors (took 85 s and 340 MB before the bound), with
    the alias growth bound switched off so the error bound alone is measured."""
    import reconciler.intents.validate as v
    monkeypatch.setattr(v, "alias_growth", lambda doc, raw: None)
    monkeypatch.setattr(v, "_APP_CACHE", {})  # the corpus case with the same file was refused by alias_growth
    files = {**_tree(BASE), "apps/bomb.yaml": _bomb()}
    t0 = time.process_time()
    repo, errors = check_tree(files)
    assert time.process_time() - t0 < 5
    mine = [str(e) for e in errors if e.file == "apps/bomb.yaml"]
    assert repo is None and len(mine) == MAX_ERRORS_PER_FILE + 1
    summary = [m for m in mine if re.search(r": and at least [0-9]+ more error\(s\) in this file \(not listed\)$", m)]
    assert len(summary) == 1, mine


def test_aliases_may_share_but_not_multiply():
    doc_bytes = _bomb()
    growth = alias_growth(parse_yaml("bomb.yaml", doc_bytes), doc_bytes)
    assert growth and "YAML aliases expand this file to" in growth
    shared = b"""apiVersion: netintent/v1
kind: Application
metadata: {name: shared}
spec:
  segment: {vni: 5998, subnet: 10.58.1.0/24}
  services:
    a: {instances: [{host: h1, address: 10.58.1.10}], ports: &p [{name: http, port: 80}, {name: grpc, port: 8080}]}
    b: {instances: [{host: h1, address: 10.58.1.11}], ports: *p}
    c: {instances: [{host: h1, address: 10.58.1.12}], ports: *p}
"""
    assert alias_growth(parse_yaml("shared.yaml", shared), shared) is None


# ---- valid inventories stay valid --------------------------------------------------------------
def test_lab_and_example_inventories_are_accepted():
    from reconciler.lab import inventory as lab_inventory
    from reconciler.lab.topology import load
    t = load(ROOT / "labs" / "app-fabric.clab.yml")
    text = lab_inventory.render(t, "/var/lib/netintent/lab/app-fabric/id_ed25519",
                                "/var/lib/netintent/lab/app-fabric/known_hosts")
    assert parse_inventory("inventory/app-fabric.yml", text.encode(), KEYS)[1] == []
    for path in (ROOT / "examples/intents/inventory.yml", BASE / "inventory.yml"):
        assert parse_inventory(str(path), path.read_bytes(), KEYS)[1] == []


# ---- nothing runs --------------------------------------------------------------------------------
def _hostile_inventory(tmp: Path) -> tuple[str, Path, Path]:
    """The base inventory with h1 reached through a ProxyCommand and its user from a pipe lookup:
    each touches its own marker file when Ansible connects to h1."""
    proxy, pipe = tmp / "proxy-ran", tmp / "pipe-ran"
    inv = yaml.safe_load((BASE / "inventory.yml").read_text())
    inv["all"]["children"]["hosts"]["hosts"]["h1"].update({
        "ansible_host": "127.0.0.1",
        "ansible_ssh_common_args": f"-o ProxyCommand='touch {proxy}'",
        "ansible_user": "{{ lookup('pipe', 'touch %s') }}root" % pipe,
    })
    return yaml.safe_dump(inv, sort_keys=False), proxy, pipe


@pytest.mark.skipif(shutil.which("ansible-playbook") is None, reason="needs ansible")
def test_positive_control_the_payload_runs_when_ansible_gets_it(tmp_path: Path):
    """Not the reconciler's path: our runner, handed this inventory directly, runs both payloads.
    This is what validation stops (the next test)."""
    from reconciler.drivers.ansible.runner import Play, RunSettings, run_plays
    text, proxy, pipe = _hostile_inventory(tmp_path)
    (tmp_path / "inv.yml").write_text(text)
    (tmp_path / "pb.yml").write_text("- hosts: all\n  gather_facts: false\n  tasks:\n    - ansible.builtin.ping:\n")
    runs = run_plays([Play(str(tmp_path / "pb.yml"), ("h1",))], {}, RunSettings(str(tmp_path / "inv.yml"), timeout_s=60))
    assert not runs["h1"].ok                        # the ProxyCommand is no SSH server
    assert proxy.exists() and pipe.exists()         # but both commands ran on this host


def test_a_hostile_inventory_never_reaches_ansible(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys):
    import ansible_runner
    import netmiko

    from reconciler.cli import main as reconciler_main
    from reconciler.drivers.ansible import runner

    def never(*a, **kw):
        raise AssertionError("a refused repo reached a driver")
    monkeypatch.setattr(ansible_runner, "run", never)
    monkeypatch.setattr(runner, "_run_ansible", never)   # where ansible-playbook is started
    monkeypatch.setattr(netmiko, "ConnectHandler", never)
    text, proxy, pipe = _hostile_inventory(tmp_path)
    repo = tmp_path / "repo"
    shutil.copytree(BASE, repo)
    (repo / "inventory.yml").write_text(text)
    rc = reconciler_main(["apply", str(repo)])
    err = capsys.readouterr().err
    assert rc == 2 and "nothing was planned or applied" in err
    lines = [ln for ln in err.splitlines() if LINE.match(ln)]
    assert any("$.all.children.hosts.hosts.h1.ansible_ssh_common_args: ansible_ssh_common_args of host \"h1\" is "
               "refused" in ln for ln in lines), err
    assert any(".h1.ansible_user: value " in ln and "Jinja delimiter '{{'" in ln for ln in lines), err
    # the daemon and the pre-receive hook load revisions with check_tree: same refusal
    repo_model, errors = check_tree(_tree(repo))
    assert repo_model is None and len(errors) == 2
    out = io.StringIO()
    assert validate_main(["validate", str(repo)], out, io.StringIO()) == 1
    assert out.getvalue().splitlines() == [str(e) for e in errors]
    assert not proxy.exists() and not pipe.exists()  # nothing was started that could still create them


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}
