"""Build a bad-repo case: the shared valid base (tests/corpus/base) overlaid with the case's files.

A case directory holds only what differs from the base: files that replace or add to it,
`DELETE` (paths to remove, one per line) and `expected.txt` (substrings that must appear in
the validation output, one per line; `#` starts a comment line).
"""
from __future__ import annotations

import shutil
from pathlib import Path

CORPUS = Path(__file__).resolve().parent.parent / "corpus"
BASE = CORPUS / "base"
BAD = CORPUS / "bad"
META = {"expected.txt", "DELETE"}


def bad_cases() -> list[str]:
    return sorted(p.name for p in BAD.iterdir() if p.is_dir())


def materialize(case: str, dest: Path) -> Path:
    repo = dest / "repo"
    shutil.copytree(BASE, repo)
    src = BAD / case
    for f in sorted(src.rglob("*")):
        rel = f.relative_to(src)
        if f.is_dir() or str(rel) in META:
            continue
        (repo / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(f, repo / rel)
    delete = src / "DELETE"
    if delete.exists():
        for line in delete.read_text().splitlines():
            if line.strip():
                (repo / line.strip()).unlink()
    return repo


def expected(case: str) -> list[str]:
    lines = (BAD / case / "expected.txt").read_text(encoding="utf-8").splitlines()
    return [ln for ln in lines if ln.strip() and not ln.startswith("#")]
