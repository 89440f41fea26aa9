"""After-commit relay: one RQ job per new outbox event.

SQLAlchemy session events collect the ids of OutboxEvent rows as they are
flushed; after the outermost commit those still in the table (a rolled-back
savepoint's are not) are enqueued as `handle_event(event_id)` and marked
`relayed_at` in a new short transaction. If Redis is unreachable the request
still succeeds: the events stay unrelayed and the periodic sweep relays them.
"""
from __future__ import annotations

import logging
from datetime import timedelta

from flask import current_app, has_app_context
from sqlalchemy import event, select, update
from sqlalchemy.orm import Session

from ..extensions import db
from ..timeutil import utcnow
from .models import OutboxEvent

log = logging.getLogger(__name__)

_PENDING = "deltacrown_outbox_pending"


def _after_flush(session, flush_context):
    new_ids = [obj.id for obj in session.new if isinstance(obj, OutboxEvent)]
    if new_ids:
        session.info.setdefault(_PENDING, set()).update(new_ids)


def _after_commit(session):
    ids = session.info.pop(_PENDING, None)
    if ids and has_app_context():
        try:
            relay(sorted(ids))
        except Exception:  # the change is committed: never fail it now; the sweep relays later
            log.exception("outbox relay failed for events %s; left for the sweep", sorted(ids))


def _after_soft_rollback(session, previous_transaction):
    # Only the outermost rollback forgets everything; a rolled-back savepoint's events
    # are filtered out at relay time (they are not in the table).
    if previous_transaction.parent is None:
        session.info.pop(_PENDING, None)


def relay(event_ids) -> list[int]:
    """Enqueue handle_event for these events (those committed and unrelayed); mark them relayed.

    Never raises on a Redis failure: what was not enqueued is left for the sweep.
    """
    from .jobs import handle_event

    event_ids = list(event_ids)
    if not event_ids:
        return []
    with db.engine.connect() as conn:
        # Only committed rows are visible here; a rolled-back event is not relayed.
        ids = list(conn.scalars(select(OutboxEvent.id).where(OutboxEvent.id.in_(event_ids),
                                                             OutboxEvent.relayed_at.is_(None))
                                .order_by(OutboxEvent.id)))
    relayed = []
    try:
        for event_id in ids:
            handle_event.enqueue(event_id)
            relayed.append(event_id)
    except Exception as exc:  # Redis down or unreachable: the sweep will try again
        log.warning("outbox relay: could not enqueue events %s (%s); left for the sweep",
                    [i for i in ids if i not in relayed], exc)
    if relayed:
        with db.engine.begin() as conn:
            conn.execute(update(OutboxEvent).where(OutboxEvent.id.in_(relayed), OutboxEvent.relayed_at.is_(None))
                         .values(relayed_at=utcnow()))
    return relayed


def install() -> None:
    """Listen on every ORM session (idempotent: create_app runs many times in tests)."""
    for name, fn in (("after_flush", _after_flush), ("after_commit", _after_commit),
                     ("after_soft_rollback", _after_soft_rollback)):
        if not event.contains(Session, name, fn):
            event.listen(Session, name, fn)


SWEEP_BATCH = 1000


def sweep_outbox_now(min_age_seconds: int | None = None) -> dict:
    """Relay every event older than OUTBOX_SWEEP_AGE_SECONDS that is still unrelayed."""
    age = current_app.config["OUTBOX_SWEEP_AGE_SECONDS"] if min_age_seconds is None else min_age_seconds
    now = utcnow()
    cutoff = now - timedelta(seconds=age)
    # An event relayed but never handled lost its job (Redis restarted without the queued
    # jobs, or the job was deleted): relay it again. handle_event is idempotent, so a slow
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
    return {"relayed": relayed, **({"redelivered": lost} if lost else {})}
