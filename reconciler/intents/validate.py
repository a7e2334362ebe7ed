"""Load and validate a whole intents repo: schema, then semantics, then typed models.

Contract:
- `load_repo(repo_dir, inventory_override=None) -> IntentRepo` reads a checkout;
  `load_tree(files, inventory_override=None, revision="")` reads `{relative path: bytes |
  Symlink}` (e.g. from git objects). Both raise `RepoInvalid(errors)` carrying ALL errors,
  sorted, each a `ValidationError(file, line, path, message)` whose `str()` is
  `file:line: path: message`; `UsageError` when the repo directory itself is missing.
  `check_repo` / `check_tree` return `(IntentRepo | None, errors)` without raising.
- Layout: `reconciler.yaml` (schemas/reconciler.intents.schema.json), the inventory it names
  (default `inventory.yml`; `inventory_override` replaces it and may live anywhere), and
  `apps/*.yaml|*.yml`, one Application each (schemas/application.schema.json).
- Schema checks: `reconciler.intents.schema` (compiled once per process); semantic checks across
  the repo: `reconciler.intents.semantics`; the inventory: `reconciler.intents.inventory`. Line
  numbers are looked up only for errors. App files are memoised by content digest, so
  re-validating a repo parses only the files that changed.
- Errors are bounded (reconciler.intents.bounds): at most 100 listed per file, by position,
  then one `and N more` line; schema errors are found lazily and stop early, app
  files whose YAML aliases multiply what they write are refused before any model is built.
- The inventory's key paths must lie in the key directories (RECONCILER_KEY_DIR, see
  reconciler.intents.inventory_vars); an `inventory_override` may also name keys in its own
  directory. `group_vars/` or `host_vars/` beside the repo's inventory are refused (Ansible
  would read them unvalidated).
- IPAM (reconciler.ipam.allocate): values the apps leave out (instance addresses, VNIs, VLANs)
  are allocated, keeping `previous` allocations, before the semantic checks; the returned
  repo's apps carry them and `IntentRepo.allocations` is the `IpamResult`.
- The returned models are frozen (`reconciler.intents.models`); `Application.source` is the file's
  repo-relative path. No error escapes as an exception other than these two.
"""
from __future__ import annotations

import gc
import hashlib
import itertools
import os
import posixpath
import zoneinfo
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Union

import pydantic

from reconciler.intents.bounds import MAX_COUNTED_PER_FILE, MAX_ERRORS_PER_FILE, FileErrors, alias_growth, bound_errors
from reconciler.intents.inventory import parse_inventory
from reconciler.intents.inventory_vars import ANSIBLE_VAR_DIRS, key_dirs_from_env
from reconciler.intents.loader import MAX_FILE_BYTES, Doc, LoadFailed, ValidationError, display, parse_yaml, show
from reconciler.intents.models import Application, IntentRepo, Inventory, RepoConfig
from reconciler.intents.schema import SCHEMA_DIR, fast_check, load_schema, schema_validator  # noqa: F401
from reconciler.intents.schema import _convert as _schema_error_lines
from reconciler.intents.sources import DirSource, Source, Symlink, TreeSource
from reconciler.keyglob import may_match
from reconciler.model import DEFAULT_DENY_KEYS

__all__ = ["ValidationError", "RepoInvalid", "UsageError", "InternalError", "load_repo", "load_tree", "check_repo",
           "check_tree", "Symlink", "SCHEMA_DIR"]

CONFIG_FILE = "reconciler.yaml"
APPS_DIR = "apps"


class RepoInvalid(Exception):
    """The repo has errors; `errors` lists all of them, sorted."""

    def __init__(self, errors: Iterable[ValidationError]):
        self.errors = sorted(errors)
        super().__init__(f"{len(self.errors)} validation error(s)" + "".join(f"\n{e}" for e in self.errors[:20]))


class UsageError(Exception):
    """The command was used wrongly (e.g. the repo directory does not exist)."""


class InternalError(Exception):
    """A bug met while validating `file` (never bad input): the CLI prints it on one line."""

    def __init__(self, file: str, cause: BaseException):
        self.file, self.cause = file, cause
        super().__init__(f"internal error while validating {file}: {type(cause).__name__}: {cause}")


# ---------------------------------------------------------------------------- loading
InventoryOverride = Union[str, "os.PathLike[str]", None]


def _read_doc(src: Source, rel: str, errors: list[ValidationError]) -> Doc | None:
    try:
        return parse_yaml(rel, src.read(rel))
    except LoadFailed as e:
        errors.append(e.error)
        return None


def _load_config(src: Source, errors: list[ValidationError]) -> RepoConfig | None:
    if not src.exists(CONFIG_FILE):
        errors.append(ValidationError(CONFIG_FILE, 1, "$", "missing reconciler.yaml at the repo root "
                                                           "(apiVersion: netintent/v1, kind: ReconcilerConfig)"))
        return None
    doc = _read_doc(src, CONFIG_FILE, errors)
    if doc is None:
        return None
    errs = schema_errors(doc, "reconciler") or _config_semantics(doc)
    if errs:
        errors.extend(errs)
        return None
    return _model(doc, RepoConfig, doc.data, errors)


def _config_semantics(doc: Doc) -> list[ValidationError]:
    """Sync windows: the time zone exists and the cron schedule parses (as the daemon will).
    Ignore rules: see `_ignore_rule_semantics`."""
    out: list[ValidationError] = []
    windows = (doc.data.get("sync") or {}).get("windows") or []
    for i, w in enumerate(windows):
        tz = w.get("timezone")
        if tz is not None:
            try:
                zoneinfo.ZoneInfo(tz)
            except (zoneinfo.ZoneInfoNotFoundError, ValueError):
                out.append(doc.error(("sync", "windows", i, "timezone"), f"unknown time zone {show(tz)}"))
                continue
        try:
            from apscheduler.triggers.cron import CronTrigger

            CronTrigger.from_crontab(w["schedule"], timezone=tz or "UTC")
        except ValueError as e:
            out.append(doc.error(("sync", "windows", i, "schedule"),
                                 f"invalid cron schedule {show(w['schedule'])}: {show(str(e), 120)[1:-1]}"))
    for kind, pool in ((doc.data.get("ipam") or {}).items()):
        if pool["end"] < pool["start"]:
            out.append(doc.error(("ipam", kind, "end"), f"ipam.{kind} pool ends ({pool['end']}) before it starts "
                                 f"({pool['start']})"))
    return out + _ignore_rule_semantics(doc)


def _ignore_rule_semantics(doc: Doc) -> list[ValidationError]:
    """A rule with `create: false` whose key can match a default-deny resource (whatever the apps
    and hosts: model.DEFAULT_DENY_KEYS) would leave applications without their default deny."""
    out: list[ValidationError] = []
    for i, rule in enumerate(doc.data.get("ignore") or []):
        if rule.get("create") is not False:
            continue
        hit = next((t for t in DEFAULT_DENY_KEYS if may_match(rule["key"], t)), None)
        if hit is not None:
            out.append(doc.error(("ignore", i, "create"), "create: false would leave applications without their "
                                 f"default deny: key {show(rule['key'])} can match {hit} (each application's "
                                 "nftables table); narrow the key or drop create: false"))
    return out


def schema_errors(doc: Doc, name: str) -> list[ValidationError]:
    """Schema violations of `doc`, bounded (reconciler.intents.bounds): jsonschema yields errors
    lazily, so a file describing 800,000 of them (aliases) costs the first thousand only. Of
    those, the ones listed come first in the file (ordered by position in the data, without
    line lookups)."""
    if fast_check(name)(doc.data):
        return []
    found = iter(schema_validator(name).iter_errors(doc.data))
    first = list(itertools.islice(found, MAX_COUNTED_PER_FILE))
    position = _Positions(doc.data)
    first.sort(key=lambda e: position(e.absolute_path))
    sink = FileErrors(doc)
    for e in first:
        if len(sink.errors) < MAX_ERRORS_PER_FILE:  # Doc.error locates no more than the listed ones
            sink.errors.extend(_schema_error_lines(doc, e))
        else:
            sink.count_more(_schema_error_count(e), tuple(e.absolute_path))
    if next(found, None) is not None:
        sink.at_least()
    return sink.result()


class _Positions:
    """Document order of JSON paths in plain loaded data (dicts keep the file's key order):
    `position(path)` -> tuple of indices, one per step; each mapping is indexed once."""

    def __init__(self, data: Any):
        self.data = data
        self.index: dict[int, dict[str, int]] = {}

    def __call__(self, path: Iterable[str | int]) -> tuple[int, ...]:
        out: list[int] = []
        node = self.data
        for step in path:
            if isinstance(node, dict):
                idx = self.index.get(id(node))
                if idx is None:
                    idx = self.index[id(node)] = {k: i for i, k in enumerate(node)}
                out.append(idx.get(step, -1))  # type: ignore[arg-type]
                node = node.get(step)
            elif isinstance(node, list) and isinstance(step, int) and 0 <= step < len(node):
                out.append(step)
                node = node[step]
            else:
                break
        return tuple(out)


def _schema_error_count(e: Any) -> int:
    """How many located errors schema._convert makes of one jsonschema error (one per unknown
    field or missing required field), without making them."""
    if e.validator == "additionalProperties" and isinstance(e.instance, dict):
        return max(1, sum(1 for k in e.instance if k not in e.schema.get("properties", {})))
    if e.validator == "required" and isinstance(e.instance, dict):
        return max(1, sum(1 for r in e.validator_value if r not in e.instance))
    return 1


def _model(doc: Doc, cls: type[pydantic.BaseModel], data: Any, errors: list[ValidationError]) -> Any:
    try:
        return cls.model_validate(data)
    except pydantic.ValidationError as e:  # schema and model disagree: still a located error
        for err in e.errors()[:20]:
            loc = tuple(x for x in err.get("loc", ()) if isinstance(x, (str, int)))
            errors.append(doc.error(loc, f"{err.get('msg', 'invalid value')}"))
        return None


def _load_inventory(src: Source, config: RepoConfig | None, override: InventoryOverride,
                    errors: list[ValidationError]) -> Inventory | None:
    if override is not None:
        file = os.fspath(override)
        try:
            p = Path(file)
            if not p.is_file():
                errors.append(ValidationError(display(file), 1, "$", "inventory file not found"))
                return None
            if p.stat().st_size > MAX_FILE_BYTES:
                errors.append(ValidationError(display(file), 1, "$", f"file is {p.stat().st_size} bytes, "
                                                                      f"more than the limit of {MAX_FILE_BYTES} bytes"))
                return None
            raw = p.read_bytes()
        except OSError as e:
            errors.append(ValidationError(display(file), 1, "$", f"cannot read inventory: {e.strerror}"))
            return None
    else:
        file = config.inventory if config is not None else RepoConfig().inventory
        if not src.exists(file):
            errors.append(ValidationError(display(file), 1, "$", f"inventory file not found (named by {CONFIG_FILE} "
                                                                  "`inventory`, default inventory.yml)"))
            return None
        try:
            raw = src.read(file)
        except LoadFailed as e:
            errors.append(e.error)
            return None
    # Keys named by an inventory the operator gives may live beside it; a repo's only in the
    # configured key directories. Ansible reads group_vars/ and host_vars/ beside the inventory
    # file too: in a checkout those would be variables nobody validated.
    key_dirs = key_dirs_from_env() + ((os.path.dirname(os.path.abspath(file)),) if override is not None else ())
    if override is None:
        for d in ANSIBLE_VAR_DIRS:
            rel = posixpath.join(posixpath.dirname(file), d)
            if src.exists(rel):
                errors.append(ValidationError(display(rel), 1, "$", f"Ansible would read variables from {d}/ "
                                              "beside the inventory, unvalidated; put them in the inventory itself"))
    inv, errs = parse_inventory(file, raw, key_dirs)
    errors.extend(errs)
    return inv


def _app_files(src: Source, errors: list[ValidationError]) -> list[str]:
    try:
        names = src.list_dir(APPS_DIR)
    except LoadFailed as e:
        errors.append(e.error)
        return []
    return [f"{APPS_DIR}/{n}" for n in names if not n.startswith(".") and n.endswith((".yaml", ".yml"))]


def _collect(src: Source, override: InventoryOverride, revision: str,
             previous: Any = None) -> tuple[IntentRepo | None, list[ValidationError]]:
    current = [CONFIG_FILE]
    gc_was_on = gc.isenabled()
    gc.disable()  # loading allocates ~1M small acyclic objects: generational GC turns quadratic
    try:
        return _collect_unguarded(src, override, revision, current, previous)
    except Exception as e:  # a bug, not bad input: one located line at the CLI, never a traceback
        raise InternalError(display(current[0]), e) from e
    finally:
        if gc_was_on:
            gc.enable()


@dataclass(frozen=True)
class _LoadedApp:
    errors: tuple[ValidationError, ...]
    app: Any  # semantics.AppDoc | None
    broken_name: str | None  # name to treat as existing-but-broken in references


_APP_CACHE: dict[tuple[str, bytes], _LoadedApp] = {}
APP_CACHE_SIZE = 50_000


def _load_app(rel: str, raw: bytes) -> _LoadedApp:
    """Parse + schema + model of one app file, memoised by (path, content digest).

    Everything here depends only on the file itself, so re-validating a repo where few
    files changed (the daemon on each commit, `plan --from/--to`) parses only those."""
    key = (rel, hashlib.blake2b(raw, digest_size=20).digest())
    hit = _APP_CACHE.get(key)
    if hit is None:
        hit = _load_app_uncached(rel, raw)
        if len(_APP_CACHE) >= APP_CACHE_SIZE:
            _APP_CACHE.pop(next(iter(_APP_CACHE)), None)
        _APP_CACHE[key] = hit
    return hit


def _load_app_uncached(rel: str, raw: bytes) -> _LoadedApp:
    from reconciler.intents.semantics import AppDoc

    try:
        doc = parse_yaml(rel, raw)
    except LoadFailed as e:  # its name is unknown: don't call references to `apps/<name>.yaml` unknown
        return _LoadedApp((e.error,), None, rel.rsplit("/", 1)[-1].rsplit(".", 1)[0])
    growth = alias_growth(doc, raw)
    errs = [ValidationError(doc.file, 1, "$", growth)] if growth else schema_errors(doc, "application")
    if errs:
        meta = doc.data.get("metadata") if isinstance(doc.data, dict) else None
        name = meta.get("name") if isinstance(meta, dict) and isinstance(meta.get("name"), str) else None
        return _LoadedApp(tuple(errs), None, name)
    model_errors: list[ValidationError] = []
    app = _model(doc, Application, {**doc.data, "source": rel}, model_errors)
    return _LoadedApp(tuple(model_errors), AppDoc(doc, app) if app is not None else None, None)


def _collect_unguarded(src: Source, override: InventoryOverride, revision: str, current: list[str],
                       previous: Any = None) -> tuple[IntentRepo | None, list[ValidationError]]:
    from reconciler.intents.semantics import AppDoc, check_semantics
    from reconciler.ipam.incremental import allocate
    from reconciler.ipam.model import EMPTY

    errors: list[ValidationError] = []
    config = _load_config(src, errors)
    current[0] = os.fspath(override) if override is not None else (config.inventory if config else "inventory.yml")
    inventory = _load_inventory(src, config, override, errors)
    app_docs: list[AppDoc] = []
    broken_names: set[str] = set()
    for rel in _app_files(src, errors):
        current[0] = rel
        try:
            raw = src.read(rel)
        except LoadFailed as e:
            errors.append(e.error)
            broken_names.add(rel.rsplit("/", 1)[-1].rsplit(".", 1)[0])
            continue
        loaded = _load_app(rel, raw)
        errors.extend(loaded.errors)
        if loaded.broken_name is not None:
            broken_names.add(loaded.broken_name)
        if loaded.app is not None:
            app_docs.append(loaded.app)
    current[0] = "(cross-application checks)"
    for a in app_docs:
        a.doc.reset_errors()  # a Doc is reused while its file is unchanged: a fresh error budget per validation
    # IPAM fills in what the apps leave out (reconciler.ipam), so semantics and compile see the
    # very values that `apply` records: one load path for validate, plan, apply and the daemon.
    allocated = allocate(config, app_docs, previous if previous is not None else EMPTY)
    errors.extend(allocated.errors)
    app_docs = list(allocated.apps)
    errors.extend(check_semantics(config, inventory, app_docs, broken_names))
    if errors or config is None or inventory is None:
        return None, bound_errors(errors)
    apps = {a.app.name: a.app for a in sorted(app_docs, key=lambda a: a.app.name)}
    return IntentRepo(config=config, inventory=inventory, apps=apps, revision=revision,
                      allocations=allocated.result), []


def _dir_source(repo_dir: Union[str, "os.PathLike[str]"]) -> DirSource:
    p = Path(repo_dir)
    if not p.exists():
        raise UsageError(f"{display(os.fspath(repo_dir))}: no such directory")
    if not p.is_dir():
        raise UsageError(f"{display(os.fspath(repo_dir))}: not a directory")
    return DirSource(p)


def check_repo(repo_dir: Union[str, "os.PathLike[str]"], inventory_override: InventoryOverride = None,
               revision: str = "", previous: Any = None) -> tuple[IntentRepo | None, list[ValidationError]]:
    """Validate a checkout; `(repo, [])` when valid, `(None, errors)` otherwise. `previous`:
    the reconciler.ipam.model.Allocations to keep (None: nothing allocated yet)."""
    return _collect(_dir_source(repo_dir), inventory_override, revision, previous)


def check_tree(files: Mapping[str, Union[bytes, Symlink]], inventory_override: InventoryOverride = None,
               revision: str = "", previous: Any = None) -> tuple[IntentRepo | None, list[ValidationError]]:
    """Validate an in-memory tree `{relative posix path: bytes | Symlink}`."""
    return _collect(TreeSource(files, label=revision or "<tree>"), inventory_override, revision, previous)


def load_repo(repo_dir: Union[str, "os.PathLike[str]"], inventory_override: InventoryOverride = None,
              revision: str = "", previous: Any = None) -> IntentRepo:
    repo, errors = check_repo(repo_dir, inventory_override, revision, previous)
    if repo is None:
        raise RepoInvalid(errors)
    return repo


def load_tree(files: Mapping[str, Union[bytes, Symlink]], inventory_override: InventoryOverride = None,
              revision: str = "", previous: Any = None) -> IntentRepo:
    repo, errors = check_tree(files, inventory_override, revision, previous)
    if repo is None:
        raise RepoInvalid(errors)
    return repo
