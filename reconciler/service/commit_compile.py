"""The daemon's compiler: a commit's changed apps, read from git, handed to the incremental compile.

Contract:
- `CommitCompiler(git_dir)` is a `Compiler` whose `compile(repo)` (called by
  `revision.load_revision` with the repo loaded at `repo.revision`) passes `changed=` the apps
  whose files differ between the revision it compiled last and `repo.revision`: `git diff
  --name-only` of the two commits under `apps/`, each changed app file named by the app it held
  before (kept from the last compile) and by the app it holds now (its `metadata.name`, read
  from the blob). The compile then never looks at the other apps (docs/scale.md: the scan it
  saves is the floor of an incremental compile).
- Files outside `apps/` name no app: a changed config or inventory compiles everything anyway
  (the compiler compares them). No hint (the compiler scans every app, as without this class)
  on a first compile, a repo without a revision, a revision git cannot diff against the last,
  or an app file it cannot read. The compiler itself still scans when the hint misses an added
  or removed app. `last_hint` is what the last compile was given (None = scanned).
- A compile that raises (conflicts) changes nothing here either: the next hint is still
  relative to the last revision that compiled.
"""
from __future__ import annotations

import subprocess
from typing import Iterable

import yaml

from reconciler.compile import Compiler
from reconciler.intents.models import IntentRepo
from reconciler.model import DesiredState

__all__ = ["CommitCompiler", "app_file"]

APPS_DIR = "apps"


def app_file(path: str) -> bool:
    """A path the loader reads as an Application (`apps/<name>.yaml|yml`, not hidden)."""
    head, _, name = path.partition("/")
    return head == APPS_DIR and "/" not in name and not name.startswith(".") and name.endswith((".yaml", ".yml"))


class CommitCompiler(Compiler):
    def __init__(self, git_dir: str) -> None:
        super().__init__()
        self.git_dir = git_dir
        self.last_hint: tuple[str, ...] | None = None
        self._rev = ""                       # revision of the last successful compile
        self._names: dict[str, str] = {}     # app file -> app name, as of that revision

    def compile(self, repo: IntentRepo, changed: Iterable[str] | None = None) -> DesiredState:
        paths: list[str] | None = None
        hint: tuple[str, ...] | None = tuple(changed) if changed is not None else None
        if hint is None:
            paths = self._changed_files(repo.revision)
            hint = self._apps_of(paths, repo.revision) if paths is not None else None
        state = super().compile(repo, hint)
        self.last_hint = hint
        if hint is None or paths is None:
            self._names = {a.source: name for name, a in repo.apps.items() if a.source}
        else:
            for p in paths:
                self._names.pop(p, None)
            self._names.update((a.source, n) for n in hint if (a := repo.apps.get(n)) is not None and a.source)
        self._rev = repo.revision
        return state

    def _changed_files(self, revision: str) -> list[str] | None:
        if not self._rev or not revision:
            return None
        if revision == self._rev:
            return []
        try:
            out = subprocess.run(["git", "-C", self.git_dir, "diff", "--no-renames", "--name-only", "-z",
                                  self._rev, revision, "--", APPS_DIR],
                                 capture_output=True, timeout=60, check=True).stdout
        except (OSError, subprocess.SubprocessError):
            return None
        return [p for p in out.decode("utf-8", "surrogateescape").split("\0") if p and app_file(p)]

    def _apps_of(self, paths: list[str], revision: str) -> tuple[str, ...] | None:
        names = {self._names[p] for p in paths if p in self._names}
        for p in paths:
            try:
                cp = subprocess.run(["git", "-C", self.git_dir, "cat-file", "-e", f"{revision}:{p}"],
                                    capture_output=True, timeout=60)
                if cp.returncode != 0:   # deleted in this revision: its old name is enough
                    continue
                blob = subprocess.run(["git", "-C", self.git_dir, "show", f"{revision}:{p}"],
                                      capture_output=True, timeout=60, check=True).stdout
                name = (yaml.safe_load(blob) or {}).get("metadata", {}).get("name")
            except (OSError, subprocess.SubprocessError, yaml.YAMLError, AttributeError):
                return None
            if not isinstance(name, str):
                return None
            names.add(name)
        return tuple(sorted(names))
