"""Actions the TUI can trigger, behind one small interface.

Contract: an `Actions` object offers `sync(app)`, `dry_run(app)`, `refresh(app)` and
`set_self_heal(app, on)`, each returning an `ActionResult` (ok, title, summary and
coloured `(style, text)` lines such as a rendered plan). They block, so the UI calls them
from a worker thread, passing `progress(done, total, message)` which is called from that
thread. Errors are results (`ok=False`), never exceptions. Implementations:
- `LocalActions`: an in-process engine run (intents repo compiled on every call so new
  commits are seen; drivers from a factory: real ones, or the snapshot driver), its events
  fed to the read model's observer so the screens update live;
- `HttpActions` (tui/http_actions.py): the running daemon's HTTP API;
- `NoActions`: read-only; every action is refused with the reason.
`capabilities` says which actions are possible, so the UI can grey the others out.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Protocol, Sequence, runtime_checkable

from reconciler.events import Event, EventBus, EventKind
from reconciler.model import Layer

Progress = Callable[[int, "int | None", str], None]
STYLE_OF_SIGN = {"+": "green", "-": "red", "~": "yellow", "@": "cyan", "#": "bold"}


def _no_progress(done: int, total: int | None, message: str) -> None:
    return None


@dataclass(frozen=True)
class ActionResult:
    ok: bool
    title: str
    summary: str
    lines: tuple[tuple[str, str], ...] = ()   # (rich style, text)
    run_id: str = ""


@runtime_checkable
class Actions(Protocol):
    description: str
    capabilities: frozenset[str]   # subset of {"sync", "dry-run", "refresh", "self-heal"}

    def sync(self, app: str, progress: Progress = _no_progress) -> ActionResult: ...

    def dry_run(self, app: str, progress: Progress = _no_progress) -> ActionResult: ...

    def refresh(self, app: str, progress: Progress = _no_progress) -> ActionResult: ...

    def set_self_heal(self, app: str, on: bool) -> ActionResult: ...


ALL = frozenset({"sync", "dry-run", "refresh", "self-heal"})


class NoActions:
    """No engine and no daemon: nothing runs; only self-heal can be recorded when the read
    model (a store) is writable."""

    def __init__(self, reason: str = "read-only: no daemon and no intents repo", read_model: Any = None) -> None:
        self.description = reason
        self.reason = reason
        self.read_model = read_model
        writable = read_model is not None and not getattr(read_model, "read_only", True)
        self.capabilities: frozenset[str] = frozenset({"self-heal"} if writable else ())

    def _refuse(self, what: str) -> ActionResult:
        return ActionResult(False, what, self.reason)

    def sync(self, app: str, progress: Progress = _no_progress) -> ActionResult:
        return self._refuse("sync")

    def dry_run(self, app: str, progress: Progress = _no_progress) -> ActionResult:
        return self._refuse("dry-run")

    def refresh(self, app: str, progress: Progress = _no_progress) -> ActionResult:
        return self._refuse("refresh")

    def set_self_heal(self, app: str, on: bool) -> ActionResult:
        if "self-heal" not in self.capabilities:
            return self._refuse("self-heal")
        try:
            self.read_model.set_self_heal(app, on)
        except Exception as exc:
            return ActionResult(False, f"self-heal {app}", f"could not record self-heal: {exc}")
        return ActionResult(True, f"self-heal {app}", f"self-heal {'enabled' if on else 'disabled'} for {app}")


# (inventory path, targets per layer) -> {layer: driver}
DriverFactory = Callable[[str, Mapping[Layer, Any]], Mapping[Layer, Any]]


def snapshot_drivers(path: str | Path) -> DriverFactory:
    """Offline: every layer read from a snapshot file (the registry's snapshot driver)."""
    from reconciler.drivers.registry import drivers_for

    def make(_inventory_path: str, targets: Mapping[Layer, Any]) -> Mapping[Layer, Any]:
        return drivers_for(targets, {}, observed=str(path))
    return make


def real_drivers(timeout_s: float = 60.0) -> DriverFactory:
    """The real driver of every layer with targets, from the registry (as `reconciler apply`)."""
    def make(inventory_path: str, targets: Mapping[Layer, Any]) -> Mapping[Layer, Any]:
        from reconciler.drivers.registry import drivers_for
        return drivers_for(targets, {"inventory_path": inventory_path, "timeout_s": timeout_s})
    return make


class LocalActions:
    """Run the engine in this process against the intents repo at `repo_dir`."""

    def __init__(self, repo_dir: str | Path, drivers: DriverFactory, observers: Sequence[Callable[[Event], None]] = (),
                 *, read_model: Any = None, write: bool = True, attempts: int = 3, backoff_s: float = 0.2,
                 revision: Callable[[str], str] | None = None, run_ids: Callable[[], str] | None = None,
                 compile: Callable[[Any], Any] | None = None) -> None:
        self.repo_dir = str(repo_dir)
        self.drivers = drivers
        self.observers = list(observers)
        self.read_model = read_model
        self.write = write
        self.attempts = attempts
        self.backoff_s = backoff_s
        self._revision = revision or _git_revision
        self._run_ids = run_ids
        self._compile = compile      # intents -> desired state (default: reconciler.compile.Compiler)
        self._lock = threading.Lock()
        caps = {"dry-run", "refresh"}
        if write:
            caps.add("sync")
        if read_model is not None and not getattr(read_model, "read_only", False):
            caps.add("self-heal")
        self.capabilities = frozenset(caps)
        self.description = f"in-process engine on {Path(self.repo_dir).name}" + ("" if write else " (read-only)")

    # ---- the four actions -----------------------------------------------------------------
    def sync(self, app: str, progress: Progress = _no_progress) -> ActionResult:
        if not self.write:
            return ActionResult(False, f"sync {app}", "read-only mode: sync is disabled (use the daemon)")
        return self._run(app, dry_run=False, trigger="tui", progress=progress)

    def dry_run(self, app: str, progress: Progress = _no_progress) -> ActionResult:
        return self._run(app, dry_run=True, trigger="tui-dry-run", progress=progress)

    def refresh(self, app: str, progress: Progress = _no_progress) -> ActionResult:
        return self._run(app, dry_run=True, trigger="refresh", progress=progress, show_plan=False)

    def self_heal_policy(self) -> bool | None:
        """The repo's `sync.self_heal` (what an app without an override does); None if unreadable."""
        try:
            from reconciler.intents.validate import load_repo
            return bool(load_repo(self.repo_dir).config.sync.self_heal)
        except Exception:
            return None

    def set_self_heal(self, app: str, on: bool) -> ActionResult:
        if "self-heal" not in self.capabilities:
            return ActionResult(False, f"self-heal {app}", "read-only mode: self-heal cannot be recorded")
        try:
            self.read_model.set_self_heal(app, on)
        except Exception as exc:
            return ActionResult(False, f"self-heal {app}", f"could not record self-heal: {exc}")
        return ActionResult(True, f"self-heal {app}", f"self-heal {'enabled' if on else 'disabled'} for {app}")

    # ---- engine run -------------------------------------------------------------------------
    def _run(self, app: str, *, dry_run: bool, trigger: str, progress: Progress,
             show_plan: bool = True) -> ActionResult:
        title = f"{'dry-run plan' if dry_run and show_plan else 'refresh' if dry_run else 'sync'} {app or 'all'}"
        if not self._lock.acquire(blocking=False):
            return ActionResult(False, title, "another action is still running")
        try:
            return self._run_locked(app, dry_run, trigger, progress, show_plan, title)
        except Exception as exc:  # bad intents, compile conflicts, driver construction
            return ActionResult(False, title, _error_text(exc))
        finally:
            self._lock.release()

    def _run_locked(self, app: str, dry_run: bool, trigger: str, progress: Progress, show_plan: bool,
                    title: str) -> ActionResult:
        from reconciler.compile import Compiler
        from reconciler.drivers.registry import targets_of
        from reconciler.engine import Engine
        from reconciler.intents.validate import load_repo
        from reconciler.plan import render_lines

        progress(0, None, "loading and validating intents")
        repo = load_repo(self.repo_dir)
        if app and app not in repo.apps:
            return ActionResult(False, title, f"{app}: no such application in {self.repo_dir}")
        desired = self._compile(repo) if self._compile else Compiler().compile(repo)
        inventory_path = str((Path(self.repo_dir) / repo.config.inventory).resolve())
        all_targets = targets_of(repo.inventory)
        drivers = self.drivers(inventory_path, all_targets)
        targets = {l: ts for l, ts in all_targets.items() if l in drivers}
        total = sum(len(ts) for ts in targets.values())
        state = {"done": 0}
        bus = EventBus()
        for obs in self.observers:
            bus.subscribe(obs)

        def on_event(ev: Event) -> None:
            if ev.kind is EventKind.OBSERVED:
                state["done"] = min(total, state["done"] + 1)
                progress(state["done"], total, f"observed {ev.layer.value if ev.layer else ''} {ev.target}")
            elif ev.kind is EventKind.APPLY_STARTED:
                progress(state["done"], total, f"applying {ev.layer.value if ev.layer else ''} {ev.target}")
            elif ev.kind is EventKind.APPLIED:
                progress(state["done"], total, f"{ev.target}: {ev.outcome.value if ev.outcome else ''}")
        bus.subscribe(on_event)
        engine = Engine(drivers, bus, attempts=self.attempts, backoff_s=self.backoff_s, publish_state=True)
        kw: dict[str, Any] = {}
        if self._run_ids:
            kw["run_id"] = self._run_ids()
        report = engine.run(desired, targets, prune=repo.config.sync.prune, dry_run=dry_run,
                            apps=[app] if app else None, ignore=repo.config.ignore,
                            revision=self._revision(self.repo_dir), trigger=trigger, **kw)
        progress(total, total, "done")
        plan = report.initial.for_app(app) if app else report.initial
        bad = [t for t in report.targets.values() if not t.ok and (not app or app in t.apps)]
        lines: list[tuple[str, str]] = []
        if show_plan or not dry_run:
            lines = [(STYLE_OF_SIGN.get(s, ""), t) for s, t in render_lines(plan)]
        for t in sorted(bad, key=lambda t: (t.layer.create_rank, t.target)):
            lines.append(("bold red", f"{t.layer.value} {t.target}: {t.outcome.value}: {t.error}"))
        n = len(plan.drift)
        if dry_run:
            summary = (f"{n} change(s) would be made" if n else "no drift: observed state matches the intents")
            ok = not bad
        else:
            residual = report.residual.for_app(app) if app else report.residual
            ok = not residual.changes and not bad   # other apps' unreachable targets do not count
            writes = sum(t.writes for t in report.targets.values())
            summary = (f"{'converged' if ok else 'NOT converged'}: {n} change(s), {writes} write(s) "
                       f"in {report.duration_s:.1f}s")
        if bad:
            summary += f"; {len(bad)} target(s) failed"
        return ActionResult(ok, title, summary, tuple(lines), report.run_id)


def _git_revision(repo_dir: str) -> str:
    try:
        import git
        return git.Repo(repo_dir, search_parent_directories=False).head.commit.hexsha
    except Exception:
        return ""


def _error_text(exc: BaseException) -> str:
    errors = getattr(exc, "errors", None) or getattr(exc, "conflicts", None)
    if errors:
        return "\n".join(str(e) for e in list(errors)[:20])
    return f"{type(exc).__name__}: {exc}"
