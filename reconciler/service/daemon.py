"""The reconcile daemon (`reconciler serve`): APScheduler jobs around the engine.

Contract:
- Jobs (BackgroundScheduler): `leader` (1 s: take/keep the leader lock; only the leader
  syncs, scans or applies), `poll` (every sync interval: request a sync), `drift` (every
  drift interval: dry-run scan of all apps, then self-heal the apps whose policy says so,
  others are only reported), `retry` (1 s: re-apply failed apps whose backoff expired; both in
  service/healing.py),
  `flush` (2 s: write events queued while the database was unreachable).
- Sync requests (poll, webhook, manual, startup) are coalesced: while a sync runs, any
  number of requests collapse into ONE more sync, which fetches and takes the newest head.
- A commit's automatic sync observes and applies only the targets its change touches, from a
  base revision known to be in place (service/touched.py says when it stays full: startup, manual
  sync, rollback, another inventory or config, or no committed base). Drift scans stay full.
- A revision is loaded from git objects and validated; an invalid (or, with a keyring,
  unsigned) revision is refused with the validation errors (recorded as a FAILED run and in
  `service_state.refused`), and the last good revision stays the one applied and healed.
- Rollback: a hold in the store pins auto-sync to an earlier revision until the branch head
  moves past the head seen when the hold began, or the operator releases it.
- Fabric: resources no application owns (app "", e.g. hypervisor uplink isolation flows,
  leaf BGP) are healed and retried like an application's, under the repo's `sync.self_heal`
  (there is no per-app override for them); logs and healthz name them "(fabric)".
- Failures: an app whose targets fail is retried alone with exponential backoff; runs use
  one attempt so a failing app never holds the healthy ones. Unreachable repo, database or
  targets are logged and reported (healthz, metrics, store) and retried; nothing raises out.
- A layer whose driver cannot be loaded (`DriverLoadError`, e.g. grpc not installed) fails the
  run that needed it: recorded as a FAILED run naming the missing module (not repeated for the
  same error by polls and drift scans), shown in healthz `drivers` and logged; the daemon keeps
  running and tries to build the drivers again at the next sync.
- Sync windows deny automatic applies (sync, self-heal, retry); manual sync and rollback
  are allowed. Drift scans (dry runs) always run.
- On becoming leader, runs left RUNNING by a dead process are marked INTERRUPTED and a
  full sync runs at once.
"""
from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler

from reconciler.drivers.registry import targets_of
from reconciler.engine import Engine
from reconciler.events import EventBus
from reconciler.ipam.binding import StoreBinding
from reconciler.redact import REDACTOR
from reconciler.report import RunReport
from reconciler.revision import REFUSALS, load_revision, refusal_lines
from reconciler.service.commit_compile import CommitCompiler
from reconciler.service.config import FABRIC, DaemonConfig, Loaded, app_label, now_utc, write_inventory
from reconciler.service.config import safe as _safe
from reconciler.service.engines import DaemonEngines
from reconciler.service.gitsource import GitSource, SourceError
from reconciler.service.healing import drift_scan, note_failures, retry_due
from reconciler.service.jsonlog import log_event
from reconciler.service.leader import leader_lock
from reconciler.service.metrics import Metrics
from reconciler.service.reachability import Reachability
from reconciler.service.retries import RetrySchedule
from reconciler.service.shard_fence import (
    mark_dead_runs,
    retry_refused,
    shard_health,
    start_shards,
    wait_targets_free,
)
from reconciler.service.shard_lease import Fence, Membership
from reconciler.service.store import Store
from reconciler.service.touched import carry_unchanged, journal_settled, narrow, went_live
from reconciler.service.windows import window_verdict
from reconciler.status import Phase
from reconciler.telemetry.service import for_daemon as telemetry_for_daemon

__all__ = ["Daemon", "DaemonConfig"]

log = logging.getLogger("reconciler.service.daemon")

class Daemon:
    def __init__(self, cfg: DaemonConfig, store: Store | None = None) -> None:
        self.cfg = cfg
        self.source = GitSource(cfg.repo, cfg.branch, cfg.cache_dir, timeout_s=cfg.timeout_s)
        self.store = store or Store(cfg.store_url, owner=cfg.instance)
        # shards (cfg.shards): the lease of a shard member stands in for the leader lock
        self.shard: Membership | None = None
        self.fence: Fence | None = None
        if cfg.shards:
            self.shard, self.fence = start_shards(cfg.store_url, cfg.instance, cfg.shards, {"listen": cfg.listen})
        self.lock = self.shard or leader_lock(cfg.store_url)
        self.metrics = Metrics()
        self.bus = EventBus()
        self.bus.subscribe(self.store.observer)
        self.bus.subscribe(self.metrics.observer)
        self.reach = Reachability(self.store, self.metrics)   # verify after each run (service/reachability.py)
        self.engines = DaemonEngines(cfg, self.bus, self.store, self.reach, self.fence)   # service/engines.py
        self.telemetry = telemetry_for_daemon(self)   # own thread and schedule: never blocks a sync
        self.bus.subscribe(log_event)
        self.compiler = CommitCompiler(str(self.source.repo_dir))   # a commit's changed apps: compile=change
        self._ipam = StoreBinding(self.store.engine, record=True)  # IPAM allocations: kept in and recorded to the store
        self.current: Loaded | None = None
        self.is_leader = False
        self.source_error = ""
        self.window_reason = ""
        self.refused: dict[str, Any] | None = None
        self.run_lock = threading.Lock()
        self._req_lock = threading.Lock()
        self._want: tuple[str, bool, frozenset[str] | None] | None = None
        self._sync_running = False
        self._force = True
        self.retries = RetrySchedule(cfg.retry_base_s, cfg.retry_max_s)   # failed apps, applied again (healing.py)
        self._in_place: Loaded | None = None   # the last revision a full sync put in place for good (touched.py)
        self._intervals: tuple[float, float] | None = None
        self.stopping = threading.Event()
        self._next_prune = 0.0
        self.scheduler = BackgroundScheduler(executors={"default": ThreadPoolExecutor(8)},
                                             job_defaults={"coalesce": True, "max_instances": 1,
                                                           "misfire_grace_time": None})
        self.http: Any = None   # service.http.HttpServer while listening
        Path(cfg.state_dir).mkdir(parents=True, exist_ok=True)
        os.chmod(cfg.state_dir, 0o700)   # repo inventories written here may hold passwords

    # ---- lifecycle ---------------------------------------------------------------------
    def start(self) -> None:
        if self.cfg.listen:
            from reconciler.compliance.serve import report_endpoint
            from reconciler.service.http import HttpServer
            host, _, port = self.cfg.listen.rpartition(":")
            self.http = HttpServer(host or "127.0.0.1", int(port), secret=self.cfg.webhook_secret,
                                   on_sync=lambda trig, manual, p: self.request_sync(
                                       trig, manual, [p["app"]] if manual and isinstance(p.get("app"), str) else None),
                                   metrics=self._render_metrics, health=self.health,
                                   report=report_endpoint(self.store))   # GET /report, from the store
            self.http.start()
        iv, dv = self._wanted_intervals(None)
        self._intervals = (iv, dv)
        s = self.scheduler
        s.add_job(self._leader_job, "interval", seconds=1, id="leader", next_run_time=now_utc())
        s.add_job(lambda: self.request_sync("poll"), "interval", seconds=iv, id="poll")
        s.add_job(self._drift_job, "interval", seconds=dv, id="drift")
        s.add_job(self._retry_job, "interval", seconds=1, id="retry")
        s.add_job(self._flush_job, "interval", seconds=2, id="flush")
        # lapsed confirm windows, dead owners' transactions
        from reconciler.txn.service import txn_tick

        s.add_job(lambda: txn_tick(self), "interval", seconds=1, id="txn")
        s.start()
        self.telemetry.start()
        log.info("daemon started", extra={"ctx": {"instance": self.cfg.instance, "branch": self.cfg.branch,
                                                  "listen": self.cfg.listen, "poll_s": iv, "drift_s": dv}})

    def stop(self, wait_s: float = 60.0) -> None:
        self.stopping.set()
        try:
            self.scheduler.shutdown(wait=False)
        except Exception:
            pass
        if self.http:
            self.http.stop()
        self.telemetry.stop()
        if self.run_lock.acquire(timeout=wait_s):
            self.run_lock.release()
        self.store.flush()
        self.lock.release()
        self.is_leader = False

    def wait(self) -> None:
        while not self.stopping.wait(0.5):
            pass

    # ---- leader ------------------------------------------------------------------------
    def _leader_job(self) -> None:
        if self.is_leader:
            if not self.lock.alive():
                self.is_leader = False
                self.metrics.leader.set(0)
                log.warning("leader lock lost; not applying until it is reacquired")
            elif self.shard is not None and self.shard.take_gained():  # slots moved to us: sync them now
                _safe(lambda: mark_dead_runs(self.store, self.shard), [])
                self._force = True
                self.request_sync("takeover")
            return
        if not self.lock.try_acquire():
            return
        self.is_leader = True
        self.metrics.leader.set(1)
        interrupted = _safe(self.store.mark_interrupted if self.shard is None else
                            (lambda: mark_dead_runs(self.store, self.shard)), [])
        log.info("became leader", extra={"ctx": {"instance": self.cfg.instance, "interrupted_runs": interrupted}})
        self._force = True
        self.request_sync("startup")

    # ---- sync --------------------------------------------------------------------------
    def request_sync(self, trigger: str, manual: bool = False, apps: list[str] | None = None) -> None:
        """Ask for a sync; requests during a running sync collapse into one more.
        `apps` (manual only): re-apply just these apps when no new revision is due."""
        with self._req_lock:
            want = (trigger, manual, frozenset(apps) if (apps and manual) else None)
            prev = self._want
            if prev is not None:
                manual_any = manual or prev[1]
                if manual and prev[1]:
                    scope = None if want[2] is None or prev[2] is None else want[2] | prev[2]
                else:
                    scope = want[2] if manual else prev[2]
                want = ("manual" if manual_any else trigger, manual_any, scope)
            self._want = want
            if self._sync_running:
                return
            self._sync_running = True
        try:  # a one-off scheduler job (unique id: never skipped as "already running")
            self.scheduler.add_job(self._sync_loop, id=f"sync-{uuid.uuid4().hex[:8]}", name="sync")
        except Exception:  # scheduler not running (shutting down): plain thread
            threading.Thread(target=self._sync_loop, name="reconciler-sync", daemon=True).start()

    def _sync_loop(self) -> None:
        while not self.stopping.is_set():
            with self._req_lock:
                if self._want is None:
                    self._sync_running = False
                    return
                trigger, manual, scope = self._want
                self._want = None
            try:
                self.sync_once(trigger, manual, sorted(scope) if scope else None)
            except Exception:
                log.exception("sync failed unexpectedly")
        with self._req_lock:
            self._sync_running = False

    def sync_once(self, trigger: str, manual: bool = False, apps: list[str] | None = None) -> RunReport | None:
        if not self.is_leader:
            return None
        try:
            head = self.source.fetch()
            self.source_error = ""
        except SourceError as exc:
            if str(exc) != self.source_error:
                log.warning("repo unreachable: %s", exc)
            self.source_error = str(exc)
            return None
        if self.current is None:
            self._restore_current()
        hold = _safe(self.store.hold)
        target, run_trigger = head, trigger
        if hold is not None:
            if head != hold.branch_head:
                log.info("new commit %s: rollback hold at %s released", head[:12], hold.revision[:12])
                _safe(self.store.release_hold)
            else:
                target, run_trigger = hold.revision, "rollback"
        current = self.current
        same = current is not None and current.revision == target
        if same and not self._force and not manual:
            return None
        if current is not None and same and not self._force and manual and apps:
            known = [a for a in apps if a in current.repo.apps]
            return self.apply_revision(current, "manual", known) if known else None
        if self.refused and self.refused.get("sha") == target and not manual:
            return None
        loaded = self.load(target, trigger)
        if loaded is None:  # refused: the last good revision stays; after a restart, reconcile it again
            if not (self._force and self.current is not None):
                self._force = False
                return None
            loaded, run_trigger = self.current, trigger
        if not manual and run_trigger != "rollback":
            ok, why = self.windows_allow(loaded)
            if not ok:
                if why != self.window_reason:
                    log.info("automatic sync of %s denied: %s", target[:12], why)
                self.window_reason = why
                return None
        self.window_reason = ""
        # a commit's sync observes and applies only the targets its change touches (service/touched.py)
        report = self.apply_revision(loaded, run_trigger, None,
                             narrowable=not manual and run_trigger != "rollback" and not self._force)
        if report is not None:
            self._force = False
        return report

    def _restore_current(self) -> None:
        rev = _safe(lambda: self.store.service("applied_revision"))
        if rev and self.source.contains(rev):
            self.current = self.load(rev, "restore", record=False)

    def load(self, sha: str, trigger: str, record: bool = True) -> Loaded | None:
        try:
            rev = load_revision(self.source.repo_dir, sha, self.cfg.inventory, keyring=self.cfg.keyring,
                                compiler=self.compiler, ipam=self._ipam)
        except REFUSALS as exc:
            self._refuse(sha, refusal_lines(exc), trigger, record)
            return None
        except Exception as exc:  # a bug or an unreadable object: apply nothing, try again next sync
            log.error("revision %s could not be loaded (%s: %s); last good revision stays applied", sha[:12],
                      exc.__class__.__name__, REDACTOR.text(str(exc))[:500])
            return None
        files, repo, desired = rev.files, rev.repo, rev.desired
        inv_path = self.cfg.inventory or write_inventory(self.cfg.state_dir, files, repo.config.inventory)
        for h in repo.inventory.hosts.values():
            REDACTOR.add_vars(dict(h.vars))
        return Loaded(sha, repo, desired, str(inv_path), targets_of(repo.inventory))

    def _refuse(self, sha: str, errors: list[str], trigger: str, record: bool) -> None:
        if not record:
            log.error("stored revision %s is not loadable any more (%d error(s))", sha[:12], len(errors))
            return None
        self.refused = {"sha": sha, "errors": errors, "ts": time.time()}
        self.metrics.refused.inc()
        log.error("revision %s refused: %d error(s); last good revision %s stays applied", sha[:12], len(errors),
                  self.current.revision[:12] if self.current else "(none)", extra={"ctx": {"errors": errors[:50]}})
        run_id = uuid.uuid4().hex[:12]
        _safe(lambda: self.store.record_run(run_id, revision=sha, trigger=trigger, phase=Phase.FAILED,
                                            error="refused: " + "\n".join(errors)))
        _safe(lambda: self.store.set_service("refused", self.refused))
        return None

    def windows_allow(self, loaded: Loaded | None) -> tuple[bool, str]:
        cfg = (loaded or self.current)
        if cfg is None:
            return True, ""
        return window_verdict(cfg.repo.config.sync.windows)

    # ---- apply -------------------------------------------------------------------------
    def engine_for(self, loaded: Loaded, trigger: str, apps: list[str] | None = None) -> Engine | None:
        """The engine for this revision's inventory, or None (recorded) when a driver cannot load."""
        return self.engines.engine_for(loaded, trigger, apps)

    def apply_revision(self, loaded: Loaded, trigger: str, apps: list[str] | None, blocking: bool = True,
               narrowable: bool = False) -> RunReport | None:
        if not self.run_lock.acquire(blocking=blocking):
            return None
        full = apps is None
        try:
            if not self.is_leader or not self.lock.alive():
                return None
            if self.shard is not None:  # only the apps (and the fabric "") whose slots we own
                scope = [FABRIC, *loaded.repo.apps] if apps is None else apps
                apps = self.shard.mine(scope)
                for a in set(scope) - set(apps):
                    self.retries.clear(a)
                if not apps:
                    return None
            engine = self.engine_for(loaded, trigger, apps)
            if engine is None:
                return None
            if self.shard is not None and apps:  # another member's transaction on our targets: wait, not refuse
                wait_targets_free(self, loaded, apps)
            # every sync is a transaction (journal first)
            from reconciler.txn.service import run_sync

            scoped = (narrow(self._in_place, loaded) if narrowable and full and self.shard is None
                      and journal_settled(self.store) else None)
            if scoped is not None:
                log.info("revision %s touches %d target(s); only those are observed and applied", loaded.revision[:12],
                         sum(map(len, scoped.targets.values())))
            report = run_sync(self, engine, scoped or loaded, apps, trigger)
            if report is None:
                if self.shard is not None:  # refused before writing (e.g. a target busy with another member)
                    retry_refused(self, loaded, apps)
                return None
            if full:   # applied: reported as the daemon's revision now, not after the verification below
                self.current = loaded
                self._reschedule(loaded)
                if self.refused and self.refused.get("sha") != loaded.revision:
                    self.refused = None
                    _safe(lambda: self.store.set_service("refused", None))
                _safe(lambda: self.store.set_service("applied_revision", loaded.revision))
            self.reach.after_run(loaded, report, engine)
        finally:
            self.run_lock.release()
        self.record_failures(report, apps)
        if full:   # the base of the next commit's narrowed sync: only a revision known to be in place
            live = went_live(self.store, report) and not self.retries
            if live and scoped is not None and self._in_place is not None:
                carry_unchanged(self.store, self._in_place, loaded)   # apps it did not touch are at it too
            self._in_place = loaded if live else None
        return report

    def record_failures(self, report: RunReport, apps: list[str] | None) -> None:
        note_failures(self, report, apps)

    # ---- periodic jobs (service/healing.py) ------------------------------------------------
    def _drift_job(self) -> None:
        drift_scan(self)

    def _retry_job(self) -> None:
        retry_due(self)

    def _flush_job(self) -> None:
        self.store.flush()
        self.metrics.pending.set(self.store.pending)
        now = time.monotonic()
        if self.is_leader and self.store.available and now >= self._next_prune:
            self._next_prune = now + 600
            _safe(self.store.prune_history, 0)

    def _wanted_intervals(self, loaded: Loaded | None) -> tuple[float, float]:
        pol = loaded.repo.config.sync if loaded else None
        iv = self.cfg.interval_s or (pol.interval_s if pol else 60)
        dv = self.cfg.drift_interval_s or (pol.drift_interval_s if pol else 30)
        return float(iv), float(dv)

    def _reschedule(self, loaded: Loaded) -> None:
        want = self._wanted_intervals(loaded)
        if want != self._intervals and self.scheduler.running:
            self._intervals = want
            self.scheduler.reschedule_job("poll", trigger="interval", seconds=want[0])
            self.scheduler.reschedule_job("drift", trigger="interval", seconds=want[1])

    # ---- reporting ---------------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        return {"ok": self.scheduler.running and not self.stopping.is_set(), "instance": self.cfg.instance,
                "leader": self.is_leader, "store": {"available": self.store.available, "pending": self.store.pending,
                                                    "error": self.store.last_error},
                "source": {"ok": not self.source_error, "error": self.source_error, "head": self.source.head},
                "revision": self.current.revision if self.current else "",
                "refused": (self.refused or {}).get("sha", ""), "window": self.window_reason,
                "drivers": {"ok": not self.engines.error, "error": self.engines.error},
                "retrying": sorted(app_label(a) for a in self.retries.apps()),
                "reachability": self.reach.status(),
                **({} if self.shard is None else {"shard": shard_health(self.shard)})}

    def _render_metrics(self) -> bytes:
        self.metrics.pending.set(self.store.pending)
        return self.metrics.render()
