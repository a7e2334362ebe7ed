"""Shard membership (a lease table with heartbeats) and the fence every write batch passes.

Contract (PostgreSQL only; tables in `shard_models`; all times from the database clock):
- `Membership(url, member, settings)` is a leader-lock look-alike for the daemon:
  `try_acquire()` starts the heartbeat thread and says whether we hold a lease (and the member
  set has held still for one heartbeat, so members started together do not each begin with
  every app), `alive()`
  says whether the lease is still ours by our own clock (counted from the moment the last
  renewal was SENT, so we stop believing in it before the database does), `release()`
  leaves the ring. `mine(apps)` are the apps whose slot we own in the current view;
  `take_gained()` says (once) that our slots grew, so the daemon re-syncs them.
- Heartbeat (every lease/3): renew `expires = now + lease` only while the lease has not
  lapsed; a lapsed lease is never renewed: the member joins again with a new epoch. A member
  whose lease lapsed is reaped by any live member. Join, leave and reap change the member
  set under `SELECT ... FOR UPDATE` of the ring row and bump `generation` in the same
  transaction. A member joins only when the workload CA it issues from (sha256 of its ca.pem,
  kept in its lease `info`) is the one every other member that has a CA uses (`ShardMismatch`
  otherwise, reported as the heartbeat's error): certificates one member issues are checked
  against the trust bundle another member installs.
- `Fence.batch(apps, layer, targets)` brackets ONE device write batch in one database
  transaction: it takes the ring row `FOR SHARE` (so no join/leave/reap can commit while the
  batch runs), then checks that our lease row still has the epoch this run observed under
  and has not expired, and that every app of the batch hashes to a slot we own under the
  member set read in that same transaction. Refused: `Fenced` is raised before anything is
  written (and a `fenced` batch row recorded). Allowed: the batch runs and its `written`
  row commits with the transaction. The batch session has `idle_in_transaction_session_timeout
  = batch_max_s` and TCP keepalives, so a member that is paused or cut off inside a batch
  holds the ring at most that long.
"""
from __future__ import annotations

import json
import logging
import os
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator

from sqlalchemy.engine import make_url

from reconciler.service.shards import ShardSettings, owner_of, owners_of_slots

log = logging.getLogger("reconciler.service.shards")

NOW = "extract(epoch from clock_timestamp())::float8"
_KEEPALIVE: dict[str, Any] = {"keepalives": 1, "keepalives_idle": 5, "keepalives_interval": 2, "keepalives_count": 3}


class ShardMismatch(Exception):
    """This daemon's slots/eps/vnodes differ from the ring's: it would disagree on owners."""


class Fenced(Exception):
    """A write batch refused: the lease lapsed, the epoch moved on, or an app is not ours."""


def pg_dsn(url: str) -> str:
    if not url.startswith("postgresql"):
        raise ValueError("shards need a PostgreSQL store (--store postgresql+psycopg://...)")
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@dataclass(frozen=True)
class View:
    generation: int
    members: tuple[str, ...]
    slot_owners: tuple[str, ...]

    def owner(self, app: str) -> str:
        return owner_of(app, self.slot_owners)


class Membership:
    def __init__(self, url: str, member: str, settings: ShardSettings | None = None,
                 info: dict[str, Any] | None = None) -> None:
        self.dsn = pg_dsn(url)
        self.member = member
        self.settings = settings or ShardSettings()
        self.info = json.dumps(info or {"host": os.uname().nodename, "pid": os.getpid()})
        self.epoch = 0
        self.view: View | None = None
        self.changed = threading.Condition()   # notified after every heartbeat
        self.pause = threading.Event()         # test hook: set = heartbeats stop (a paused member)
        self._renewed_at = 0.0                 # monotonic time the last good renewal was sent
        self._view_since = 0.0                 # monotonic time the member set last changed (as we saw it)
        self._conn: Any = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._gained = False
        self._cache: dict[tuple[str, ...], tuple[str, ...]] = {}
        self.last_error = ""

    # ---- leader-lock interface --------------------------------------------------------
    def try_acquire(self) -> bool:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, name="shard-heartbeat", daemon=True)
            self._thread.start()
        # Members started together join one after another: the first would own every app for a
        # moment and start a sync its fence then refuses. Begin once the member set held still
        # for one heartbeat.
        return self.alive() and time.monotonic() - self._view_since >= self.settings.heartbeat_s

    def alive(self) -> bool:
        return self.epoch > 0 and time.monotonic() < self._renewed_at + self.settings.lease_s

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.settings.lease_s + 5)
            self._thread = None
        if self.epoch:
            try:
                self._change_members(lambda c: c.execute("DELETE FROM shard_members WHERE member = %s AND epoch = %s",
                                                         (self.member, self.epoch)))
            except Exception as exc:
                log.warning("shard leave failed (the lease lapses instead): %s", _first(exc))
        self.epoch = 0
        self._close()

    # ---- ownership --------------------------------------------------------------------
    def mine(self, apps: Iterable[str]) -> list[str]:
        view = self.view
        if view is None or not self.alive():
            return []
        return sorted(a for a in apps if view.owner(a) == self.member)

    def take_gained(self) -> bool:
        got, self._gained = self._gained, False
        return got

    def owners(self, members: tuple[str, ...]) -> tuple[str, ...]:
        got = self._cache.get(members)
        if got is None:
            got = owners_of_slots(members, self.settings)
            self._cache = {members: got}
        return got

    # ---- heartbeat --------------------------------------------------------------------
    def _loop(self) -> None:
        while not self._stop.is_set():
            t0 = time.monotonic()
            if not self.pause.is_set():
                self.beat()
            self._stop.wait(max(0.05, self.settings.heartbeat_s - (time.monotonic() - t0)))

    def beat(self) -> None:
        """One heartbeat: renew (or join), read the view, reap lapsed members. Never raises."""
        try:
            sent = time.monotonic()
            if self.epoch and not self._renew():
                log.warning("shard lease of %s (epoch %d) lapsed; joining again", self.member, self.epoch)
                self.epoch = 0
            if not self.epoch:
                self._join()
            self._renewed_at = sent
            lapsed = self._read_view()
            if lapsed:
                self._reap()
                self._read_view()
            self.last_error = ""
        except Exception as exc:  # database down: the lease runs out by itself
            self.last_error = _first(exc)
            log.warning("shard heartbeat failed: %s", self.last_error)
            self._close()
        with self.changed:
            self.changed.notify_all()

    def _connection(self) -> Any:
        import psycopg
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(self.dsn, autocommit=True, connect_timeout=3,
                                         application_name="netintent-reconciler-shard", **_KEEPALIVE)
        return self._conn

    def _close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:
                pass
            self._conn = None

    def _renew(self) -> bool:
        row = self._connection().execute(
            f"UPDATE shard_members SET expires = {NOW} + lease_s, heartbeat = {NOW} "
            f"WHERE member = %s AND epoch = %s AND expires > {NOW} RETURNING epoch",
            (self.member, self.epoch)).fetchone()
        return row is not None

    def _change_members(self, change: Callable[[Any], Any]) -> Any:
        """Run `change` with the ring row locked FOR UPDATE; bump the generation if it did something."""
        conn = self._connection()
        with conn.transaction():
            conn.execute(f"SET LOCAL lock_timeout = {int(self.settings.heartbeat_s * 1000)}")
            st = self.settings
            conn.execute("INSERT INTO shard_ring (id, generation, next_epoch, updated, slots, eps, vnodes) "
                         "VALUES (1, 0, 1, 0, %s, %s, %s) ON CONFLICT (id) DO NOTHING", (st.slots, st.eps, st.vnodes))
            ring = conn.execute("SELECT slots, eps, vnodes FROM shard_ring WHERE id = 1 FOR UPDATE").fetchone()
            if ring is not None and (int(ring[0]), float(ring[1]), int(ring[2])) != (st.slots, st.eps, st.vnodes):
                raise ShardMismatch(f"the shard ring maps apps with slots={ring[0]} eps={ring[1]} vnodes={ring[2]}; "
                                    f"this daemon has slots={st.slots} eps={st.eps} vnodes={st.vnodes}")
            result = change(conn) if ring is not None else None
            if result is not None and getattr(result, "rowcount", 1) != 0:
                conn.execute(f"UPDATE shard_ring SET generation = generation + 1, updated = {NOW} WHERE id = 1")
            return result

    def _join(self) -> None:
        ca = ca_fingerprint()
        info = json.dumps({**json.loads(self.info), "ca": ca})

        def join(conn: Any) -> int:
            if ca:   # certificates one member issues must verify for the others: one CA per deployment
                for other, raw in conn.execute("SELECT member, info FROM shard_members WHERE member <> %s",
                                               (self.member,)).fetchall():
                    theirs = _info(raw).get("ca", "")
                    if theirs and theirs != ca:
                        raise ShardMismatch(f"member {other} issues workload certificates from CA {theirs[:16]}, "
                                            f"this daemon from {ca[:16]} (RECONCILER_CA_DIR): all members need one CA")
            epoch = conn.execute("UPDATE shard_ring SET next_epoch = next_epoch + 1 WHERE id = 1 "
                                 "RETURNING next_epoch - 1").fetchone()[0]
            conn.execute(
                f"INSERT INTO shard_members (member, epoch, joined, heartbeat, expires, lease_s, info) "
                f"VALUES (%s, %s, {NOW}, {NOW}, {NOW} + %s, %s, %s) ON CONFLICT (member) DO UPDATE SET "
                f"epoch = EXCLUDED.epoch, joined = EXCLUDED.joined, heartbeat = EXCLUDED.heartbeat, "
                f"expires = EXCLUDED.expires, lease_s = EXCLUDED.lease_s, info = EXCLUDED.info",
                (self.member, epoch, self.settings.lease_s, self.settings.lease_s, info))
            return int(epoch)
        self.epoch = self._change_members(join)
        log.info("joined the shard ring", extra={"ctx": {"member": self.member, "epoch": self.epoch}})

    def _reap(self) -> None:
        grace = self.settings.reap_grace_s
        cur = self._change_members(lambda c: c.execute(
            f"DELETE FROM shard_members WHERE expires < {NOW} - %s RETURNING member", (grace,)))
        gone = [r[0] for r in cur.fetchall()] if cur is not None else []
        if gone:
            log.warning("shard members whose lease lapsed were removed: %s", ", ".join(gone),
                        extra={"ctx": {"reaped": gone, "by": self.member}})

    def _read_view(self) -> bool:
        """Read generation and members in one statement (one snapshot); True if a lease lapsed."""
        rows = self._connection().execute(
            f"SELECT r.generation, m.member, m.expires < {NOW} - %s FROM shard_ring r "
            "LEFT JOIN shard_members m ON true WHERE r.id = 1", (self.settings.reap_grace_s,)).fetchall()
        if not rows:
            return False
        members = tuple(sorted(r[1] for r in rows if r[1] is not None))
        old = self.view
        self.view = View(int(rows[0][0]), members, self.owners(members))
        if old is None or old.generation != self.view.generation:
            self._view_since = time.monotonic()
            before = {i for i, m in enumerate(old.slot_owners) if m == self.member} if old else set()
            after = {i for i, m in enumerate(self.view.slot_owners) if m == self.member}
            if old is not None and after - before:  # the first view is the startup sync's business
                self._gained = True
            log.info("shard view", extra={"ctx": {"generation": self.view.generation, "members": list(members),
                                                  "my_slots": len(after)}})
        return any(bool(r[2]) for r in rows if r[1] is not None)


class Fence:
    """One connection, one write batch at a time (the daemon serializes its runs)."""

    def __init__(self, membership: Membership) -> None:
        self.m = membership
        self.observed_epoch = 0                # epoch under which the current run observed
        self.before_check: Callable[[], None] | None = None   # test hook: a member paused before its write
        self._conn: Any = None
        self._lock = threading.Lock()
        self._inside = threading.local()

    def note_observed(self) -> None:
        self.observed_epoch = self.m.epoch

    def _connection(self) -> Any:
        import psycopg
        if self._conn is None or self._conn.closed:
            conn = psycopg.connect(self.m.dsn, autocommit=True, connect_timeout=3,
                                   application_name="netintent-reconciler-fence", **_KEEPALIVE)
            hold_ms = int(self.m.settings.batch_max_s * 1000)
            conn.execute(f"SET idle_in_transaction_session_timeout = {hold_ms}")
            conn.execute("SET tcp_keepalives_idle = 5; SET tcp_keepalives_interval = 2; SET tcp_keepalives_count = 3")
            self._conn = conn
        return self._conn

    @contextmanager
    def batch(self, apps: Iterable[str], layer: str = "", targets: int = 0) -> Iterator[int]:
        """Check, then yield the epoch for the write; raises Fenced before any write."""
        if getattr(self._inside, "batch", False):   # a driver's apply calling its own fused apply: one batch
            yield self.observed_epoch
            return
        if self.before_check is not None:
            self.before_check()
        names = sorted(set(apps))
        with self._lock:
            conn = self._connection()
            try:
                tx = conn.transaction()
                tx.__enter__()
            except Exception as exc:
                self._conn = None
                raise Fenced(f"database unreachable: {_first(exc)}") from exc
            try:
                started, generation = self._check(conn, names)
            except BaseException as exc:
                tx.__exit__(type(exc), exc, exc.__traceback__)
                if isinstance(exc, Fenced):
                    self._record(names, layer, targets, "fenced", str(exc))
                raise
            ok = False
            self._inside.batch = True
            try:
                yield self.observed_epoch
                ok = True
            finally:
                self._inside.batch = False
                self._finish(tx, conn, names, layer, targets, started, generation, ok)

    def _check(self, conn: Any, apps: list[str]) -> tuple[float, int]:
        ring = conn.execute(f"SELECT generation, {NOW} FROM shard_ring WHERE id = 1 FOR SHARE").fetchone()
        if ring is None:
            raise Fenced("no shard ring")
        generation, now = int(ring[0]), float(ring[1])
        rows = conn.execute("SELECT member, epoch, expires FROM shard_members").fetchall()
        mine = [r for r in rows if r[0] == self.m.member]
        want = self.observed_epoch or self.m.epoch
        if not mine or int(mine[0][1]) != want:
            raise Fenced(f"epoch {want} of {self.m.member} is no longer a lease "
                         f"(now {mine[0][1] if mine else 'none'}, generation {generation})")
        if float(mine[0][2]) <= now:
            raise Fenced(f"lease of {self.m.member} (epoch {want}) lapsed {now - float(mine[0][2]):.1f}s ago")
        owners = self.m.owners(tuple(sorted(r[0] for r in rows)))
        foreign = [a for a in apps if owner_of(a, owners) != self.m.member]
        if foreign:
            raise Fenced(f"not the owner of {', '.join(a or '(fabric)' for a in foreign[:5])} "
                         f"at generation {generation}")
        return now, generation

    def _finish(self, tx: Any, conn: Any, apps: list[str], layer: str, targets: int, started: float,
                generation: int, ok: bool) -> None:
        try:
            conn.execute(
                f"INSERT INTO shard_batches (member, epoch, generation, layer, apps, targets, started, finished, "
                f"outcome, reason) VALUES (%s, %s, %s, %s, %s, %s, %s, {NOW}, %s, %s)",
                (self.m.member, self.observed_epoch or self.m.epoch, generation, layer, json.dumps(apps), targets,
                 started, "written", "" if ok else "the batch raised"))
            tx.__exit__(None, None, None)
        except Exception as exc:  # the server ended the session (held past batch_max_s): say so loudly
            log.error("shard write batch outlived its session (%s); its record is refused", _first(exc),
                      extra={"ctx": {"apps": apps, "layer": layer}})
            self._conn = None
            self._record(apps, layer, targets, "late", _first(exc))

    def _record(self, apps: list[str], layer: str, targets: int, outcome: str, reason: str) -> None:
        log.warning("shard write batch %s: %s", outcome, reason,
                    extra={"ctx": {"member": self.m.member, "apps": apps, "layer": layer}})
        try:
            self._connection().execute(
                f"INSERT INTO shard_batches (member, epoch, generation, layer, apps, targets, started, finished, "
                f"outcome, reason) VALUES (%s, %s, %s, %s, %s, %s, {NOW}, {NOW}, %s, %s)",
                (self.m.member, self.observed_epoch or self.m.epoch, self.m.view.generation if self.m.view else 0,
                 layer, json.dumps(apps), targets, outcome, reason[:2000]))
        except Exception:
            self._conn = None


def ca_fingerprint() -> str:
    """sha256 of the workload CA's certificate (public) this daemon issues from; "" when it has none yet."""
    import hashlib

    from reconciler.xds.ca import default_ca_dir
    try:
        return hashlib.sha256((default_ca_dir() / "ca.pem").read_bytes()).hexdigest()
    except OSError:
        return ""


def _info(raw: str) -> dict[str, Any]:
    try:
        got = json.loads(raw or "{}")
    except ValueError:
        return {}
    return got if isinstance(got, dict) else {}


def _first(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else exc.__class__.__name__
