"""`reconciler validate` over the bad-repo corpus (tests/corpus/bad) and the good examples.

Each corpus case is the shared valid base overlaid with the case's files (see corpus_util);
its expected.txt lists substrings (file:line: path: message fragment) that must appear. Cases
that cannot be committed (10 MB file, symlinks leaving the repo, FIFOs, odd file names) are
built in tmp_path here.
"""
from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from corpus_util import BASE, bad_cases, expected, materialize

from reconciler.intents.cli import main
from reconciler.intents.loader import ValidationError
from reconciler.intents.sources import Symlink
from reconciler.intents.validate import RepoInvalid, UsageError, check_repo, check_tree, load_repo, load_tree

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "intents"


def run_cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    rc = main(["validate", *argv], out, err)
    return rc, out.getvalue(), err.getvalue()


def assert_clean_failure(rc: int, out: str, err: str) -> list[str]:
    assert rc == 1, (rc, out, err)
    assert "Traceback" not in out + err
    lines = out.splitlines()
    assert lines, "an invalid repo must print its errors"
    for ln in lines:
        assert re.match(r"^.+?:\d+: \$.*?: .+$", ln), f"not `file:line: path: message`: {ln!r}"
        assert "\x1b" not in ln and "\r" not in ln
    keys = []
    for ln in lines:
        m = re.match(r"^(.+?):(\d+): (\$.*?): (.*)$", ln)
        assert m
        keys.append((m.group(1), int(m.group(2)), m.group(3), m.group(4)))
    assert keys == sorted(keys), "errors must be sorted by file, line, path"
    return lines


def test_corpus_is_big_enough():
    assert len(bad_cases()) >= 30


@pytest.mark.parametrize("case", bad_cases())
def test_bad_case(case: str, tmp_path: Path):
    repo = materialize(case, tmp_path)
    rc, out, err = run_cli(str(repo))
    assert_clean_failure(rc, out, err)
    for want in expected(case):
        assert want in out, f"{case}: expected {want!r} in:\n{out}"
    # The library API reports exactly the same errors and refuses to build a repo.
    with pytest.raises(RepoInvalid) as exc:
        load_repo(repo)
    assert [str(e) for e in exc.value.errors] == out.splitlines()


def test_base_is_valid():
    rc, out, err = run_cli(str(BASE))
    assert rc == 0, out + err
    assert out.startswith("OK: 2 application(s)")


def test_examples_validate_clean():
    repo = load_repo(EXAMPLES)
    assert sorted(repo.apps) == ["analytics", "billing", "shop"]
    assert repo.apps["shop"].source == "apps/shop.yaml"
    assert repo.config.trust_domain == "corp.example"
    assert repo.inventory.in_group("h1", "hosts") and repo.inventory.in_group("leaf1", "switches")
    rc, out, err = run_cli(str(EXAMPLES))
    assert (rc, err) == (0, "")


def test_subprocess_invalid_and_valid(tmp_path: Path):
    repo = materialize("policy-not-exported", tmp_path)
    cmd = [sys.executable, "-m", "reconciler.intents.cli", "validate"]
    r = subprocess.run(cmd + [str(repo)], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert_clean_failure(r.returncode, r.stdout, r.stderr)
    assert "apps/billing.yaml:14: $.spec.policy.allow[0].to: service \"web\" of application \"shop\" is not exported" in r.stdout
    r = subprocess.run(cmd + [str(EXAMPLES)], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert r.returncode == 0 and "Traceback" not in r.stderr


def test_wired_into_the_reconciler_cli(tmp_path: Path):
    repo = materialize("unknown-host", tmp_path)
    r = subprocess.run([sys.executable, "-m", "reconciler.cli", "validate", str(repo)],
                       capture_output=True, text=True, timeout=120, cwd=ROOT)
    lines = assert_clean_failure(r.returncode, r.stdout, r.stderr)
    assert lines == ['apps/billing.yaml:9: $.spec.services.invoicer.instances[0].host: unknown host "h9": is not in the inventory']


def test_json_output(tmp_path: Path):
    repo = materialize("split-sum-and-version", tmp_path)
    rc, out, _ = run_cli(str(repo), "--json")
    assert rc == 1
    doc = json.loads(out)
    assert doc["valid"] is False and doc["apps"] == []
    assert {"file": "apps/shop.yaml", "line": 24, "path": "$.spec.traffic.api.split",
            "message": "split weights sum to 90, not 100"} in doc["errors"]
    rc, out, _ = run_cli(str(EXAMPLES), "--json")
    assert rc == 0 and json.loads(out) == {"valid": True, "errors": [], "apps": ["analytics", "billing", "shop"]}


@pytest.mark.parametrize("argv", [["/nonexistent/intents"], [], ["--bogus", "x"]])
def test_usage_errors_exit_2(argv: list[str], tmp_path: Path):
    rc, out, err = run_cli(*argv)
    assert rc == 2 and "Traceback" not in out + err


def test_file_instead_of_dir_is_usage_error(tmp_path: Path):
    f = tmp_path / "file"
    f.write_text("x")
    rc, _, err = run_cli(str(f))
    assert rc == 2 and "not a directory" in err
    with pytest.raises(UsageError):
        load_repo(f)


def test_internal_error_is_one_line_naming_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    import reconciler.intents.validate as v

    def boom(doc, name):
        raise KeyError("schema bug")

    monkeypatch.setattr(v, "schema_errors", boom)
    rc, out, err = run_cli(str(BASE))
    assert rc == 2 and "Traceback" not in out + err
    assert err.count("\n") == 1 and "internal error while validating reconciler.yaml" in err


def _base_copy(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    shutil.copytree(BASE, repo)
    return repo


def test_ten_megabyte_file_is_refused_quickly(tmp_path: Path):
    repo = _base_copy(tmp_path)
    with open(repo / "apps" / "huge.yaml", "wb") as f:
        line = b"- {host: h1, address: 10.60.1.11, version: v1}\n"
        f.write(line * (10 * 1024 * 1024 // len(line) + 1))
    assert (repo / "apps" / "huge.yaml").stat().st_size > 10 * 1024 * 1024
    r = subprocess.run([sys.executable, "-m", "reconciler.intents.cli", "validate", str(repo)],
                       capture_output=True, text=True, timeout=30, cwd=ROOT)
    lines = assert_clean_failure(r.returncode, r.stdout, r.stderr)
    assert lines == [f"apps/huge.yaml:1: $: file is {(repo / 'apps' / 'huge.yaml').stat().st_size} bytes, "
                     "more than the limit of 1048576 bytes"]


def test_symlinks_leaving_the_repo_are_refused(tmp_path: Path):
    repo = _base_copy(tmp_path)
    outside = tmp_path / "outside"
    outside.mkdir()
    shutil.copy(repo / "apps" / "billing.yaml", outside / "pay.yaml")
    (repo / "apps" / "pay.yaml").symlink_to(outside / "pay.yaml")            # absolute, outside
    (repo / "apps" / "passwd.yaml").symlink_to("../../../../../../etc/passwd")  # relative, outside
    rc, out, err = run_cli(str(repo))
    lines = assert_clean_failure(rc, out, err)
    assert "apps/passwd.yaml:1: $: symlink points outside the repo; refusing to read it" in lines
    assert "apps/pay.yaml:1: $: symlink points outside the repo; refusing to read it" in lines


def test_symlinked_apps_dir_and_inventory_outside_are_refused(tmp_path: Path):
    repo = _base_copy(tmp_path)
    shutil.move(str(repo / "apps"), str(tmp_path / "apps-outside"))
    (repo / "apps").symlink_to(tmp_path / "apps-outside")
    shutil.move(str(repo / "inventory.yml"), str(tmp_path / "inv.yml"))
    (repo / "inventory.yml").symlink_to(tmp_path / "inv.yml")
    rc, out, err = run_cli(str(repo))
    lines = assert_clean_failure(rc, out, err)
    assert "apps:1: $: symlink points outside the repo; refusing to read it" in lines
    assert "inventory.yml:1: $: symlink points outside the repo; refusing to read it" in lines


def test_symlink_inside_the_repo_is_followed(tmp_path: Path):
    repo = _base_copy(tmp_path)
    (repo / "lib").mkdir()
    shutil.move(str(repo / "apps" / "billing.yaml"), str(repo / "lib" / "billing.yaml"))
    (repo / "apps" / "billing.yaml").symlink_to("../lib/billing.yaml")
    r = load_repo(repo)
    assert r.apps["billing"].source == "apps/billing.yaml"


def test_fifo_directory_and_odd_names(tmp_path: Path):
    repo = _base_copy(tmp_path)
    os.mkfifo(repo / "apps" / "pipe.yaml")  # reading it would block forever
    (repo / "apps" / "dir.yaml").mkdir()
    (repo / "apps" / "evil\x1b[31m\n.yaml").write_text("kind: [")
    (repo / "apps" / "README.md").write_text("not an app")  # ignored: not *.yaml
    rc, out, err = run_cli(str(repo))
    lines = assert_clean_failure(rc, out, err)
    assert "apps/pipe.yaml:1: $: not a regular file" in lines
    assert "apps/dir.yaml:1: $: not a regular file" in lines
    assert any(ln.startswith("apps/evil\\u001b[31m\\u000a.yaml:2: $: invalid YAML") for ln in lines), lines
    assert len(lines) == 3


def test_inventory_override(tmp_path: Path):
    repo = _base_copy(tmp_path)
    (repo / "inventory.yml").unlink()
    rc, out, err = run_cli(str(repo))
    assert_clean_failure(rc, out, err)
    rc, out, err = run_cli(str(repo), "--inventory", str(BASE / "inventory.yml"))
    assert rc == 0, out + err
    rc, out, err = run_cli(str(repo), "--inventory", str(tmp_path / "missing.yml"))
    lines = assert_clean_failure(rc, out, err)
    assert lines == [f"{tmp_path / 'missing.yml'}:1: $: inventory file not found"]


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_load_tree_matches_load_repo():
    from_dir = load_repo(EXAMPLES)
    from_tree = load_tree(_tree(EXAMPLES), revision="abc123")
    assert from_tree.apps == from_dir.apps and from_tree.config == from_dir.config
    assert from_tree.inventory == from_dir.inventory and from_tree.revision == "abc123"


def test_load_tree_symlinks():
    files: dict[str, bytes | Symlink] = dict(_tree(BASE))
    files["lib/billing.yaml"] = files.pop("apps/billing.yaml")
    files["apps/billing.yaml"] = Symlink("../lib/billing.yaml")
    assert "billing" in load_tree(files).apps
    files["apps/x.yaml"] = Symlink("../../outside.yaml")
    files["apps/y.yaml"] = Symlink("/etc/passwd")
    files["apps/loop.yaml"] = Symlink("loop.yaml")
    repo, errors = check_tree(files)
    assert repo is None
    assert [str(e) for e in errors] == [
        "apps/loop.yaml:1: $: too many levels of symbolic links",
        "apps/x.yaml:1: $: symlink points outside the repo; refusing to read it",
        "apps/y.yaml:1: $: symlink points outside the repo; refusing to read it",
    ]


def test_load_tree_reports_like_a_checkout(tmp_path: Path):
    repo = materialize("duplicate-vni", tmp_path)
    _, dir_errors = check_repo(repo)
    _, tree_errors = check_tree(_tree(repo))
    assert dir_errors == tree_errors and dir_errors


def test_validation_error_value():
    e = ValidationError("apps/a.yaml", 3, "$.spec", "boom")
    assert str(e) == "apps/a.yaml:3: $.spec: boom"
    with pytest.raises(AttributeError):
        e.line = 4  # type: ignore[misc]
    assert sorted([ValidationError("b", 1, "$", "x"), ValidationError("a", 9, "$", "y"),
                   ValidationError("a", 2, "$", "z")]) == [ValidationError("a", 2, "$", "z"),
                                                           ValidationError("a", 9, "$", "y"),
                                                           ValidationError("b", 1, "$", "x")]


def test_repo_invalid_carries_all_errors(tmp_path: Path):
    repo = materialize("all-errors-at-once", tmp_path)
    with pytest.raises(RepoInvalid) as exc:
        load_repo(repo)
    files = {e.file for e in exc.value.errors}
    assert files == {"apps/billing.yaml", "apps/shop.yaml", "inventory.yml"}


# ---- fuzz: whatever bytes an intent file holds, validation answers with located errors -----------
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_BASE_TREE = {str(p.relative_to(BASE)): p.read_bytes() for p in BASE.rglob("*") if p.is_file()}
_SHOP = _BASE_TREE["apps/shop.yaml"]
_TOKENS = [b"[", b"]", b"{", b"}", b": ", b"- ", b"\n", b"  ", b"\t", b"&a ", b"*a", b"!!", b"<<: ", b"---\n",
           b"'", b'"', b"#", b"\xff", b"\x00", b"%YAML 1.1\n", b"? ", b"|", b">", b"~", b"0x1", b"1e3", b"yes", b"\xe2\x80\xae"]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(["apps/shop.yaml", "apps/billing.yaml", "inventory.yml", "reconciler.yaml"]),
       st.lists(st.tuples(st.integers(0, len(_SHOP)), st.integers(0, 8),
                          st.one_of(st.sampled_from(_TOKENS), st.binary(max_size=6))), max_size=4))
def test_fuzzed_file_never_raises(target, edits):
    data = bytearray(_BASE_TREE[target])
    for pos, cut, ins in edits:
        pos = min(pos, len(data))
        data[pos:pos + cut] = ins
    files = dict(_BASE_TREE, **{target: bytes(data)})
    repo, errors = check_tree(files)
    assert (repo is None) == bool(errors)
    for e in errors:
        assert e.line >= 1 and e.path.startswith("$") and e.message and "\n" not in str(e)


def test_apps_must_be_a_directory(tmp_path: Path):
    repo = _base_copy(tmp_path)
    shutil.rmtree(repo / "apps")
    (repo / "apps").write_text("shop\n")
    rc, out, err = run_cli(str(repo))
    assert assert_clean_failure(rc, out, err) == ["apps:1: $: expected a directory"]
