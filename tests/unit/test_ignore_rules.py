"""Ignore rules act on existing resources only; `create: false` is the one way to keep a wanted
resource missing, and validate refuses it where it would drop an application's default deny.

Table-driven: plan outcomes per rule, `reconciler validate` over reconciler.yaml variants, and
keyglob.may_match against a brute-force search over short strings.
"""
from __future__ import annotations

import fnmatch
import itertools
import re
import shutil
from pathlib import Path

import pytest
from corpus_util import BASE
from hypothesis import given, settings
from hypothesis import strategies as st

import reconciler.compile  # noqa: F401  (registers the layers' normalizers with diff)
from reconciler.compile import compile_repo
from reconciler.intents.validate import check_repo, load_repo
from reconciler.keyglob import may_match
from reconciler.model import DEFAULT_DENY_KEYS, IgnoreRule, Layer, Resource, ResourceKey, State
from reconciler.plan import make_plan

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "intents"

TABLE = "host/h1/nft-table/netintent_shop"
SET = "host/h1/nft-set/netintent_shop/local"
PORT = "hypervisor/hv1/ovs-port/eth2"


def _res(key: str, **spec) -> Resource:
    return Resource(ResourceKey.parse(key), {"name": key.rsplit("/", 1)[1], **spec}, "shop")


# ---- plan ----------------------------------------------------------------------------------
# (case, desired, observed, rules, prune, expected [action, key] of changes, expected orphan keys)
PLAN_CASES = [
    ("key-only rule: missing default-deny table is created", [_res(TABLE)], [], [{"key": "host/*/nft-*"}], False,
     [["create", TABLE]], []),
    ("key-only rule: every missing nft resource is created", [_res(TABLE), _res(SET)], [], [{"key": "host/*/nft-*"}],
     False, [["create", SET], ["create", TABLE]], []),
    ("paths rule: missing resource is created", [_res(PORT, tag=1)], [], [{"key": "hypervisor/*", "paths": ["tag"]}],
     False, [["create", PORT]], []),
    ("create: false: missing resource stays missing", [_res(PORT, tag=1)], [],
     [{"key": "hypervisor/*", "create": False}], False, [], []),
    ("create: false with paths: missing resource stays missing", [_res(PORT, tag=1)], [],
     [{"key": "hypervisor/*", "paths": ["other"], "create": False}], False, [], []),
    ("create: false on another key: created", [_res(PORT, tag=1)], [],
     [{"key": "hypervisor/hv2/*", "create": False}], False, [["create", PORT]], []),
    ("create: true said explicitly: created", [_res(PORT, tag=1)], [],
     [{"key": "hypervisor/*", "create": True}], False, [["create", PORT]], []),
    ("key-only rule: existing resource that differs is not updated", [_res(PORT, tag=1)], [_res(PORT, tag=2)],
     [{"key": "hypervisor/*"}], False, [], []),
    ("paths rule: difference in the path is skipped", [_res(PORT, tag=1, other=1)], [_res(PORT, tag=1, other=2)],
     [{"key": "hypervisor/*", "paths": ["other"]}], False, [], []),
    ("paths rule: difference elsewhere is an update", [_res(PORT, tag=1, other=1)], [_res(PORT, tag=2, other=2)],
     [{"key": "hypervisor/*", "paths": ["other"], "create": False}], False, [["update", PORT]], []),
    ("key-only rule: orphan is neither pruned nor reported", [], [_res(PORT, tag=1)], [{"key": "hypervisor/*"}], True,
     [], []),
    ("paths rule: orphan is pruned", [], [_res(PORT, tag=1)], [{"key": "hypervisor/*", "paths": ["tag"]}], True,
     [["delete", PORT]], []),
    ("paths rule: orphan is reported when not pruning", [], [_res(PORT, tag=1)],
     [{"key": "hypervisor/*", "paths": ["tag"]}], False, [], [PORT]),
    ("no rule: create", [_res(TABLE)], [], [], False, [["create", TABLE]], []),
]


@pytest.mark.parametrize("case,desired,observed,rules,prune,changes,orphans", PLAN_CASES, ids=[c[0] for c in PLAN_CASES])
def test_plan_with_ignore_rules(case, desired, observed, rules, prune, changes, orphans):
    plan = make_plan(State.of(desired), State.of(observed), prune=prune, ignore=[IgnoreRule(**r) for r in rules])
    assert [[c.action.value, str(c.key)] for c in plan.changes] == changes
    assert [str(c.key) for c in plan.orphans] == orphans


def test_key_only_rule_keeps_every_default_deny_table_of_the_examples():
    """The issue, end to end: `host/*/nft-*` used to drop every app's default-deny table."""
    desired = compile_repo(load_repo(EXAMPLES))
    tables = {str(r.key) for r in desired if r.key.kind == "nft-table"}
    assert len(tables) >= 3
    plan = make_plan(desired, State(), ignore=[IgnoreRule(key="host/*/nft-*")])
    assert tables <= {str(c.key) for c in plan.changes}


# ---- the default-deny resources --------------------------------------------------------------
def test_default_deny_keys_name_exactly_the_default_deny_tables():
    """model.DEFAULT_DENY_KEYS (what validate protects) matches each app's nft table on each of its
    hosts, whose input chain ends by dropping traffic to the app's addresses, and nothing else."""
    desired = compile_repo(load_repo(EXAMPLES))
    protected = [r for r in desired if any(fnmatch.fnmatchcase(str(r.key), p) for p in DEFAULT_DENY_KEYS)]
    hosts_per_app = {(r.app, r.key.target) for r in desired if r.key.layer is Layer.HOST and r.key.kind == "address"}
    assert {(r.app, r.key.target) for r in protected} == hosts_per_app
    for r in protected:
        assert r.key.kind == "nft-table"
        assert r.spec["chains"]["input"]["rules"][-1] == {"match": {"daddr_set": "local"}, "counter": "drop_other",
                                                          "verdict": "drop"}


# ---- validate -------------------------------------------------------------------------------
# (case, the ignore: block of reconciler.yaml, expected error lines: (line, path, message fragment))
DENY = "can match host/*/nft-table/netintent_*"
VALIDATE_CASES = [
    ("the issue's rule without create: valid", '  - key: "host/*/nft-*"\n', []),
    ("the issue's rule with create: false", '  - key: "host/*/nft-*"\n    create: false\n',
     [(6, "$.ignore[0].create", DENY)]),
    ("one app's table, create: false", '  - key: "host/h1/nft-table/netintent_shop"\n    create: false\n',
     [(6, "$.ignore[0].create", DENY)]),
    ("everything, create: false", '  - {key: "*", create: false}\n', [(5, "$.ignore[0].create", DENY)]),
    ("any host-layer resource, create: false", '  - {key: "host/*/*", create: false}\n',
     [(5, "$.ignore[0].create", DENY)]),
    ("second rule is the bad one", '  - {key: "hypervisor/*/ovs-port/*", paths: [other_config], create: false}\n'
     '  - {key: "*/netintent_*", create: false}\n', [(6, "$.ignore[1].create", DENY)]),
    ("nft sets only, create: false: valid", '  - {key: "host/*/nft-set/*", create: false}\n', []),
    ("another tool's table, create: false: valid", '  - {key: "host/*/nft-table/fail2ban", create: false}\n', []),
    ("host addresses, create: false: valid", '  - {key: "host/h1/address/*", create: false}\n', []),
    ("tables not named netintent_, create: false: valid", '  - {key: "host/*/nft-table/[!n]*", create: false}\n', []),
    ("default-deny table, create: true: valid", '  - {key: "host/*/nft-table/netintent_*", create: true}\n', []),
    ("create is a boolean", '  - {key: "hypervisor/*", create: "no"}\n', [(5, "$.ignore[0].create", "")]),
]


@pytest.mark.parametrize("case,block,errors", VALIDATE_CASES, ids=[c[0] for c in VALIDATE_CASES])
def test_validate_ignore_rules(case, block, errors, tmp_path):
    repo = tmp_path / "repo"
    shutil.copytree(BASE, repo)
    text = (BASE / "reconciler.yaml").read_text()
    assert text.count("\n") == 3, "the ignore block's line numbers assume a 3-line base reconciler.yaml"
    (repo / "reconciler.yaml").write_text(text + "ignore:\n" + block)
    loaded, errs = check_repo(repo)
    got = [(e.line, e.path, e.message) for e in errs]
    assert [(ln, p) for ln, p, _ in got] == [(ln, p) for ln, p, _ in errors], got
    for (_, _, message), (_, _, fragment) in zip(got, errors):
        assert fragment in message
    for e in errs:
        assert re.match(r"^reconciler\.yaml:\d+: \$\.ignore\[\d+\]\.create: .+$", str(e)), str(e)
    if not errors:
        assert loaded is not None and loaded.config.ignore


# ---- keyglob --------------------------------------------------------------------------------
D = DEFAULT_DENY_KEYS[0]
MAY_MATCH = [
    ("host/*/nft-*", True), ("*", True), ("host/h1/nft-table/netintent_shop", True), ("*table*", True),
    ("host/h[12]/nft-table/netintent_?hop", True), ("host/*/nft-tabl?/n*", True), ("*/netintent_*", True),
    ("host/*/*", True), ("[h]ost/*", True), ("host/*/nft-set/*", False), ("hypervisor/*", False),
    ("host/h1/nft-table/other", False), ("host/*/nft-table/[!n]*", False), ("host/h1/address/*", False),
    ("host/*/nft-table/netintent_", False), ("*/*/*/*/*", False), ("host/a/b/nft-table/netintent_x", False),
    ("host/[", False), ("host/[!/]*/nft-table/netintent_x", True), ("host/x/nft-table/netintent_a/b", False),
]


@pytest.mark.parametrize("pattern,expected", MAY_MATCH)
def test_may_match_default_deny(pattern, expected):
    assert may_match(pattern, D) is expected


def _template_regex(template: str) -> re.Pattern:
    """A template's `*` (a run of them) is one name: one or more characters other than `/`."""
    return re.compile("".join("[^/]+" if c == "*" else re.escape(c) for c in re.sub(r"\*+", "*", template)) + r"\Z")


PIECES = ["a", "b", "/", "*", "?", "[ab]", "[!a]", "[/]", "["]
LETTERS = "ab/["
# A shortest common string is at most (pattern pieces) + (template characters) long: 3 + 3.
STRINGS = ["".join(t) for n in range(7) for t in itertools.product(LETTERS, repeat=n)]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(PIECES), max_size=3).map("".join),
       st.lists(st.sampled_from(["a", "/", "*"]), max_size=3).map("".join))
def test_may_match_agrees_with_brute_force(pattern, template):
    rx = _template_regex(template)
    witness = any(rx.match(s) and fnmatch.fnmatchcase(s, pattern) for s in STRINGS)
    assert may_match(pattern, template) is witness, (pattern, template)
