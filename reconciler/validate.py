"""Load and validate a whole intents repo: schema, then semantics, then typed models.

Contract:
- `load_repo(repo_dir, inventory_override=None) -> IntentRepo` reads a checkout;
  `load_tree(files, inventory_override=None, revision="")` reads `{relative path: bytes |
  Symlink}` (e.g. from git objects). Both raise `RepoInvalid(errors)` carrying ALL errors,
  sorted, each a `ValidationError(file, line, path, message)` whose `str()` is
  `file:line: path: message`; `UsageError` when the repo directory itself is missing.
  `check_repo` / `check_tree` return `(IntentRepo | None, errors)` without raising.
- Layout: `reconciler.yaml` (schemas/reconciler.schema.json), the inventory it names
  (default `inventory.yml`; `inventory_override` replaces it and may live anywhere), and
  `apps/*.yaml|*.yml`, one Application each (schemas/application.schema.json).
- JSON Schema validators are compiled once per process. The schema's `pattern` keyword is
  applied with `$` meaning end of string (Python's `$` would also accept a trailing newline).
  Line numbers are looked up only for errors. Semantic checks: `reconciler.semantics`.
- The returned models are frozen (`reconciler.intent`); `Application.source` is the file's
  repo-relative path. No error escapes as an exception other than these two.
"""
from __future__ import annotations

import gc
import hashlib
import json
import os
import re
import zoneinfo
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Mapping, Union

import pydantic
from jsonschema import Draft202012Validator, validators
from jsonschema.exceptions import ValidationError as SchemaError

from .intent import Application, IntentRepo, Inventory, RepoConfig
from .inventory_loader import parse_inventory
from .schemacheck import compile_schema, ecma_pattern
from .loader import (MAX_FILE_BYTES, DirSource, Doc, LoadFailed, Source, Symlink, TreeSource,
                     ValidationError, display, parse_yaml, show)

__all__ = ["ValidationError", "RepoInvalid", "UsageError", "InternalError", "load_repo", "load_tree", "check_repo",
           "check_tree", "Symlink", "SCHEMA_DIR"]

SCHEMA_DIR = Path(__file__).resolve().parent.parent / "schemas"
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


# ---------------------------------------------------------------------------- schema
_RX_CACHE: dict[str, re.Pattern[str]] = {}


def _pattern(validator: Any, patrn: str, instance: Any, schema: Mapping[str, Any]) -> Any:
    if not validator.is_type(instance, "string"):
        return
    rx = _RX_CACHE.get(patrn)
    if rx is None:
        rx = _RX_CACHE[patrn] = ecma_pattern(patrn)
    if not rx.search(instance):
        yield SchemaError(f"{instance!r} does not match {patrn!r}")


_Validator = validators.extend(Draft202012Validator, {"pattern": _pattern})


@lru_cache(maxsize=None)
def load_schema(name: str) -> dict[str, Any]:
    with open(SCHEMA_DIR / f"{name}.schema.json", encoding="utf-8") as f:
        schema = json.load(f)
    Draft202012Validator.check_schema(schema)
    return schema


@lru_cache(maxsize=None)
def schema_validator(name: str) -> Any:
    """jsonschema validator for schemas/<name>.schema.json (cached): the reference, and the error writer."""
    return _Validator(load_schema(name))


@lru_cache(maxsize=None)
def fast_check(name: str) -> Any:
    """Compiled yes/no check (reconciler.schemacheck), sound for "valid"; cached."""
    return compile_schema(load_schema(name))


_JSON_TYPES = {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean", int: "an integer",
               float: "a number", type(None): "null"}
_ARTICLE = {"object": "a mapping", "array": "a list", "string": "a string", "integer": "an integer",
            "number": "a number", "boolean": "a boolean (true/false)", "null": "null"}


def _lc(title: str) -> str:
    """'Application name' -> 'application name'; 'IPv4 address' stays."""
    return title[:1].lower() + title[1:] if title[1:2].islower() else title


def _hint(schema: Mapping[str, Any]) -> str:
    desc = str(schema.get("description", ""))
    first = re.split(r"(?<!e\.g)\. ", desc)[0].rstrip(".")
    return f": {first}" if first else ""


def schema_errors(doc: Doc, name: str) -> list[ValidationError]:
    """All schema violations of `doc.data` against schema `name`, located in the file."""
    if fast_check(name)(doc.data):
        return []
    v = schema_validator(name)
    out: list[ValidationError] = []
    for e in v.iter_errors(doc.data):
        out.extend(_convert(doc, e))
    return out


def _convert(doc: Doc, e: SchemaError) -> list[ValidationError]:
    path = tuple(e.absolute_path)
    kw, schema, inst, val = e.validator, e.schema, e.instance, e.validator_value
    if "propertyNames" in e.absolute_schema_path and isinstance(inst, str):
        path = path + (inst,)
        title = _lc(str(schema.get("title", "name")))
        return [doc.error(path, f"invalid {title} {show(inst)}{_hint(schema)}")]
    if kw == "additionalProperties" and isinstance(inst, dict):
        allowed = sorted(schema.get("properties", {}))
        extra = [k for k in inst if k not in schema.get("properties", {})]
        return [doc.error(path + (k,), f"unknown field {show(k)} (allowed: {', '.join(allowed)})") for k in extra]
    if kw == "required" and isinstance(inst, dict):
        return [doc.error(path, f"missing required field {show(r)}") for r in val if r not in inst]
    if kw == "type":
        want = " or ".join(_ARTICLE.get(t, t) for t in ([val] if isinstance(val, str) else val))
        got = _JSON_TYPES.get(type(inst), type(inst).__name__)
        shown = f" {show(inst)}" if not isinstance(inst, (dict, list)) else ""
        return [doc.error(path, f"must be {want}, got {got}{shown}")]
    if kw == "pattern":
        title = _lc(str(schema.get("title", "value")))
        return [doc.error(path, f"invalid {title} {show(inst)}{_hint(schema)}")]
    if kw in ("minimum", "maximum"):
        lo, hi = schema.get("minimum"), schema.get("maximum")
        rng = f"{lo}..{hi}" if lo is not None and hi is not None else (f">= {lo}" if lo is not None else f"<= {hi}")
        return [doc.error(path, f"{show(inst)} is out of range {rng}")]
    if kw == "const":
        return [doc.error(path, f"must be {show(val)}, got {show(inst)}")]
    if kw == "enum":
        return [doc.error(path, f"must be one of {', '.join(show(x) for x in val)}; got {show(inst)}")]
    if kw == "uniqueItems":
        return [doc.error(path, "contains duplicate items")]
    if kw in ("minItems", "maxItems"):
        return [doc.error(path, f"must have {'at least' if kw == 'minItems' else 'at most'} {val} item(s)")]
    if kw in ("minProperties", "maxProperties"):
        return [doc.error(path, f"must have {'at least' if kw == 'minProperties' else 'at most'} {val} entr{'y' if val == 1 else 'ies'}")]
    if kw in ("minLength", "maxLength"):
        return [doc.error(path, f"must be {'at least' if kw == 'minLength' else 'at most'} {val} characters long")]
    return [doc.error(path, show(e.message, 200).strip('"'))]


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
        errors.append(ValidationError(CONFIG_FILE, 1, "$", "missing reconciler.yaml at the repo root (apiVersion: netintent/v1, kind: ReconcilerConfig)"))
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
    """Sync windows: the time zone exists and the cron schedule parses (as the daemon will)."""
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
            out.append(doc.error(("sync", "windows", i, "schedule"), f"invalid cron schedule {show(w['schedule'])}: {show(str(e), 120)[1:-1]}"))
    return out


def _model(doc: Doc, cls: type, data: Any, errors: list[ValidationError]) -> Any:
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
                errors.append(ValidationError(display(file), 1, "$", f"file is {p.stat().st_size} bytes, more than the limit of {MAX_FILE_BYTES} bytes"))
                return None
            raw = p.read_bytes()
        except OSError as e:
            errors.append(ValidationError(display(file), 1, "$", f"cannot read inventory: {e.strerror}"))
            return None
    else:
        file = config.inventory if config is not None else RepoConfig().inventory
        if not src.exists(file):
            errors.append(ValidationError(display(file), 1, "$", f"inventory file not found (named by {CONFIG_FILE} `inventory`, default inventory.yml)"))
            return None
        try:
            raw = src.read(file)
        except LoadFailed as e:
            errors.append(e.error)
            return None
    inv, errs = parse_inventory(file, raw)
    errors.extend(errs)
    return inv


def _app_files(src: Source, errors: list[ValidationError]) -> list[str]:
    try:
        names = src.list_dir(APPS_DIR)
    except LoadFailed as e:
        errors.append(e.error)
        return []
    return [f"{APPS_DIR}/{n}" for n in names if not n.startswith(".") and n.endswith((".yaml", ".yml"))]


def _collect(src: Source, override: InventoryOverride, revision: str) -> tuple[IntentRepo | None, list[ValidationError]]:
    current = [CONFIG_FILE]
    gc_was_on = gc.isenabled()
    gc.disable()  # loading allocates ~1M small acyclic objects: generational GC turns quadratic
    try:
        return _collect_unguarded(src, override, revision, current)
    except (RecursionError, MemoryError, ValueError, TypeError, KeyError, AttributeError, AssertionError,
            IndexError, OSError, pydantic.ValidationError) as e:
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
    from .semantics import AppDoc

    try:
        doc = parse_yaml(rel, raw)
    except LoadFailed as e:  # its name is unknown: don't call references to `apps/<name>.yaml` unknown
        return _LoadedApp((e.error,), None, rel.rsplit("/", 1)[-1].rsplit(".", 1)[0])
    errs = schema_errors(doc, "application")
    if errs:
        meta = doc.data.get("metadata") if isinstance(doc.data, dict) else None
        name = meta.get("name") if isinstance(meta, dict) and isinstance(meta.get("name"), str) else None
        return _LoadedApp(tuple(errs), None, name)
    model_errors: list[ValidationError] = []
    app = _model(doc, Application, {**doc.data, "source": rel}, model_errors)
    return _LoadedApp(tuple(model_errors), AppDoc(doc, app) if app is not None else None, None)


def _collect_unguarded(src: Source, override: InventoryOverride, revision: str,
                       current: list[str]) -> tuple[IntentRepo | None, list[ValidationError]]:
    from .semantics import AppDoc, check_semantics

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
    errors.extend(check_semantics(config, inventory, app_docs, broken_names))
    if errors or config is None or inventory is None:
        return None, sorted(set(errors))
    apps = {a.app.name: a.app for a in sorted(app_docs, key=lambda a: a.app.name)}
    return IntentRepo(config=config, inventory=inventory, apps=apps, revision=revision), []


def _dir_source(repo_dir: Union[str, "os.PathLike[str]"]) -> DirSource:
    p = Path(repo_dir)
    if not p.exists():
        raise UsageError(f"{display(os.fspath(repo_dir))}: no such directory")
    if not p.is_dir():
        raise UsageError(f"{display(os.fspath(repo_dir))}: not a directory")
    return DirSource(p)


def check_repo(repo_dir: Union[str, "os.PathLike[str]"], inventory_override: InventoryOverride = None,
               revision: str = "") -> tuple[IntentRepo | None, list[ValidationError]]:
    """Validate a checkout; `(repo, [])` when valid, `(None, errors)` otherwise."""
    return _collect(_dir_source(repo_dir), inventory_override, revision)


def check_tree(files: Mapping[str, Union[bytes, Symlink]], inventory_override: InventoryOverride = None,
               revision: str = "") -> tuple[IntentRepo | None, list[ValidationError]]:
    """Validate an in-memory tree `{relative posix path: bytes | Symlink}`."""
    return _collect(TreeSource(files, label=revision or "<tree>"), inventory_override, revision)


def load_repo(repo_dir: Union[str, "os.PathLike[str]"], inventory_override: InventoryOverride = None,
              revision: str = "") -> IntentRepo:
    repo, errors = check_repo(repo_dir, inventory_override, revision)
    if repo is None:
        raise RepoInvalid(errors)
    return repo


def load_tree(files: Mapping[str, Union[bytes, Symlink]], inventory_override: InventoryOverride = None,
              revision: str = "") -> IntentRepo:
    repo, errors = check_tree(files, inventory_override, revision)
    if repo is None:
        raise RepoInvalid(errors)
    return repo


def add_cli(subparsers: Any) -> Any:
    """Register `reconciler validate` (implemented in reconciler.validate_cli)."""
    from .validate_cli import add_cli as _add

    return _add(subparsers)
