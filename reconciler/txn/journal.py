"""The transaction journal: synchronous writes to the store's database, before devices are written.

Contract:
- `Journal(store)` reads and writes the `txn*` tables (txn/models.py) through the store's
  SQLAlchemy engine. Every write commits before it returns; a database error raises
  `JournalUnavailable` (the caller then writes nothing to devices). The journal is never
  written through the event bus, whose observers must not fail a run.
- `record_prestate` journals, in ONE database transaction, the observed pre-state of every
  target the plan touches and takes a lock row per target (`TxnLockRow`, primary key =
  target). A target held by another unfinished transaction raises `TargetBusy` naming it
  and its holder: two transactions never write one target at the same time, whichever
  process (or daemon, on a shared PostgreSQL) runs them.
- `claim(txn_id, from_states, to_state)` is a compare-and-set on the state (one UPDATE ...
  WHERE state IN ...): whoever wins it (the apply, a watcher, a daemon, `confirm`) owns the
  next step, so a rollback and a confirm never both happen.
- Locks are released when a transaction reaches a final state (`finish`).
- Spec JSON goes through `REDACTOR` like everything else in the store.
- `beat(owner)` refreshes an owner's heartbeat (`txn_owners`), `beats(owners)` reads them;
  `record_findings` journals the reachability findings of a transaction's verify step.
"""
from __future__ import annotations

import json
import time
from typing import Any, Iterable, Mapping, Sequence

from sqlalchemy import update
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlmodel import Session, delete, select

from reconciler.model import Layer, Resource, State
from reconciler.redact import REDACTOR
from reconciler.txn.models import (
    TargetStatus,
    TxnFindingRow,
    TxnLockRow,
    TxnOwnerRow,
    TxnResourceRow,
    TxnRow,
    TxnState,
    TxnTargetRow,
)

TargetId = tuple[Layer, str]


class JournalUnavailable(Exception):
    """The journal could not be written: no device may be written either."""


class TargetBusy(Exception):
    """A target is held by another unfinished transaction."""


def target_name(t: TargetId) -> str:
    return f"{t[0].value}/{t[1]}"


class Journal:
    def __init__(self, store: Any) -> None:
        self.store = store
        self.engine = store.engine

    def _session(self) -> Session:
        return Session(self.engine, expire_on_commit=False)

    def _fail(self, what: str, exc: Exception) -> JournalUnavailable:
        first = str(getattr(exc, "orig", exc)).strip().splitlines()
        msg = REDACTOR.text(first[0] if first else repr(exc))
        return JournalUnavailable(f"transaction journal unavailable ({what}): {msg}; no device was written")

    # ---- writes ------------------------------------------------------------------------
    def begin(self, txn_id: str, *, run_id: str, revision: str, trigger: str, owner: str,
              context: Mapping[str, Any], apps: Iterable[str] = (), reverts: str = "") -> None:
        now = time.time()
        try:
            with self._session() as s:
                s.add(TxnRow(txn_id=txn_id, run_id=run_id, revision=revision, trigger=trigger[:32],
                             state=TxnState.PREPARED.value, started=now, updated=now, owner=owner,
                             context=json.dumps(REDACTOR.value(dict(context)), sort_keys=True),
                             apps=json.dumps(sorted(apps)), reverts=reverts))
                s.commit()
        except (OperationalError, DBAPIError) as exc:
            raise self._fail("begin", exc) from None

    def record_prestate(self, txn_id: str, pre: Mapping[TargetId, Sequence[Resource]],
                        changes: Mapping[TargetId, int]) -> None:
        """Journal the pre-state of targets not journalled yet and hold them, atomically."""
        known = {(Layer(r.layer), r.target) for r in self.targets(txn_id)}
        new = [t for t in pre if t not in known]
        if not new:
            return
        now = time.time()
        try:
            with self._session() as s:
                for t in sorted(new, key=lambda t: (t[0].create_rank, t[1])):
                    held = s.get(TxnLockRow, target_name(t))
                    if held is not None and held.txn_id != txn_id:
                        raise TargetBusy(f"{target_name(t)} is held by unfinished transaction {held.txn_id}")
                    s.add(TxnLockRow(target=target_name(t), txn_id=txn_id, since=now))
                    s.add(TxnTargetRow(txn_id=txn_id, layer=t[0].value, target=t[1], changes=changes.get(t, 0)))
                    for r in pre[t]:
                        s.add(TxnResourceRow(txn_id=txn_id, layer=t[0].value, target=t[1],
                                             resource=json.dumps(REDACTOR.value(r.to_json()), sort_keys=True)))
                s.commit()
        except IntegrityError:
            holder = self._holders([target_name(t) for t in new])
            raise TargetBusy("; ".join(f"{k} is held by unfinished transaction {v}" for k, v in holder.items())
                             or "a target is held by another transaction") from None
        except (OperationalError, DBAPIError) as exc:
            raise self._fail("pre-state", exc) from None

    def set_state(self, txn_id: str, state: TxnState, *, error: str | None = None,
                  deadline: float | None = None, owner: str | None = None) -> None:
        try:
            with self._session() as s:
                row = s.get(TxnRow, txn_id)
                if row is None:
                    return
                row.state, row.updated = state.value, time.time()
                if error is not None:
                    row.error = REDACTOR.text(error)[:8000]
                if deadline is not None:
                    row.deadline = deadline
                if owner is not None:
                    row.owner = owner
                if state.final:
                    row.finished = row.updated
                    s.exec(delete(TxnLockRow).where(TxnLockRow.txn_id == txn_id))  # type: ignore[arg-type]
                s.add(row)
                s.commit()
        except (OperationalError, DBAPIError) as exc:
            raise self._fail(f"state {state.value}", exc) from None

    def claim(self, txn_id: str, from_states: Iterable[TxnState], to_state: TxnState, *, owner: str,
              not_after: float | None = None, not_before: float | None = None) -> bool:
        """Compare-and-set of the state; True when this caller won. `not_after`/`not_before`
        compare against the deadline (confirm only before it, the deadline rollback only after)."""
        stmt = (update(TxnRow).where(TxnRow.txn_id == txn_id)  # type: ignore[arg-type]
                .where(TxnRow.state.in_([s.value for s in from_states])))  # type: ignore[attr-defined]
        if not_after is not None:
            stmt = stmt.where((TxnRow.deadline == None) | (TxnRow.deadline > not_after))  # type: ignore[operator,arg-type]  # noqa: E711
        if not_before is not None:
            stmt = stmt.where(TxnRow.deadline != None).where(TxnRow.deadline <= not_before)  # type: ignore[operator,arg-type]  # noqa: E711
        values: dict[str, Any] = {"state": to_state.value, "updated": time.time(), "owner": owner}
        if to_state.final:
            values["finished"] = values["updated"]
        try:
            with self.engine.begin() as conn:
                won = conn.execute(stmt.values(**values)).rowcount == 1
                if won and to_state.final:
                    conn.execute(delete(TxnLockRow).where(TxnLockRow.txn_id == txn_id))  # type: ignore[arg-type]
            return won
        except (OperationalError, DBAPIError) as exc:
            raise self._fail(f"claim {to_state.value}", exc) from None

    def mark_targets(self, txn_id: str, status: Mapping[TargetId, tuple[TargetStatus, str]],
                     writes: Mapping[TargetId, int] | None = None) -> None:
        try:
            with self._session() as s:
                for row in s.exec(select(TxnTargetRow).where(TxnTargetRow.txn_id == txn_id)).all():
                    t = (Layer(row.layer), row.target)
                    if t in status:
                        row.status, msg = status[t][0].value, status[t][1]
                        row.message = REDACTOR.text(msg)[:2000]
                    if writes and t in writes:
                        row.writes += writes[t]
                    s.add(row)
                s.commit()
        except (OperationalError, DBAPIError) as exc:
            raise self._fail("targets", exc) from None

    def add_timing(self, txn_id: str, step: str, seconds: float) -> None:
        try:
            with self._session() as s:
                row = s.get(TxnRow, txn_id)
                if row is not None:
                    t = json.loads(row.timings or "{}")
                    t[step] = round(t.get(step, 0.0) + seconds, 3)
                    row.timings = json.dumps(t, sort_keys=True)
                    s.add(row)
                    s.commit()
        except (OperationalError, DBAPIError):
            pass  # timings are informative; never fail a transaction for them

    def beat(self, owner: str, now: float | None = None) -> None:
        """Refresh `owner`'s heartbeat (an UPDATE, or an INSERT the first time; a racing insert
        of the same owner is the same process, so an IntegrityError just retries the UPDATE)."""
        now = time.time() if now is None else now
        stmt = update(TxnOwnerRow).where(TxnOwnerRow.owner == owner).values(beat=now)  # type: ignore[arg-type]
        try:
            with self.engine.begin() as conn:
                if conn.execute(stmt).rowcount == 1:
                    return
            try:
                with self._session() as s:
                    s.add(TxnOwnerRow(owner=owner, beat=now))
                    s.commit()
            except IntegrityError:
                with self.engine.begin() as conn:
                    conn.execute(stmt)
        except (OperationalError, DBAPIError) as exc:
            raise self._fail("heartbeat", exc) from None

    def record_findings(self, txn_id: str, rows: Sequence[tuple[str, str, str, str, str]]) -> None:
        """rows: (change, kind, source, dest, line)."""
        if not rows:
            return
        try:
            with self._session() as s:
                for change, kind, source, dest, line in rows:
                    s.add(TxnFindingRow(txn_id=txn_id, change=change, kind=kind, source=source[:200],
                                        dest=dest[:200], line=REDACTOR.text(line)[:2000]))
                s.commit()
        except (OperationalError, DBAPIError) as exc:
            raise self._fail("findings", exc) from None

    # ---- reads -------------------------------------------------------------------------
    def beats(self, owners: Iterable[str]) -> dict[str, float]:
        names = sorted(set(owners))
        if not names:
            return {}
        with self._session() as s:
            rows = s.exec(select(TxnOwnerRow).where(TxnOwnerRow.owner.in_(names))).all()  # type: ignore[attr-defined]
            return {r.owner: r.beat for r in rows}

    def findings(self, txn_id: str) -> list[TxnFindingRow]:
        with self._session() as s:
            return list(s.exec(select(TxnFindingRow).where(TxnFindingRow.txn_id == txn_id)
                               .order_by(TxnFindingRow.id)).all())  # type: ignore[arg-type]

    def of_run(self, run_id: str) -> list[TxnRow]:
        """The transactions of one engine run (a daemon sync's run id)."""
        with self._session() as s:
            return list(s.exec(select(TxnRow).where(TxnRow.run_id == run_id)).all())

    def txn(self, txn_id: str) -> TxnRow | None:
        with self._session() as s:
            return s.get(TxnRow, txn_id)

    def targets(self, txn_id: str) -> list[TxnTargetRow]:
        try:
            with self._session() as s:
                return list(s.exec(select(TxnTargetRow).where(TxnTargetRow.txn_id == txn_id)
                                   .order_by(TxnTargetRow.id)).all())  # type: ignore[arg-type]
        except (OperationalError, DBAPIError) as exc:
            raise self._fail("read targets", exc) from None

    def pre_state(self, txn_id: str) -> tuple[State, list[TargetId]]:
        """The journalled pre-state (every resource observed, owned or not) and its targets."""
        with self._session() as s:
            rows = s.exec(select(TxnResourceRow).where(TxnResourceRow.txn_id == txn_id)).all()
        targets = [(Layer(r.layer), r.target) for r in self.targets(txn_id)]
        return State.of(Resource.from_json(json.loads(r.resource)) for r in rows), targets

    def unfinished(self) -> list[TxnRow]:
        done = [s.value for s in TxnState if s.final]
        with self._session() as s:
            return list(s.exec(select(TxnRow).where(TxnRow.state.not_in(done))  # type: ignore[attr-defined]
                               .order_by(TxnRow.started)).all())  # type: ignore[arg-type]

    def history(self, limit: int = 50) -> list[TxnRow]:
        with self._session() as s:
            return list(s.exec(select(TxnRow).order_by(TxnRow.started.desc()).limit(limit)).all())  # type: ignore[attr-defined]

    def _holders(self, names: list[str]) -> dict[str, str]:
        with self._session() as s:
            rows = s.exec(select(TxnLockRow).where(TxnLockRow.target.in_(names))).all()  # type: ignore[attr-defined]
            return {r.target: r.txn_id for r in rows}
