"""DaemonActions: actions through a running daemon (`reconciler serve`) and its store.

Contract: `sync` POSTs `/sync` to the daemon's HTTP API (reconciler/service/http.py), signed with
the webhook secret (`signed_request`: HMAC-SHA256 over method, path, timestamp, a random delivery
id and the body, with the /sync key; good once, within 5 minutes), then follows the run the daemon
records in the store until it finishes (bounded by `timeout_s`), reporting its outcome.
The daemon syncs every application that needs it (its API has no per-app sync).
`dry_run`/`refresh` need no daemon: they are delegated to a read-only in-process engine
run (`local`, when an intents repo was given), since observing writes nothing.
`set_self_heal` writes the per-application override into the store, which the daemon
reads on its next drift scan. The secret is never shown or logged.
"""
from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Any, Callable

from tui.actions import ActionResult, NoActions, Progress, _no_progress
from tui.data import row_run


def daemon_base(url: str) -> str:
    url = url.strip().rstrip("/")
    return url if "://" in url else f"http://{url}"


class DaemonActions:
    def __init__(self, url: str, secret: bytes | None, read_model: Any, *, local: Any = None,
                 timeout_s: float = 300.0, poll_s: float = 0.5, sleep: Callable[[float], None] = time.sleep) -> None:
        self.base = daemon_base(url)
        self._secret = secret
        self.read_model = read_model
        self.local = local or NoActions("dry-run/refresh need the intents repo (--repo DIR)")
        self.timeout_s = timeout_s
        self.poll_s = poll_s
        self._sleep = sleep
        caps = {"self-heal"} if not getattr(read_model, "read_only", True) else set()
        if secret:
            caps.add("sync")
        caps |= set(getattr(self.local, "capabilities", frozenset())) & {"dry-run", "refresh"}
        self.capabilities = frozenset(caps)
        self.description = f"daemon {self.base}" + ("" if secret else " (no webhook secret: sync disabled)")
        self.reason = "" if secret else "give the daemon's --webhook-secret-file to sync through it"

    # ---- daemon ---------------------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"{self.base}/healthz", timeout=3) as r:
            return json.loads(r.read() or b"{}")

    def _post_sync(self, app: str) -> int:
        from reconciler.service.http import signed_request
        # a fresh timestamp and delivery id per request: a captured request cannot be sent again
        body = json.dumps({"source": "tui", "app": app}).encode()
        req = signed_request(f"{self.base}/sync", self._secret or b"", body)
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status

    def sync(self, app: str, progress: Progress = _no_progress) -> ActionResult:
        title = f"sync {app} (daemon)"
        if not self._secret:
            return ActionResult(False, title, self.reason)
        before = {r.run_id for r in self.read_model.runs(None, 20)}
        t0 = time.time()
        progress(0, None, f"asking the daemon at {self.base} to sync")
        try:
            status = self._post_sync(app)
        except urllib.error.HTTPError as exc:
            return ActionResult(False, title, f"daemon refused the sync: HTTP {exc.code}")
        except (urllib.error.URLError, OSError) as exc:
            return ActionResult(False, title, f"daemon not reachable at {self.base}: {getattr(exc, 'reason', exc)}")
        progress(0, None, f"accepted ({status}); waiting for the daemon's run to appear in the store")
        deadline = time.monotonic() + self.timeout_s
        run = None
        while time.monotonic() < deadline:
            fresh = [r for r in self.read_model.runs(None, 20)
                     if r.run_id not in before and (r.started or t0) >= t0 - 1 and not r.dry_run]
            if fresh:
                run = fresh[-1]  # the oldest new one: ours
                if run.phase.finished:
                    break
                progress(0, None, f"run {run.run_id} running ({run.trigger})")
            self._sleep(self.poll_s)
        if run is None:
            return ActionResult(False, title, f"no run recorded within {self.timeout_s:.0f}s "
                                              "(the daemon may be waiting for a sync window or the leader lock)")
        if not run.phase.finished:
            return ActionResult(False, title, f"run {run.run_id} still running after {self.timeout_s:.0f}s")
        ok = run.phase.value == "succeeded"
        lines = tuple(("red", line) for line in run.message.split("; ") if line) if run.message else ()
        dur = f" in {run.duration_s:.1f}s" if run.duration_s is not None else ""
        return ActionResult(ok, title, f"run {run.run_id} {run.phase.value}: {run.writes} write(s){dur}",
                            lines, run.run_id)

    # ---- delegated ------------------------------------------------------------------------
    def dry_run(self, app: str, progress: Progress = _no_progress) -> ActionResult:
        return self.local.dry_run(app, progress)

    def refresh(self, app: str, progress: Progress = _no_progress) -> ActionResult:
        return self.local.refresh(app, progress)

    def self_heal_policy(self) -> bool | None:
        policy = getattr(self.local, "self_heal_policy", None)
        return policy() if policy else None

    def set_self_heal(self, app: str, on: bool) -> ActionResult:
        if "self-heal" not in self.capabilities:
            return ActionResult(False, f"self-heal {app}", "the store is read-only")
        try:
            self.read_model.set_self_heal(app, on)
        except Exception as exc:
            return ActionResult(False, f"self-heal {app}", f"could not record self-heal: {exc}")
        return ActionResult(True, f"self-heal {app}",
                            f"self-heal {'enabled' if on else 'disabled'} for {app}; "
                            "the daemon applies it at its next drift scan")


__all__ = ["DaemonActions", "daemon_base", "row_run"]
