"""Outbox jobs (thin): handle one event, and sweep events the after-commit relay missed."""
from __future__ import annotations

import logging
from datetime import timedelta

from flask import current_app
from sqlalchemy import select, update

from ..extensions import db
from ..queue import QUEUE_NOTIFICATIONS, background_job
from ..timeutil import utcnow
from .models import OutboxEvent

log = logging.getLogger(__name__)

SWEEP_BATCH = 1000


@background_job(queue=QUEUE_NOTIFICATIONS)
def handle_event(event_id: int) -> dict:
    """Turn one outbox event into notifications and deliveries, then enqueue the sends.

    Idempotent: the rows are keyed on the event (INSERT .. ON CONFLICT DO NOTHING),
    and `handled_at` is set only after the sends were enqueued, so a retry after a
    failure re-enqueues the event's still-pending deliveries.
    """
    from ..notifications.handlers import handle
    from ..notifications.models import Delivery
    from ..notifications.service import enqueue_sends

    event = db.session.get(OutboxEvent, event_id)
    if event is None:
        return {"event_id": event_id, "status": "missing"}
    if event.handled_at is not None:
        return {"event_id": event_id, "status": "already handled"}
    handle(event)
    pending = list(db.session.scalars(select(Delivery.id).where(Delivery.event_id == event_id,
                                                                Delivery.status == "pending")
                                      .order_by(Delivery.id)))
    db.session.commit()
    enqueue_sends(pending)
    db.session.execute(update(OutboxEvent).where(OutboxEvent.id == event_id, OutboxEvent.handled_at.is_(None))
                       .values(handled_at=utcnow()))
    db.session.commit()
    return {"event_id": event_id, "status": "handled", "deliveries": len(pending)}


def sweep_outbox_now(min_age_seconds: int | None = None) -> dict:
    """Relay every event older than OUTBOX_SWEEP_AGE_SECONDS that is still unrelayed."""
    from .relay import relay

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


@background_job(queue=QUEUE_NOTIFICATIONS, retry_intervals=())
def sweep_outbox() -> dict:
    """Scheduled every minute (ops/schedule.py: relay-outbox)."""
    return sweep_outbox_now()
