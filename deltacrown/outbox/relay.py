"""After-commit relay: the new outbox events go to the queue right after their commit.

Every event committed by a session's transaction is enqueued right after that
commit (a write's one event on the ready list that one `handle_ready_events` job at a
time takes, dispatch.gather_events; when a relay takes several, as `handle_events(ids)`
per EVENTS_PER_JOB of them), and marked `relayed_at`, in a new short transaction,
however it was written:

- ORM objects (`emit()`): claimed as they are flushed (`relayed_at` is in their
  INSERT), and enqueued right after the commit.
- SQL that writes them claimed (`insert_claimed`: its INSERT sets `relayed_at` and returns
  the ids, e.g. the ranking recompute's INSERT .. SELECT): enqueued right after the
  commit, like the ORM's, with no statement of the relay's own.
- Other SQL executed through the session (`session.execute` of a Core `insert()`,
  `insert().from_select()` or `text("INSERT INTO outbox_events ...")`): such a statement cannot tell which ids
  it wrote, so the session notes the highest event id just before the first
  such statement of the transaction, and the highest one it sees just before
  committing; its events are the ones in between. Two reads of the primary
  key's end, and only in transactions that write events by SQL.

The relay claims the unrelayed committed events of that id range with one
UPDATE .. RETURNING (see `relay`), a constant statement however many events
were written. Events added through the ORM or `insert_claimed` need no claim of their
own: no other relay can see them before their commit, so they are written claimed, and
enqueued right after it (one transaction per write instead of two, and no extra statement).
Under concurrency the range may also hold events that another transaction committed
meanwhile; whichever relay claims an event first enqueues it, once. Events of a
transaction still open are invisible, so never relayed early.

A savepoint's release is not a commit: nothing is relayed until the outermost
transaction commits. Events of a rolled-back savepoint are filtered out at relay
time (they are not in the table, or no longer in the session; `insert_claimed`'s ids
are enqueued all the same, and their jobs find no event); a rolled-back transaction
forgets everything.
If Redis is unreachable the request still succeeds: the events stay unrelayed
and the periodic sweep relays them. Writes on a connection outside the session
(`engine.begin()`) are not watched: the sweep relays those.
"""
from __future__ import annotations

import logging
import re
from datetime import timedelta

from flask import current_app, has_app_context
from sqlalchemy import and_, bindparam, event, func, inspect, or_, select, update
from sqlalchemy.orm import Session
from sqlalchemy.sql import Insert, TextClause

from ..extensions import db
from ..timeutil import utcnow
from .dispatch import gather_events, handle_events, queue_ready_events_job_if_lost
from .models import OutboxEvent

log = logging.getLogger(__name__)

_PENDING = "deltacrown_outbox_pending"  # ORM-added events, claimed in their INSERT
_CLAIM_TIME = "deltacrown_outbox_claim_time"  # their `relayed_at`: one per transaction
_WRITTEN = "deltacrown_outbox_written_claimed"  # ids of events SQL wrote claimed (`insert_claimed`)
_CLAIMED_OPTION = "deltacrown_outbox_writes_claimed"  # marks insert_claimed's statement for the hook
_SQL_AFTER = "deltacrown_outbox_sql_after_id"  # newest event id before the first SQL write
_SQL_UPTO = "deltacrown_outbox_sql_upto_id"  # newest event id seen before commit
_CLAIMED = "deltacrown_outbox_claimed"  # (ids, claimed_at) claimed inside the committing transaction
_INSERT_SQL = re.compile(r"\binsert\s+(?:or\s+\w+\s+)?into\s+[\"`]?%s\b" % OutboxEvent.__tablename__, re.I)


def _writes_events(statement) -> bool:
    if isinstance(statement, Insert):
        return statement.table.name == OutboxEvent.__tablename__
    if isinstance(statement, TextClause):
        return bool(_INSERT_SQL.search(statement.text))
    return False


def _newest_event_id(session) -> int:
    # On the session's own connection: inside its transaction, without re-entering these hooks.
    return session.connection().scalar(select(func.max(OutboxEvent.id))) or 0


def _do_orm_execute(state):
    if _writes_events(state.statement) and not state.execution_options.get(_CLAIMED_OPTION):
        info = state.session.info
        if _SQL_AFTER not in info:
            info[_SQL_AFTER] = _newest_event_id(state.session)


def _claim_time(session):
    """The `relayed_at` of every event this transaction writes claimed: one per transaction,
    so an un-claim (Redis refused the enqueue) finds exactly them."""
    return session.info.setdefault(_CLAIM_TIME, utcnow())


def _before_flush(session, flush_context, instances):
    # The transaction's own ORM-added events are claimed as they are written: `relayed_at` is
    # in their INSERT. No other relay or sweep can see them before this commit, and right after
    # it `_after_commit` enqueues them (or un-claims them for the sweep if Redis refuses), so
    # this is the claim of `relay` without a statement of its own (one less per write).
    if not has_app_context():
        return  # nothing could enqueue after the commit: leave the events to the sweep
    for obj in session.new:
        if isinstance(obj, OutboxEvent) and obj.relayed_at is None:
            obj.relayed_at = _claim_time(session)
            session.info.setdefault(_PENDING, []).append(obj)


def insert_claimed(session, statement: TextClause) -> list[int]:
    """Run `statement`, an INSERT of outbox events by SQL (an INSERT .. SELECT of thousands,
    say) that writes them claimed: it sets `relayed_at` to the bound `:relayed_at` and ends in
    `RETURNING id`. Returns the ids. They are enqueued right after the commit, as the ORM's
    are, so the relay spends no statement finding or claiming them. (Without an app context
    nothing could enqueue them: `:relayed_at` is then NULL and the sweep relays them.)"""
    claimed_at = _claim_time(session) if has_app_context() else None
    statement = statement.bindparams(bindparam("relayed_at", claimed_at, type_=OutboxEvent.relayed_at.type))
    ids = list(session.scalars(statement.execution_options(**{_CLAIMED_OPTION: True})))
    if claimed_at is not None:
        session.info.setdefault(_WRITTEN, []).extend(ids)
    return ids


def _before_commit(session):
    if session.in_nested_transaction():
        return  # a savepoint: only the outermost commit relays
    if has_app_context():
        session.flush()  # events added since the last flush are claimed now, not in commit's own flush
    # ORM events of a rolled-back savepoint are no longer persistent: not relayed.
    ids = [obj.id for obj in session.info.pop(_PENDING, ()) if inspect(obj).persistent]
    ids += session.info.pop(_WRITTEN, ())
    if ids:
        session.info[_CLAIMED] = (sorted(ids), session.info[_CLAIM_TIME])
    if _SQL_AFTER in session.info:
        session.info[_SQL_UPTO] = _newest_event_id(session)


def _forget(session):
    session.info.pop(_CLAIMED, None)
    session.info.pop(_PENDING, None)
    session.info.pop(_WRITTEN, None)
    session.info.pop(_CLAIM_TIME, None)
    after, upto = session.info.pop(_SQL_AFTER, None), session.info.pop(_SQL_UPTO, None)
    return (after, upto) if after is not None and upto is not None and upto > after else None


def _after_commit(session):
    if session.in_nested_transaction():
        return  # a savepoint released: the outer transaction may still roll back
    claimed = session.info.pop(_CLAIMED, None)
    if claimed and claimed[0]:
        try:
            _enqueue(*claimed)
        except Exception:  # committed: never fail it now; the sweep redelivers claimed, unhandled events
            log.exception("outbox relay failed for events %s..; left for the sweep", claimed[0][0])
    id_range = _forget(session)
    if id_range and has_app_context():
        try:
            relay(id_range=id_range)
        except Exception:  # the change is committed: never fail it now; the sweep relays later
            log.exception("outbox relay failed for events in %s; left for the sweep", id_range)


def _after_soft_rollback(session, previous_transaction):
    # Only the outermost rollback forgets everything; a rolled-back savepoint's events
    # are filtered out at relay time (they are not in the table).
    if previous_transaction.parent is None:
        _forget(session)


RELAY_CHUNK = 1000  # events per Redis pipeline; ids per statement when un-claiming
EVENTS_PER_JOB = 100  # events of one relay handled by one handle_events job


def relay(event_ids=(), id_range: tuple[int, int] | None = None) -> list[int]:
    """Enqueue the jobs of these events and those with an id in (low, high] of `id_range`,
    the ones committed and not yet relayed. Returns the ids enqueued.

    Claim first: one UPDATE .. RETURNING sets `relayed_at` on exactly the rows no other
    relay has taken (concurrent relays of overlapping ranges each get different rows; a
    transaction still open is invisible to it), then the jobs are enqueued, a pipeline
    per chunk. What could not be enqueued (Redis down) is un-claimed for the sweep; a
    process that dies between claim and enqueue leaves its events to the sweep's
    redelivery of events relayed but never handled (OUTBOX_REDELIVER_AGE_SECONDS).
    Never raises on a Redis failure.
    """
    wanted = []
    if event_ids:
        wanted.append(OutboxEvent.id.in_(list(event_ids)))
    if id_range:
        wanted.append(and_(OutboxEvent.id > id_range[0], OutboxEvent.id <= id_range[1]))
    if not wanted:
        return []
    claimed_at = utcnow()
    with db.engine.begin() as conn:
        # Only committed rows are visible here; a rolled-back event is not relayed.
        ids = sorted(conn.scalars(update(OutboxEvent).where(or_(*wanted), OutboxEvent.relayed_at.is_(None))
                                  .values(relayed_at=claimed_at).returning(OutboxEvent.id)))
    return _enqueue(ids, claimed_at)


def _enqueue(ids: list[int], claimed_at) -> list[int]:
    """Enqueue the jobs of these claimed events; un-claim (for the sweep) what Redis refused."""
    relayed: list[int] = []
    try:
        for start in range(0, len(ids), RELAY_CHUNK):
            chunk = ids[start:start + RELAY_CHUNK]
            if len(chunk) == 1:  # one write's event: on the ready list, for one job at a time
                gather_events(chunk)
            else:  # a job per EVENTS_PER_JOB: enqueueing a job per event was most of a big commit's relay
                handle_events.enqueue_many([(chunk[at:at + EVENTS_PER_JOB],)
                                            for at in range(0, len(chunk), EVENTS_PER_JOB)])
            relayed.extend(chunk)
    except Exception as exc:  # Redis down or unreachable: the sweep will try again
        missed = ids[len(relayed):]
        log.warning("outbox relay: could not enqueue %s events from id %s (%s); left for the sweep",
                    len(missed), missed[0], exc)
        with db.engine.begin() as conn:
            for start in range(0, len(missed), RELAY_CHUNK):
                conn.execute(update(OutboxEvent).where(OutboxEvent.id.in_(missed[start:start + RELAY_CHUNK]),
                                                       OutboxEvent.relayed_at == claimed_at)
                             .values(relayed_at=None))
    return relayed


def install() -> None:
    """Listen on every ORM session (idempotent: create_app runs many times in tests)."""
    for name, fn in (("do_orm_execute", _do_orm_execute), ("before_commit", _before_commit),
                     ("before_flush", _before_flush), ("after_commit", _after_commit),
                     ("after_soft_rollback", _after_soft_rollback)):
        if not event.contains(Session, name, fn):
            event.listen(Session, name, fn)


SWEEP_BATCH = 1000


def sweep_outbox_now(min_age_seconds: int | None = None) -> dict:
    """Relay every event older than OUTBOX_SWEEP_AGE_SECONDS that is still unrelayed, again those
    relayed long ago and never handled, and queue a job for a ready events list left without one."""
    age = current_app.config["OUTBOX_SWEEP_AGE_SECONDS"] if min_age_seconds is None else min_age_seconds
    now = utcnow()
    cutoff = now - timedelta(seconds=age)
    # An event relayed but never handled lost its job (Redis restarted without the queued
    # jobs, or the job was deleted): relay it again. Handling is idempotent, so a slow
    # queue that still holds the first job costs only a no-op second run. Looks back one day
    # (an index range on relayed_at, not a scan of all history).
    redeliver_before = now - timedelta(seconds=current_app.config["OUTBOX_REDELIVER_AGE_SECONDS"])
    lost = db.session.execute(
        update(OutboxEvent).where(OutboxEvent.relayed_at < redeliver_before,
                                  OutboxEvent.relayed_at >= now - timedelta(days=1),
                                  OutboxEvent.handled_at.is_(None))
        .values(relayed_at=None).execution_options(synchronize_session=False)).rowcount
    db.session.commit()
    if lost:
        log.warning("outbox sweep: %s events were relayed but never handled; relaying them again", lost)
    try:
        ready_job = queue_ready_events_job_if_lost()
    except Exception:  # noqa: BLE001 - Redis failing: the relays below leave their events to the next sweep
        log.warning("outbox sweep: could not look at the ready events list", exc_info=True)
        ready_job = False
    relayed = 0
    last_id = 0
    while True:
        ids = list(db.session.scalars(select(OutboxEvent.id).where(
            OutboxEvent.relayed_at.is_(None), OutboxEvent.created_at <= cutoff, OutboxEvent.id > last_id)
            .order_by(OutboxEvent.id).limit(SWEEP_BATCH)))
        db.session.rollback()  # end the read transaction; relay uses its own
        if not ids:
            break
        done = relay(ids)
        relayed += len(done)
        if len(done) < len(ids):
            break  # Redis is failing; the next sweep tries again
        last_id = ids[-1]
    if relayed:
        log.info("outbox sweep relayed %s events", relayed)
    return {"relayed": relayed, **({"redelivered": lost} if lost else {}),
            **({"ready_job_queued": True} if ready_job else {})}
